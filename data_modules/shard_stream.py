"""A WebDataset pipeline that yields batches of GeoSample, split across ranks and workers.

Stages of one pass (``wds.DataPipeline``), per DataLoader worker:

1. shard list    -- this reader's shards (``shard_split.shards_for``), reshuffled per epoch/pass
2. tar reader    -- ``tar_reader.tar_records`` (``wds.gopen`` + WebDataset's member
                    grouping); a truncated/unreadable tar is counted once (``bad_shard``,
                    key ``url:member``) and the pipeline moves on to the next shard
3. shuffle       -- ``wds.shuffle`` buffer of raw bytes (train only), seeded with
                    (seed, epoch, rank, worker): the same seed replays the same order
4. decode        -- ``decode.sample_from_record``; bad samples are counted and skipped
5. quota         -- with ``epoch_length``: exactly this many samples per rank per epoch
                    (the shard list repeats as needed); without it: one pass
6. skip          -- on resume, the batches this (logical) worker already gave to training
                    (``data_position``: the replay is exact, so these are the same batches)
7. batch         -- ``wds.batched`` into ``GeoBatch`` (a ``list[GeoSample]`` tagged with its
                    logical worker, which the data module counts for the checkpoint)

Epochs: ``set_epoch(e)`` (Lightning calls it through the loader's sampler, see
``make_loader``) or, without it, each ``iter()`` advances the epoch by one, also inside
persistent workers.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence

import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torch.utils.data.dataloader import _InfiniteConstantSampler

from .data_position import EpochPosition, GeoBatch
from .data_stats import DataStats
from .decode import REQUIRED_FIELDS, SampleError, sample_from_record
from .sample import GeoSample
from .tar_reader import tar_records
from .shard_split import check_enough_shards, shards_for, worker_quota

__all__ = ["ShardStream", "make_loader"]


def _worker() -> tuple[int, int]:
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


class ShardStream(IterableDataset):
    """Iterable of ``list[GeoSample]`` batches over WebDataset shards.

    Args:
        urls: expanded shard urls (local paths or anything ``wds.gopen`` opens).
        batch_size: samples per batch (the last batch of a worker may be smaller).
        stats: shared counters of skipped samples (see ``DataStats``).
        rank / world_size: this process's place among the training processes.
        num_workers: DataLoader workers (only used for ``__len__``; iteration asks torch).
        shuffle: reshuffle shard order per epoch and use a sample shuffle buffer.
        shuffle_buffer: samples in the shuffle buffer (0 = shard-level shuffling only).
        seed: base seed of every shuffle.
        epoch_length: samples per rank per epoch; ``None`` = one pass over this rank's shards.
        required_fields: JSON fields a sample must carry.
    """

    def __init__(
        self,
        urls: Sequence[str],
        batch_size: int,
        stats: DataStats,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        shuffle: bool = False,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        epoch_length: int | None = None,
        required_fields: Sequence[str] = REQUIRED_FIELDS,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if epoch_length is not None and epoch_length < 1:
            raise ValueError(f"epoch_length must be >= 1 or None, got {epoch_length}")
        self.urls = list(urls)
        self.batch_size = batch_size
        self.stats = stats
        self.rank, self.world_size = rank, world_size
        self.num_workers = num_workers
        self.shuffle, self.shuffle_buffer, self.seed = shuffle, shuffle_buffer, seed
        self.epoch_length = epoch_length
        self.required_fields = tuple(required_fields)
        self.epoch = 0
        self.resume: EpochPosition | None = None  # set by the data module when a checkpoint is restored
        if shuffle:  # evaluation streams split samples instead when shards are few (``_split_samples``)
            check_enough_shards(len(self.urls), world_size, num_workers, stats.name)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        """Batches per epoch on this rank; only defined with ``epoch_length``."""
        if self.epoch_length is None:
            raise TypeError("ShardStream has no length without epoch_length (one pass of unknown size)")
        workers = max(self.num_workers, 1)
        quotas = (worker_quota(self.epoch_length, w, workers) for w in range(workers))
        return sum(-(-q // self.batch_size) for q in quotas)

    # -- stages
    def _split_samples(self, num_workers: int) -> bool:
        """Evaluation with fewer shards than readers (e.g. 4 validation shards, 8 ranks x 2 workers):
        every rank reads every shard (split over its workers) and keeps every ``world_size``-th
        record, so each record is still read by exactly one (rank, worker). Training keeps the
        shard split, which is cheaper and is required (``TooFewShardsError``) there."""
        return not self.shuffle and len(self.urls) < self.world_size * max(num_workers, 1)

    def _shard_source(self, epoch: int, worker: int, num_workers: int) -> Iterator[dict]:
        by_sample = self._split_samples(num_workers)
        rank, world_size = (0, 1) if by_sample else (self.rank, self.world_size)
        for pass_index in itertools.count():
            seed = f"{self.seed}:{epoch}:{pass_index}" if self.shuffle else None
            for url in shards_for(self.urls, rank, world_size, worker, num_workers, seed):
                yield {"url": url}
            if self.epoch_length is None:
                return
            if self._records_this_epoch == 0:  # repeating empty/unreadable shards would never end
                self.stats.check(final=True)
                raise RuntimeError(f"{self.stats.name}: a full pass over this reader's shards yielded no record")

    def _records(self, sources: Iterator[dict], split_samples: bool = False) -> Iterator[dict]:
        for index, record in enumerate(tar_records(sources, lambda key, detail: self.stats.record_bad("bad_shard", key, detail))):
            if split_samples and index % self.world_size != self.rank:
                continue
            self._records_this_epoch += 1
            yield record

    def _decode(self, records: Iterator[dict]) -> Iterator[GeoSample]:
        for record in records:
            key = record.get("__key__", "?")
            try:
                sample = sample_from_record(record, self.required_fields)
            except SampleError as exn:
                self.stats.record_bad(exn.reason, f"{record.get('__url__', '')}:{key}", str(exn))
                continue
            self.stats.record_ok()
            self._samples_this_epoch += 1
            yield sample

    def __iter__(self) -> Iterator[GeoBatch]:
        epoch = self.epoch
        self.epoch += 1  # a persistent worker's copy advances itself
        physical, num_workers = _worker()
        if self.shuffle:
            check_enough_shards(len(self.urls), self.world_size, num_workers, self.stats.name)
        split_samples = self._split_samples(num_workers)
        resume = self.resume if self.resume is not None and self.resume.epoch == epoch else None
        worker, skip = physical, 0
        if resume is not None:
            if len(resume.consumed) != max(num_workers, 1):
                raise ValueError(
                    f"{self.stats.name}: the checkpoint's data position was taken with {len(resume.consumed)} "
                    f"DataLoader worker(s), this run has {max(num_workers, 1)}: resume with the same num_workers"
                )
            worker = resume.logical_worker(physical)
            skip = resume.consumed[worker]
        self._records_this_epoch = self._samples_this_epoch = 0
        shuffle = None
        if self.shuffle and self.shuffle_buffer > 1:
            rng_seed = f"{self.seed}:{epoch}:{self.rank}:{worker}"
            shuffle = wds.shuffle(self.shuffle_buffer, min(100, self.shuffle_buffer), rng=random.Random(rng_seed))
        quota = None if self.epoch_length is None else worker_quota(self.epoch_length, worker, num_workers)
        pipeline = wds.DataPipeline(
            lambda: self._shard_source(epoch, worker, num_workers),
            lambda src: self._records(src, split_samples),
            shuffle,
            self._decode,
            (lambda src: itertools.islice(src, quota)) if quota is not None else None,
            wds.batched(self.batch_size, collation_fn=lambda samples: GeoBatch(samples, worker), partial=True),
            (lambda src: itertools.islice(src, skip, None)) if skip else None,
        )
        yield from pipeline
        if self.epoch_length is None:
            self.stats.check(final=True)
            if self.shuffle and self._samples_this_epoch == 0:
                # an empty training pass would make Lightning spin through empty epochs forever
                raise RuntimeError(
                    f"{self.stats.name}: a full pass over this reader's {len(self.urls)} shard(s) "
                    f"(rank {self.rank}, worker {worker}) yielded no usable sample; check the shards"
                )


class _EpochSampler(_InfiniteConstantSampler):
    """The sampler of an IterableDataset loader, plus ``set_epoch`` forwarded to the dataset.

    Lightning calls ``loader.sampler.set_epoch(epoch)`` before every epoch; with
    non-persistent workers the dataset is pickled to the workers after that call.
    """

    def __init__(self, dataset: ShardStream) -> None:
        super().__init__()
        self.dataset = dataset

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)


def _identity(batch: list[GeoSample]) -> list[GeoSample]:
    return batch


class StreamLoader(DataLoader):
    """A ``DataLoader`` whose resume state lives in its data module.

    Lightning looks for ``state_dict`` / ``load_state_dict`` on a training loader to decide whether
    a mid-epoch resume is exact. The position of a ``ShardStream`` is kept by the data module
    (``MP16Reason.state_dict``, per rank and worker), which also restores it; the loader itself
    has nothing to add, and says so here instead of triggering Lightning's "not resumable" warning.
    """

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        return None


def make_loader(stream: IterableDataset, num_workers: int = 0, persistent_workers: bool = False) -> DataLoader:
    """A DataLoader over an already-batching stream (``batch_size=None``), epoch-aware."""
    loader = StreamLoader(
        stream,
        batch_size=None,
        num_workers=num_workers,
        collate_fn=_identity,
        persistent_workers=persistent_workers and num_workers > 0,
    )
    if hasattr(stream, "set_epoch"):
        # DataLoader forbids re-assigning ``sampler`` after __init__; the replacement is
        # behaviourally identical (yields None forever) and adds set_epoch.
        object.__setattr__(loader, "sampler", _EpochSampler(stream))
    return loader
