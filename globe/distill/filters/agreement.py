"""Filter 3, cross-model agreement: do the other teachers back the kept chain?

Three checks against the kept chain (the chain the sample would be written with), each one
skipped when it has nothing to compare with (one VLM teacher, no GPS teacher):

* **location** — the other teachers' geocoded answers: teacher j agrees when its place and the
  kept one name the same city (same country, same folded name) or lie within ``location_km``.
  ``location_agreement`` = the share of the other teachers with an answer that agree; it must
  reach ``min_location_agreement`` (default 1.0: all of them). A kept answer that does not
  geocode agrees with no one.
* **GPS** — the GPS teacher's top-1 coordinates must lie within ``gps_km`` of the kept answer,
  unless its confidence is below ``gps_min_confidence`` (then it abstains).
* **reasoning** — the mean similarity of the kept chain to the other teachers' chains must
  reach ``min_reasoning_similarity``. ``reasoning: entities`` (default): the Jaccard overlap of
  the visual concepts each chain names (:mod:`globe.rewards.visual_concepts`, negated mentions
  left out; two chains naming nothing have overlap 0); ``embedding``: the cosine similarity of
  mean-pooled sentence embeddings from a local model directory
  (:class:`globe.distill.text_embedding.TextEmbedder`); ``off``: not checked.

The helpers are pure; ``check`` takes the figures they produce.
"""

from __future__ import annotations

import math
from collections.abc import Sequence, Set
from dataclasses import dataclass
from typing import Literal

from globe.distill.filters.outcome import FilterOutcome
from globe.geo.distance import great_circle_km
from globe.geo.gazetteer import Place
from globe.geo.text import fold

__all__ = ["AgreementFilter", "jaccard", "location_agreement", "mean_or_none", "place_km", "same_place"]


def place_km(a: Place | None, lat: float, lon: float) -> float:
    """Great-circle km from a place to a point (inf when the place is missing)."""
    if a is None:
        return math.inf
    return float(great_circle_km(a.lat, a.lon, lat, lon))


def same_place(a: Place | None, b: Place | None, km: float) -> bool:
    """Two geocoded answers agree: the same city of the same country, or within ``km``.

    >>> paris = Place("Paris", "FR", "France", 48.857, 2.352, 2_000_000, "city")
    >>> versailles = Place("Versailles", "FR", "France", 48.805, 2.120, 85_000, "city")
    >>> same_place(paris, versailles, 25.0), same_place(paris, versailles, 10.0), same_place(paris, None, 1e9)
    (True, False, False)
    """
    if a is None or b is None:
        return False
    if a.level == b.level == "city" and a.country_code == b.country_code and fold(a.name) == fold(b.name):
        return True
    return place_km(a, b.lat, b.lon) <= km


def location_agreement(places: Sequence[Place | None], kept: int, km: float) -> float | None:
    """Share of the other teachers with an answer whose place agrees with ``places[kept]``;
    None when no other teacher has an answer.

    >>> a = Place("Lima", "PE", "Peru", -12.05, -77.04, 1, "city")
    >>> b = Place("Quito", "EC", "Ecuador", -0.23, -78.52, 1, "city")
    >>> location_agreement([a, a, b, None], kept=0, km=100.0), location_agreement([a, None], 0, 100.0)
    (0.5, None)
    """
    others = [p for j, p in enumerate(places) if j != kept and p is not None]
    if not others:
        return None
    return sum(same_place(places[kept], p, km) for p in others) / len(others)


def jaccard(a: Set[str], b: Set[str]) -> float:
    """|a & b| / |a | b|; 0 when both are empty (two chains naming nothing share nothing).

    >>> jaccard({"palm tree", "sand"}, {"sand", "pyramid"}), jaccard(set(), set())
    (0.3333333333333333, 0.0)
    """
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def mean_or_none(values: Sequence[float]) -> float | None:
    """The mean, None for no values.

    >>> mean_or_none([0.5, 1.0]), mean_or_none([])
    (0.75, None)
    """
    return sum(values) / len(values) if values else None


@dataclass
class AgreementFilter:
    """Args:
    location_km: two teachers' answers within this many km agree (or when they name one city).
    min_location_agreement: share of the other teachers that must agree with the kept answer.
    gps_km: the GPS teacher's top-1 must lie within this many km of the kept answer (None: not checked).
    gps_min_confidence: below this confidence the GPS teacher abstains.
    reasoning: how chains are compared: entities (Jaccard of named concepts), embedding, or off.
    min_reasoning_similarity: smallest mean similarity of the kept chain to the others.
    embedding_model_path: local sentence-embedding model directory (``reasoning: embedding``).
    enabled: off: every sample passes (the figures are still recorded).
    """

    location_km: float = 100.0
    min_location_agreement: float = 1.0
    gps_km: float | None = 750.0
    gps_min_confidence: float = 0.0
    reasoning: Literal["entities", "embedding", "off"] = "entities"
    min_reasoning_similarity: float = 0.2
    embedding_model_path: str | None = None
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.reasoning not in ("entities", "embedding", "off"):
            raise ValueError(f"agreement.reasoning must be entities, embedding or off, got {self.reasoning!r}")
        if self.reasoning == "embedding" and not self.embedding_model_path:
            raise ValueError("agreement.reasoning: embedding needs agreement.embedding_model_path (a local model directory)")

    def check(self, location: float | None, reasoning: float | None, gps_km: float | None = None,
              gps_confidence: float | None = None) -> FilterOutcome:
        """Decide from the figures: ``location`` (share of agreeing teachers), ``reasoning`` (mean
        similarity), the GPS teacher's distance to the kept answer and its confidence; None: no data.

        >>> f = AgreementFilter(gps_km=500.0, gps_min_confidence=0.3)
        >>> f.check(1.0, 0.5, gps_km=20.0, gps_confidence=0.9).passed
        True
        >>> f.check(0.5, 0.5).reason, f.check(1.0, 0.1).reason, f.check(None, None, 900.0, 0.9).reason
        ('location', 'reasoning', 'gps')
        >>> f.check(None, None, gps_km=900.0, gps_confidence=0.1).passed  # an unsure GPS teacher abstains
        True
        """
        gps_counts = self.gps_km is not None and gps_km is not None and (
            gps_confidence is None or gps_confidence >= self.gps_min_confidence)
        detail = {"location": location, "reasoning": reasoning,
                  "gps_km": None if gps_km is None or not math.isfinite(gps_km) else round(gps_km, 3),
                  "gps_confidence": gps_confidence, "gps_counted": gps_counts}
        failed = []
        if location is not None and location < self.min_location_agreement:
            failed.append("location")
        if gps_counts and not gps_km <= self.gps_km:  # type: ignore[operator]
            failed.append("gps")
        if self.reasoning != "off" and reasoning is not None and reasoning < self.min_reasoning_similarity:
            failed.append("reasoning")
        if not self.enabled or not failed:
            return FilterOutcome.ok(**detail)
        return FilterOutcome.fail("+".join(failed), **detail)
