"""Filter 1, localizability: do the teachers judge the image localizable, confidently enough?

A teacher *passes* when it answered ``localizable: yes`` with ``score >= threshold``; a teacher
whose judgement or score could not be read abstains. The sample passes by ``aggregate`` over
the teachers that did not abstain: ``all`` (default: one confident "no" is enough to drop an
image), ``any``, or ``majority`` (more than half). No judgement at all fails (``no_judgement``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from globe.distill.filters.outcome import FilterOutcome
from globe.distill.parse import TeacherReading

__all__ = ["LocalizabilityFilter"]


@dataclass
class LocalizabilityFilter:
    """Args:
    threshold: smallest score of a teacher that says yes.
    aggregate: how the teachers' votes combine: all, any or majority (of those with a judgement).
    enabled: off: every sample passes (and is still counted as checked).
    """

    threshold: float = 0.5
    aggregate: Literal["all", "any", "majority"] = "all"
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.aggregate not in ("all", "any", "majority"):
            raise ValueError(f"localizability.aggregate must be all, any or majority, got {self.aggregate!r}")

    def teacher_passes(self, reading: TeacherReading) -> bool | None:
        """True / False for a teacher with a judgement and a score, None when it abstains.

        >>> f = LocalizabilityFilter(threshold=0.6)
        >>> r = TeacherReading(True, 0.7, "", None, None, ())
        >>> f.teacher_passes(r), f.teacher_passes(r._replace(score=0.5)), f.teacher_passes(r._replace(localizable=None))
        (True, False, None)
        """
        if not reading.has_judgement:
            return None
        return bool(reading.localizable) and reading.score >= self.threshold  # type: ignore[operator]

    def check(self, readings: Sequence[TeacherReading]) -> FilterOutcome:
        votes = [self.teacher_passes(r) for r in readings]
        cast = [v for v in votes if v is not None]
        scores = [r.score for r in readings if r.has_judgement]
        detail = {"votes": votes, "mean_score": sum(scores) / len(scores) if scores else None}  # type: ignore[arg-type]
        if not self.enabled:
            return FilterOutcome.ok(**detail)
        if not cast:
            return FilterOutcome.fail("no_judgement", **detail)
        if self.aggregate == "all":
            passed = all(cast)
        elif self.aggregate == "any":
            passed = any(cast)
        else:
            passed = 2 * sum(cast) > len(cast)
        return FilterOutcome.ok(**detail) if passed else FilterOutcome.fail("not_localizable", **detail)
