"""Where a training epoch stands, per rank and per DataLoader worker, for exact mid-epoch resume.

A streaming loader cannot seek: on resume it must replay its stream and drop what was already
trained on. This module keeps the bookkeeping that makes the replay exact.

- Every training batch carries the *logical* worker that produced it (``GeoBatch.worker``).
- When a batch reaches the training step (the data module's ``on_before_batch_transfer``,
  i.e. after Lightning's prefetching, so prefetched-but-untrained batches do not count), its
  worker's counter goes up by one: ``consumed[w]`` batches of worker ``w``.
- The position also records whether the epoch's last batch was reached (``complete``: Lightning's
  loop knows it, its fetcher prefetches one batch); a run resumed from a checkpoint taken then starts
  the next epoch. Counts alone cannot tell an epoch of unknown length that is over from one that is not.
- A DataLoader over an iterable data set takes batches from its workers round-robin, skipping
  exhausted ones. After resume it starts again at physical worker 0, so physical worker ``i``
  plays logical worker ``(i + rotation) % W`` with ``rotation`` = the logical worker that was
  next in turn. Each logical worker replays its own (deterministic) stream and drops its first
  ``consumed[w]`` batches. The resumed epoch then yields exactly the batches the uninterrupted
  run would have yielded, in the same order: no sample trained twice or skipped.

The position of every rank goes into the checkpoint (ranks gather it when the state is saved,
since only rank 0 writes the non-tensor part of a checkpoint); each rank restores its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EpochPosition", "GeoBatch", "gather_positions"]


class GeoBatch(list):
    """A batch (``list[GeoSample]``) that remembers the logical DataLoader worker that made it."""

    worker: int = 0

    def __init__(self, samples=(), worker: int = 0) -> None:
        super().__init__(samples)
        self.worker = worker


@dataclass
class EpochPosition:
    """Batches of one training epoch already trained on, on one rank.

    >>> p = EpochPosition(epoch=0, num_workers=2)
    >>> for w in (0, 1, 0): p.advance(w)
    >>> p.consumed, p.rotation
    ([2, 1], 1)
    >>> EpochPosition.from_dict(p.to_dict()) == p
    True
    """

    epoch: int
    num_workers: int
    consumed: list[int] = field(default_factory=list)
    last_worker: int = -1
    complete: bool = False  # the epoch's last batch was trained on

    def __post_init__(self) -> None:
        workers = max(self.num_workers, 1)
        if not self.consumed:
            self.consumed = [0] * workers
        if len(self.consumed) != workers:
            raise ValueError(f"data position has {len(self.consumed)} worker counters for {workers} workers")

    def advance(self, worker: int) -> None:
        self.consumed[worker] += 1
        self.last_worker = worker

    @property
    def rotation(self) -> int:
        """The logical worker whose batch comes next (the loader's physical worker 0 plays it)."""
        return (self.last_worker + 1) % len(self.consumed)

    @property
    def total(self) -> int:
        return sum(self.consumed)

    def logical_worker(self, physical: int) -> int:
        return (physical + self.rotation) % len(self.consumed)

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "num_workers": self.num_workers, "consumed": list(self.consumed),
                "last_worker": self.last_worker, "complete": self.complete}

    @classmethod
    def from_dict(cls, state: dict) -> EpochPosition:
        try:
            return cls(int(state["epoch"]), int(state["num_workers"]), [int(c) for c in state["consumed"]],
                       int(state["last_worker"]), bool(state.get("complete", False)))
        except (AttributeError, KeyError, TypeError, ValueError) as exn:
            raise ValueError(f"malformed data position in checkpoint: {state!r}") from exn


def gather_positions(position: dict | None) -> list[dict | None]:
    """Every rank's position (a collective under ``torch.distributed``; ``[position]`` otherwise)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [position]
    out: list[dict | None] = [None] * dist.get_world_size()
    dist.all_gather_object(out, position)
    return out
