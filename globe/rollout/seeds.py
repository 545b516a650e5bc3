"""Seeds of the rollout calls, derived from where the call happens, not from the global RNG.

A rollout's seed is a hash of (base seed, stage, index, rank): ``index`` is the optimiser step in
training and the batch index in validation / test. So

- a run is reproducible whatever else consumed random numbers before it (a tiny model or
  GeoSynth built in the same process, a DataLoader iterator, a callback): drawing the seed from
  the global generator made the demo's evaluation depend on whether its artifacts already existed;
- every validation pass decodes batch k with the same seed, so two checkpoints are compared on the
  same random numbers (common random numbers: their difference is the model's, not the sampler's);
- ranks draw different samples.
"""

from __future__ import annotations

import zlib

SEED_BITS = 31


def rollout_seed(base: int, stage: str, index: int, rank: int = 0) -> int:
    """A ``SEED_BITS``-bit seed for one rollout call (CRC-32 of the four keys).

    >>> rollout_seed(0, "train", 5) == rollout_seed(0, "train", 5)
    True
    >>> len({rollout_seed(0, "train", 5), rollout_seed(0, "train", 6), rollout_seed(0, "val", 5), rollout_seed(1, "train", 5), rollout_seed(0, "train", 5, rank=1)})
    5
    >>> 0 <= rollout_seed(7, "test", 3) < 2**31
    True
    """
    return zlib.crc32(f"{base}:{stage}:{index}:{rank}".encode()) & ((1 << SEED_BITS) - 1)
