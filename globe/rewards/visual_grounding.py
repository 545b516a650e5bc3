"""R_vis: are the visual entities the reasoning mentions really in the image?

Paper formula (``mode="precision"``, default)::

    R_vis = (1 / |E|) * sum_{e in E} Match(e, V)

E: the set of concepts the reasoning mentions (the ``<think>`` part; the whole completion
minus its answer when there is no closed think block), found with the visual-concept
vocabulary (:mod:`globe.rewards.visual_concepts`; negated mentions such as "no snow" left
out). V: the image's elements (:mod:`globe.rewards.image_elements`: the sample's ``entities``
or a segmentation model's classes), mapped through the same vocabulary; a label the
vocabulary does not know is kept as its own concept and searched literally in the reasoning.
Each hallucinated entity (in E, not in the image) lowers the score.

``Match(e, V)`` per ``hierarchy``: ``"exact"`` e in V; ``"broader"`` also when e is an
ancestor of an element (saying "vegetation" or "trees" of an image with palm trees);
``"related"`` (default) also when e is a descendant of an element (saying "palm trees" where
a segmenter only reports "tree", or "a lake" for GeoSynth's generic "water"): coarse labels
cannot refute a more specific mention.

A reasoning that mentions no entity scores ``empty_score`` = 0 under precision: it grounds
nothing. Scoring it 1 (vacuously precise) would let the policy earn the full reward by
describing nothing, the opposite of what the reward is for.

Other modes: ``"recall"`` = fraction of V the reasoning mentions (the paper's code computes
this one); ``"f1"`` = harmonic mean of precision and recall; ``"paper_recall"`` = the paper's
code exactly (lower-cased entity strings searched as substrings of ``completion.split(
"</think>")[0]``). Under the recall modes an image without known elements scores 0 (the whole
GRPO group scores the same, so no advantage comes from it either way).
"""

from __future__ import annotations

from typing import Literal

import torch

from globe.answer import parse_answer
from globe.geo.text import fold
from globe.rewards.base import RewardBatch, RewardHead, as_text, reasoning_of
from globe.rewards.image_elements import ImageElementSource, SampleEntities
from globe.rewards.visual_concepts import ConceptVocabulary

__all__ = ["VisualGroundingReward", "grounding_scores", "paper_recall"]

Hierarchy = Literal["exact", "broader", "related"]


def _matches(e: str, v: str, vocab: ConceptVocabulary, hierarchy: Hierarchy) -> bool:
    if e == v:
        return True
    if hierarchy == "exact":
        return False
    if e in vocab.ancestors(v):
        return True
    return hierarchy == "related" and v in vocab.ancestors(e)


def grounding_scores(
    mentioned: set[str], present: set[str], vocab: ConceptVocabulary, hierarchy: Hierarchy = "related"
) -> tuple[float | None, float | None]:
    """(precision, recall) of the mentioned concepts against the present ones; None when
    the denominator is empty.

    >>> v = ConceptVocabulary.load()
    >>> grounding_scores({"palm tree", "snow"}, {"palm tree", "sand"}, v)
    (0.5, 0.5)
    >>> grounding_scores({"vegetation"}, {"palm tree"}, v, "broader")
    (1.0, 1.0)
    >>> grounding_scores({"vegetation"}, {"palm tree"}, v, "exact")
    (0.0, 0.0)
    >>> grounding_scores(set(), {"sand"}, v)
    (None, 0.0)
    """
    grounded = sum(any(_matches(e, x, vocab, hierarchy) for x in present) for e in mentioned)
    recalled = sum(any(_matches(e, x, vocab, hierarchy) for e in mentioned) for x in present)
    precision = grounded / len(mentioned) if mentioned else None
    recall = recalled / len(present) if present else None
    return precision, recall


def paper_recall(completion: str, entities: list[str]) -> float:
    """The paper's code: share of the (lower-cased, de-duplicated) entity strings that occur as
    substrings of the text before ``</think>``; 0 without entities.

    >>> paper_recall("<think>A palm tree near the sea</think><answer>..</answer>", ["Palm tree", "car"])
    0.5
    """
    think = as_text(completion).split("</think>")[0].replace("<think>", "").lower()
    tags = {t.lower() for t in entities if isinstance(t, str)}
    return sum(t in think for t in tags) / len(tags) if tags else 0.0


class VisualGroundingReward(RewardHead):
    """R_vis (see the module docstring).

    Args:
        name: key of the head in scores, weights and logs.
        mode: "precision" (paper formula), "recall", "f1" or "paper_recall" (paper's code).
        hierarchy: how a mention matches an element: "exact", "broader" or "related".
        empty_score: precision score of a reasoning that mentions no entity.
        ignore_negated: leave negated mentions ("no snow") out of E.
        require_well_formed: score 0 unless the completion is ``<think>..</think><answer>..</answer>``.
        vocabulary_path: YAML vocabulary (default: ``globe/rewards/visual_concepts.yaml``).
        source: where the image's elements come from (default: the samples' ``entities``).
    """

    name = "vis"

    def __init__(
        self,
        name: str = "vis",
        mode: Literal["precision", "recall", "f1", "paper_recall"] = "precision",
        hierarchy: Hierarchy = "related",
        empty_score: float = 0.0,
        ignore_negated: bool = True,
        require_well_formed: bool = False,
        vocabulary_path: str | None = None,
        source: ImageElementSource | None = None,
    ) -> None:
        super().__init__(name=name)
        if mode not in ("precision", "recall", "f1", "paper_recall"):
            raise ValueError(f"mode must be precision, recall, f1 or paper_recall, got {mode!r}")
        if hierarchy not in ("exact", "broader", "related"):
            raise ValueError(f"hierarchy must be exact, broader or related, got {hierarchy!r}")
        self.mode = mode
        self.hierarchy = hierarchy
        self.empty_score = empty_score
        self.ignore_negated = ignore_negated
        self.require_well_formed = require_well_formed
        self.vocabulary = ConceptVocabulary.load(vocabulary_path)
        self.source: ImageElementSource = source if source is not None else SampleEntities()

    def present_concepts(self, labels: list[str]) -> tuple[set[str], tuple[str, ...]]:
        """(concepts of the element labels, folded labels the vocabulary does not know)."""
        concepts: set[str] = set()
        literal: list[str] = []
        for label in labels:
            found = self.vocabulary.concepts_of(label)
            if found:
                concepts |= found
            elif fold(label):
                literal.append(fold(label))
        return concepts | set(literal), tuple(literal)

    def score_one(self, completion: str, labels: list[str]) -> float:
        if self.require_well_formed and not parse_answer(completion).well_formed:
            return 0.0
        if self.mode == "paper_recall":
            return paper_recall(completion, labels)
        present, literal = self.present_concepts(labels)
        mentioned = self.vocabulary.mentioned(reasoning_of(completion), literal, self.ignore_negated)
        precision, recall = grounding_scores(mentioned, present, self.vocabulary, self.hierarchy)
        if self.mode == "precision":
            return self.empty_score if precision is None else precision
        if self.mode == "recall":
            return recall or 0.0
        p, r = precision or 0.0, recall or 0.0
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    @torch.no_grad()
    def score(self, batch: RewardBatch) -> torch.Tensor:  # [N]
        labels = self.source.elements(batch)
        return self._as_scores([self.score_one(as_text(c), ls) for c, ls in zip(batch.completions, labels)])
