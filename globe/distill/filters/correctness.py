"""Filter 2, correctness: is a teacher's answer right, by the project's one geo rule?

Each teacher's ``country`` / ``city`` goes through :class:`globe.geo.judge.GeoJudge` against the
sample's ground truth (its names, else the names its coordinates reverse-geocode to), giving a
:class:`~globe.geo.judge.GeoVerdict`. A teacher is correct when the country matches
(``country_correct``) and, by ``rule``:

* ``country`` — nothing more;
* ``city`` — the city matches too (``city_correct``; a truth without a city fails);
* ``distance`` — the geocoded answer lies within ``max_km`` of the true coordinates;
* ``city_or_distance`` (default) — either of the two.

The sample passes when ``any`` (default: the kept chain is chosen among the correct teachers)
or ``all`` of the teachers are correct. A teacher without an answer is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from globe.distill.filters.outcome import FilterOutcome
from globe.geo.judge import GeoVerdict

__all__ = ["CorrectnessFilter"]


@dataclass
class CorrectnessFilter:
    """Args:
    rule: what a correct answer needs beyond the country: nothing (country), the city, the
        distance, or city_or_distance.
    max_km: the distance of the ``distance`` rules, km.
    aggregate: any or all of the teachers must be correct.
    enabled: off: every sample passes.
    """

    rule: Literal["country", "city", "distance", "city_or_distance"] = "city_or_distance"
    max_km: float = 25.0
    aggregate: Literal["any", "all"] = "any"
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.rule not in ("country", "city", "distance", "city_or_distance"):
            raise ValueError(f"correctness.rule must be country, city, distance or city_or_distance, got {self.rule!r}")
        if self.aggregate not in ("any", "all"):
            raise ValueError(f"correctness.aggregate must be any or all, got {self.aggregate!r}")

    def teacher_passes(self, verdict: GeoVerdict | None) -> bool:
        """Whether one teacher's verdict is correct under ``rule`` (None: no answer, wrong)."""
        if verdict is None or verdict.country_correct is not True:
            return False
        near = math.isfinite(verdict.distance_km) and verdict.distance_km <= self.max_km
        if self.rule == "country":
            return True
        if self.rule == "city":
            return verdict.city_correct is True
        if self.rule == "distance":
            return near
        return verdict.city_correct is True or near

    def check(self, verdicts: Sequence[GeoVerdict | None]) -> FilterOutcome:
        correct = [self.teacher_passes(v) for v in verdicts]
        detail = {"correct": correct,
                  "distance_km": [None if v is None or not math.isfinite(v.distance_km) else round(v.distance_km, 3)
                                  for v in verdicts]}
        if not self.enabled:
            return FilterOutcome.ok(**detail)
        if not verdicts:
            return FilterOutcome.fail("no_answer", **detail)
        if all(v is None for v in verdicts):
            return FilterOutcome.fail("no_answer", **detail)
        if all(v is not None and v.true_country is None for v in verdicts):
            return FilterOutcome.fail("truth_not_judged", **detail)  # no true country: nothing to compare with
        passed = any(correct) if self.aggregate == "any" else all(correct)
        return FilterOutcome.ok(**detail) if passed else FilterOutcome.fail("wrong", **detail)
