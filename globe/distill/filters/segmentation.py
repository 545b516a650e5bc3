"""Filter 4, segmentation consistency: are the entities the kept chain names in the image?

The visual concepts the kept chain names (:mod:`globe.rewards.visual_concepts`, negated
mentions left out) are matched against the classes a segmentation model finds in the image
(:class:`globe.rewards.image_elements.SegmentationLabels`: any local Hugging Face
semantic-segmentation directory), with the same matching as the visual-grounding reward
(``hierarchy``: ``related`` by default, so "palm trees" is verified by a segmenter's "tree").
On GeoSynth the drawn elements can stand in for the segmenter (``source: oracle``; reported as
"oracle").

* **verified** = the named concepts that match a class found; **hallucinated** = the rest.
  The output sample's ``entities`` is the verified set.
* ``on_hallucination``: ``drop_entities`` (default) keeps the sample with the hallucinated
  entities left out of ``entities``; ``drop_sample`` drops a sample that names any.
* The sample also fails with fewer than ``min_verified`` verified entities (default 1: a chain
  that grounds nothing is not kept) or a precision (verified / named) below ``min_precision``.
* ``source: off`` checks nothing; ``entities`` is then empty (nothing was verified).
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from typing import Literal

from globe.distill.filters.outcome import FilterOutcome
from globe.rewards.visual_grounding import VisualGroundingReward, grounding_scores

__all__ = ["SegmentationFilter", "verify_entities"]


def verify_entities(mentioned: Set[str], labels: Sequence[str], grounding: VisualGroundingReward) -> tuple[list[str], list[str]]:
    """(verified, hallucinated) concepts of ``mentioned`` against the element ``labels``, sorted.

    >>> g = VisualGroundingReward()
    >>> verify_entities({"palm tree", "snow"}, ["tree", "sand"], g)
    (['palm tree'], ['snow'])
    """
    present, _ = grounding.present_concepts(list(labels))
    verified = sorted(e for e in mentioned if grounding_scores({e}, present, grounding.vocabulary, grounding.hierarchy)[0])
    return verified, sorted(set(mentioned) - set(verified))


@dataclass
class SegmentationFilter:
    """Args:
    source: model (a segmentation model directory), oracle (the sample's own entities, e.g.
        GeoSynth's drawn elements) or off.
    model_path: the segmentation model directory (``source: model``).
    min_fraction: smallest share of the pixels a class must cover to be found.
    ignore_labels: classes never reported (default: background, other, unlabeled).
    batch_size: images per segmentation forward pass.
    hierarchy: how a named concept matches a class: exact, broader or related.
    on_hallucination: drop_entities (keep the sample, verified entities only) or drop_sample.
    min_verified: fewest verified entities a kept sample needs.
    min_precision: smallest verified / named share a kept sample needs.
    build_tiny_if_missing: build a tiny random SegFormer at ``model_path`` when it is absent
        (``globe.distill.tiny``; the CPU demo).
    """

    source: Literal["model", "oracle", "off"] = "off"
    model_path: str | None = None
    min_fraction: float = 0.01
    ignore_labels: list[str] | None = None
    batch_size: int = 8
    hierarchy: Literal["exact", "broader", "related"] = "related"
    on_hallucination: Literal["drop_entities", "drop_sample"] = "drop_entities"
    min_verified: int = 1
    min_precision: float = 0.0
    build_tiny_if_missing: bool = False
    _grounding: VisualGroundingReward | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.source not in ("model", "oracle", "off"):
            raise ValueError(f"segmentation.source must be model, oracle or off, got {self.source!r}")
        if self.source == "model" and not self.model_path:
            raise ValueError("segmentation.source: model needs segmentation.model_path (a local segmentation model directory)")
        if self.on_hallucination not in ("drop_entities", "drop_sample"):
            raise ValueError(f"segmentation.on_hallucination must be drop_entities or drop_sample, got {self.on_hallucination!r}")

    @property
    def grounding(self) -> VisualGroundingReward:
        """The visual-grounding head whose vocabulary and matching are used (built once)."""
        if self._grounding is None:
            self._grounding = VisualGroundingReward(hierarchy=self.hierarchy)
        return self._grounding

    def mentioned(self, reasoning: str) -> set[str]:
        """The concepts a chain names (negated mentions left out)."""
        return self.grounding.vocabulary.mentioned(reasoning or "")

    def check(self, mentioned: Set[str], labels: Sequence[str] | None) -> FilterOutcome:
        """Decide from the chain's concepts and the image's classes (None: no segmentation).
        ``detail["verified"]`` is what the sample's ``entities`` becomes."""
        if self.source == "off" or labels is None:
            return FilterOutcome.ok(verified=[], hallucinated=[], labels=None, named=sorted(mentioned))
        verified, hallucinated = verify_entities(mentioned, labels, self.grounding)
        detail = {"verified": verified, "hallucinated": hallucinated, "labels": list(labels), "named": sorted(mentioned)}
        if len(verified) < self.min_verified:
            return FilterOutcome.fail("too_few_verified", **detail)
        if mentioned and len(verified) / len(mentioned) < self.min_precision:
            return FilterOutcome.fail("low_precision", **detail)
        if hallucinated and self.on_hallucination == "drop_sample":
            return FilterOutcome.fail("hallucinated", **detail)
        return FilterOutcome.ok(**detail)
