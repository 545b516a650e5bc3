"""Finding visual concepts in free text: the vocabulary behind the visual-grounding reward.

The vocabulary (``visual_concepts.yaml`` beside this file, editable) maps phrases to concepts:
each concept has synonyms and parents (a palm tree is a tree, a tree is vegetation).
:meth:`ConceptVocabulary.find` reads a text as follows:

1. quoted text (``"..."``, ``“...”``) is dropped: it is what a sign *reads* ("GATE", "KAFE"),
   not an element seen; ``n't`` becomes `` not``; the text is cut into clauses at punctuation and at contrast words
   (but, however, although, while, whereas, yet, except), so a negation never reaches across
   "no signs, but palm trees";
2. each clause is folded (:func:`globe.geo.text.fold`: accents stripped, case folded,
   punctuation -> space) and scanned left to right with one regular expression holding every
   phrase and its generated plural forms, longest first, between word boundaries: at each
   position the longest phrase wins and consumes its words ("palm trees" is one palm tree,
   not also a tree). Phrases of the ``ignore`` list consume their words but name nothing
   ("signs of wear");
3. a mention is *negated* when one of the 4 words before it in its clause is a negator
   (no, not, without, lack, absence, never, nor, none, neither, missing).

Limitations: negation after the noun ("palm trees are absent") and coreference are not read;
word senses are not disambiguated ("port" the harbour and "port" the wine are one concept).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from globe.geo.text import fold

__all__ = ["DEFAULT_VOCABULARY", "Mention", "ConceptVocabulary", "plural_forms"]

DEFAULT_VOCABULARY = Path(__file__).with_name("visual_concepts.yaml")

NEGATION_WINDOW = 4
_NEGATORS = frozenset({"no", "not", "without", "lack", "lacking", "absence", "never", "nor", "none", "neither", "missing"})
_CLAUSE = re.compile(r"[.;:!?,()\[\]\n]|\b(?:but|however|although|though|whereas|while|yet|except)\b", re.IGNORECASE)
_NT = re.compile(r"n['\u2019]t\b", re.IGNORECASE)
_QUOTED = re.compile(r'"[^"\n]{0,200}"|\u201c[^\u201d\n]{0,200}\u201d')

_IRREGULAR: dict[str, tuple[str, ...]] = {
    "person": ("people", "persons"),
    "man": ("men",),
    "woman": ("women",),
    "child": ("children",),
    "cactus": ("cacti", "cactuses"),
    "leaf": ("leaves",),
    "foot": ("feet",),
    "goose": ("geese",),
    "sheep": (),
    "aircraft": (),
    "torii": (),
    "fish": ("fishes",),
    "roof": ("roofs", "rooves"),
}


def plural_forms(phrase: str) -> tuple[str, ...]:
    """Plural forms of a (folded) phrase: its last word inflected.

    >>> plural_forms("palm tree"), plural_forms("church"), plural_forms("city"), plural_forms("cactus")
    (('palm trees',), ('churches',), ('cities',), ('cacti', 'cactuses'))
    """
    words = phrase.split()
    if not words:
        return ()
    head, last = words[:-1], words[-1]
    if last in _IRREGULAR:
        forms: Sequence[str] = _IRREGULAR[last]
    elif re.search(r"(?:s|x|z|ch|sh)$", last):
        forms = (last + "es",)
    elif re.search(r"[^aeiou]y$", last):
        forms = (last[:-1] + "ies",)
    elif last.endswith("fe"):
        forms = (last[:-2] + "ves", last + "s")
    elif last.endswith("f"):
        forms = (last[:-1] + "ves", last + "s")
    elif last.endswith("o"):
        forms = (last + "s", last + "es")
    else:
        forms = (last + "s",)
    return tuple(" ".join([*head, f]) for f in forms)


@dataclass(frozen=True)
class Mention:
    """One concept named in a text: the folded phrase that named it, and whether it was negated."""

    concept: str
    phrase: str
    negated: bool = False


def _alternation(phrases: Iterable[str]) -> re.Pattern:
    ordered = sorted(set(phrases), key=lambda p: (-len(p), p))  # longest first: longest match wins
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(p) for p in ordered) + r")(?!\w)")


@lru_cache(maxsize=4096)
def _literal_pattern(phrases: tuple[str, ...]) -> re.Pattern | None:
    return _alternation(phrases) if phrases else None


class ConceptVocabulary:
    """Concepts with synonyms and parents; finds concept mentions in text (module docstring).

    Args:
        concepts: concept name -> ``{"synonyms": [...], "parents": [...]}``.
        ignore: phrases that consume their words but name no concept.
    """

    def __init__(self, concepts: Mapping[str, Mapping | None], ignore: Sequence[str] = ()) -> None:
        self.parents: dict[str, tuple[str, ...]] = {}
        self._concept_of: dict[str, str | None] = {}
        for name, spec in concepts.items():
            spec = spec or {}
            self.parents[name] = tuple(spec.get("parents") or ())
            for phrase in [name, *(spec.get("synonyms") or ())]:
                key = fold(phrase)
                for variant in (key, *plural_forms(key)):
                    self._claim(variant, name)
        for phrase in ignore:
            key = fold(phrase)
            for variant in (key, *plural_forms(key)):
                if variant not in self._concept_of:
                    self._concept_of[variant] = None
        unknown = {p for ps in self.parents.values() for p in ps if p not in self.parents}
        if unknown:
            raise ValueError(f"parents that are not concepts of the vocabulary: {sorted(unknown)}")
        self._ancestors = {c: self._walk_up(c) for c in self.parents}
        self._pattern = _alternation(self._concept_of)

    def _claim(self, phrase: str, concept: str) -> None:
        if not phrase:
            return
        owner = self._concept_of.get(phrase, concept)
        if owner != concept:
            raise ValueError(f"phrase {phrase!r} names two concepts: {owner!r} and {concept!r}")
        self._concept_of[phrase] = concept

    def _walk_up(self, concept: str) -> frozenset[str]:
        seen: set[str] = set()
        stack = list(self.parents[concept])
        while stack:
            parent = stack.pop()
            if parent == concept:
                raise ValueError(f"the parents of {concept!r} form a cycle")
            if parent not in seen:
                seen.add(parent)
                stack.extend(self.parents[parent])
        return frozenset(seen)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "ConceptVocabulary":
        """The vocabulary of a YAML file (default: ``visual_concepts.yaml``), cached per path."""
        return _load(str(Path(path or DEFAULT_VOCABULARY).resolve()))

    @property
    def concepts(self) -> list[str]:
        return list(self.parents)

    def phrases(self) -> dict[str, str]:
        """Every matched phrase (plurals included) -> its concept (ignored phrases left out)."""
        return {p: c for p, c in self._concept_of.items() if c is not None}

    def ancestors(self, concept: str) -> frozenset[str]:
        """Every more general concept (transitive parents); empty for unknown concepts."""
        return self._ancestors.get(concept, frozenset())

    def find(self, text: str, literal: Sequence[str] = (), ignore_negated: bool = True) -> list[Mention]:
        """Concept mentions of ``text`` in reading order.

        ``literal`` adds folded phrases that are their own concepts (element labels outside
        the vocabulary); they are matched before the vocabulary.

        >>> v = ConceptVocabulary({"tree": {}, "palm tree": {"synonyms": ["palm"], "parents": ["tree"]}, "snow": {}})
        >>> [m.concept for m in v.find("Tall palm-trees, no snow, but trees.")]
        ['palm tree', 'tree']
        >>> [(m.concept, m.negated) for m in v.find("There isn't any snow", ignore_negated=False)]
        [('snow', True)]
        """
        if not isinstance(text, str) or not text:
            return []
        extra = _literal_pattern(tuple(sorted(set(literal))))
        out: list[Mention] = []
        for clause in _CLAUSE.split(_NT.sub(" not", _QUOTED.sub(" ", text))):
            folded = fold(clause)
            if not folded:
                continue
            found: list[tuple[int, str, str]] = []
            if extra is not None:
                for m in extra.finditer(folded):
                    found.append((m.start(), m.group(0), m.group(0)))
                # blank literal matches out so the vocabulary does not read them again
                folded_rest = extra.sub(lambda m: " " * len(m.group(0)), folded)
            else:
                folded_rest = folded
            for m in self._pattern.finditer(folded_rest):
                concept = self._concept_of[m.group(0)]
                if concept is not None:
                    found.append((m.start(), concept, m.group(0)))
            for start, concept, phrase in sorted(found):
                negated = not _NEGATORS.isdisjoint(folded[:start].split()[-NEGATION_WINDOW:])
                if negated and ignore_negated:
                    continue
                out.append(Mention(concept, phrase, negated))
        return out

    def mentioned(self, text: str, literal: Sequence[str] = (), ignore_negated: bool = True) -> set[str]:
        """The set of concepts ``text`` mentions (negated mentions left out by default)."""
        return {m.concept for m in self.find(text, literal, ignore_negated)}

    def concepts_of(self, label: str) -> set[str]:
        """Concepts an element label names ("palm trees" -> {"palm tree"}); empty when none.

        Labels are names, not sentences: negation is not read.
        """
        return {m.concept for m in self.find(label, ignore_negated=False)}


@lru_cache(maxsize=8)
def _load(path: str) -> ConceptVocabulary:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data.get("concepts"), Mapping):
        raise ValueError(f"{path}: expected a mapping under 'concepts:'")
    return ConceptVocabulary(data["concepts"], data.get("ignore") or ())
