"""The result every validation filter returns."""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["FILTERS", "FilterOutcome"]

#: the filters in the order they are reported
FILTERS = ("localizability", "correctness", "agreement", "segmentation")


class FilterOutcome(NamedTuple):
    """``passed``; ``reason``: why not ("" when passed); ``detail``: the figures the decision used."""

    passed: bool
    reason: str = ""
    detail: dict[str, Any] = {}

    @classmethod
    def ok(cls, **detail: Any) -> "FilterOutcome":
        return cls(True, "", detail)

    @classmethod
    def fail(cls, reason: str, **detail: Any) -> "FilterOutcome":
        return cls(False, reason, detail)
