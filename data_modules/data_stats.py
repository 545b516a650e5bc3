"""Counters of skipped samples, shared between DataLoader workers, and the bad-data guard.

Long runs must survive a corrupt JPEG or a truncated tar, but must not silently train on
nothing. Every decoder records each sample as ``ok`` or as skipped for one reason; when the
skipped fraction exceeds ``max_bad_fraction`` after at least ``min_samples`` samples the
stream raises :class:`BadDataError` (a DataLoader worker re-raises it in the main process).

The counts live in a ``multiprocessing.Array`` so a data module in the main process reads the
totals of all its workers (``stats.counts``, ``stats.as_log_dict()``); the keys of skipped
samples are logged (``logging`` warning, first ``log_first`` per process) and kept in
``bad_keys`` of the process that saw them (the main process when ``num_workers=0``).
"""

from __future__ import annotations

import logging
import multiprocessing
from multiprocessing.context import get_spawning_popen

__all__ = ["REASONS", "BadDataError", "DataStats"]

log = logging.getLogger("data_modules")

# Why a sample was skipped. Kept as one fixed tuple: the shared array is indexed by it.
REASONS: tuple[str, ...] = (
    "corrupt_image",  # image bytes that PIL cannot fully decode
    "missing_image",  # no image member / file for the key
    "missing_json",  # no .json member for the key
    "bad_json",  # .json that is not a JSON object
    "missing_field",  # JSON without a required field (lat, lon, country, city by default)
    "bad_value",  # a field of the wrong type or out of range (lat 123, lon "abc")
    "bad_shard",  # unreadable or truncated tar (the rest of that shard is lost)
)
_FIELDS = ("ok", *REASONS)


class BadDataError(RuntimeError):
    """The data source is mostly broken: stop instead of training on nothing."""


class DataStats:
    """Per-reason counts of a data stream, shared by all DataLoader workers of one process.

    Args:
        name: stream name used in log lines and log keys ("train", "val", "test").
        max_bad_fraction: largest tolerated ``bad / seen`` once ``seen >= min_samples``.
        min_samples: samples to see before the fraction is enforced (small counts are noisy).
        max_keys: how many ``(reason, key)`` pairs ``bad_keys`` keeps per process.
        log_first: how many skipped samples are logged at WARNING per process (then DEBUG).
    """

    def __init__(
        self,
        name: str = "data",
        max_bad_fraction: float = 0.5,
        min_samples: int = 100,
        max_keys: int = 1000,
        log_first: int = 20,
    ) -> None:
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
        self.name = name
        self.max_bad_fraction = max_bad_fraction
        self.min_samples = min_samples
        self.max_keys = max_keys
        self.log_first = log_first
        self._counts = multiprocessing.Array("q", len(_FIELDS))
        self.bad_keys: list[tuple[str, str]] = []
        self._logged = 0

    # -- pickling: the shared array travels to DataLoader workers (fork or spawn); any other
    # pickling (deepcopy, checkpoint) takes a private snapshot instead of failing.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if get_spawning_popen() is None:
            state["_counts"] = list(self._counts[:])
        return state

    def __setstate__(self, state: dict) -> None:
        counts = state["_counts"]
        if isinstance(counts, list):
            state["_counts"] = multiprocessing.Array("q", counts)
        self.__dict__.update(state)

    # -- recording
    def record_ok(self) -> None:
        with self._counts.get_lock():
            self._counts[0] += 1

    def record_bad(self, reason: str, key: str, detail: str = "") -> None:
        """Count one skipped sample, log it with its key, and enforce ``max_bad_fraction``."""
        index = _FIELDS.index(reason)  # ValueError on an unknown reason: a programming error
        with self._counts.get_lock():
            self._counts[index] += 1
        if len(self.bad_keys) < self.max_keys:
            self.bad_keys.append((reason, key))
        level = logging.WARNING if self._logged < self.log_first else logging.DEBUG
        self._logged += 1
        log.log(level, "%s: skipped %s (%s)%s", self.name, key, reason, f": {detail}" if detail else "")
        self.check()

    def check(self, final: bool = False) -> None:
        """Raise :class:`BadDataError` when the stream is mostly broken.

        During the stream the fraction is enforced once ``seen >= min_samples``; at the end of a
        pass (``final=True``) a stream that decoded nothing but skipped something always fails.
        """
        counts = self.counts
        seen, bad = self.seen, self.bad
        too_many = seen >= self.min_samples and bad > self.max_bad_fraction * seen
        nothing = final and counts["ok"] == 0 and bad > 0
        if too_many or nothing:
            reasons = ", ".join(f"{r}={counts[r]}" for r in REASONS if counts[r])
            examples = ", ".join(f"{k} ({r})" for r, k in self.bad_keys[:5])
            raise BadDataError(
                f"{self.name}: {bad} of {seen} samples are unusable ({reasons}); more than "
                f"max_bad_fraction={self.max_bad_fraction:g}. Check the shards "
                f"(e.g. {examples or 'see the log'})."
            )

    # -- reading
    @property
    def counts(self) -> dict[str, int]:
        """``{"ok": n, "corrupt_image": n, ...}`` summed over all workers."""
        with self._counts.get_lock():
            values = list(self._counts[:])
        return dict(zip(_FIELDS, values))

    @property
    def ok(self) -> int:
        return self.counts["ok"]

    @property
    def bad(self) -> int:
        counts = self.counts
        return sum(counts[r] for r in REASONS)

    @property
    def seen(self) -> int:
        return sum(self.counts.values())

    @property
    def bad_fraction(self) -> float:
        seen = self.seen
        return self.bad / seen if seen else 0.0

    def as_log_dict(self, prefix: str = "data") -> dict[str, float]:
        """Flat numbers for ``LightningModule.log_dict``: ``{"data/train/ok": ..., ...}``."""
        out = {f"{prefix}/{self.name}/{k}": float(v) for k, v in self.counts.items()}
        out[f"{prefix}/{self.name}/bad_fraction"] = self.bad_fraction
        return out

    def reset(self) -> None:
        with self._counts.get_lock():
            for i in range(len(_FIELDS)):
                self._counts[i] = 0
        self.bad_keys.clear()
        self._logged = 0

    def __repr__(self) -> str:
        nonzero = {k: v for k, v in self.counts.items() if v}
        return f"DataStats({self.name!r}, {nonzero})"
