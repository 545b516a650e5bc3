"""Which shards a (rank, worker) reads: an explicit, deterministic partition.

Every rank computes the same shard order for an epoch (shuffled with ``seed`` and ``epoch``
when asked), takes ``order[rank::world_size]``, and each DataLoader worker takes
``mine[worker::num_workers]`` of that. Over all ranks and workers every shard is read exactly
once per pass. This is ``wds.split_by_node`` + ``wds.split_by_worker`` with the rank taken
from the Trainer instead of environment variables, plus the guard below.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from webdataset.shardlists import expand_urls

__all__ = ["TooFewShardsError", "check_enough_shards", "expand_shards", "shards_for", "worker_quota"]


class TooFewShardsError(ValueError):
    """More readers (ranks x workers) than shards: some would read nothing."""


def expand_shards(spec: str | Sequence[str]) -> list[str]:
    """Expand a shard spec the way WebDataset does: braces (``dir/train-{000000..000003}.tar``),
    ``::``-joined lists, ``${WDS_...}`` variables; a list is expanded item by item."""
    parts = [spec] if isinstance(spec, str) else list(spec)
    urls = [url for part in parts for url in expand_urls(str(part))]
    if not urls:
        raise ValueError(f"shard spec {spec!r} names no shards")
    return urls


def check_enough_shards(num_shards: int, world_size: int, num_workers: int, name: str = "data") -> None:
    """Raise a readable error when ``num_shards < world_size * max(num_workers, 1)``."""
    readers = world_size * max(num_workers, 1)
    if num_shards < readers:
        raise TooFewShardsError(
            f"{name}: {num_shards} shard(s) for {world_size} rank(s) x {max(num_workers, 1)} "
            f"DataLoader worker(s) = {readers} readers; every reader needs at least one shard. "
            f"Write smaller shards (shard_writer --shard-size) or lower num_workers."
        )


def shards_for(
    urls: Sequence[str],
    rank: int,
    world_size: int,
    worker: int,
    num_workers: int,
    shuffle_seed: str | None = None,
) -> list[str]:
    """The shards one reader reads in one pass (``shuffle_seed=None`` keeps the given order)."""
    order = list(urls)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(order)
    return order[rank::world_size][worker::max(num_workers, 1)]


def worker_quota(total: int, worker: int, num_workers: int) -> int:
    """Samples worker ``worker`` yields so that all workers together yield exactly ``total``."""
    num_workers = max(num_workers, 1)
    return total // num_workers + (1 if worker < total % num_workers else 0)
