"""MP16-Reason as a LightningDataModule: WebDataset shards of ``{key}.jpg`` + ``{key}.json``.

JSON fields: ``lat``, ``lon``, ``country``, ``city``, ``localizable`` (bool), ``reasoning``,
``entities`` (list of strings) plus any provenance (kept in ``GeoSample.extra``). Batches are
``list[GeoSample]`` with PIL images: no processor here, the model side owns preprocessing.

Sharding across processes: shards are partitioned over ranks (Trainer's global rank/world
size when attached, else torch.distributed, else 0/1) and then over DataLoader workers; a
shard set with fewer shards than ranks x workers fails with a readable error.

``epoch_length`` is the number of *samples per rank* in one training epoch. Set it for
multi-process training: shards differ in size, and ranks that run out of data at different
steps would deadlock collective ops. With it, every rank yields exactly
``ceil``-batched ``epoch_length`` samples (repeating its shards as needed) and the loader
has a ``len`` (so schedulers and ``estimated_stepping_batches`` work). Without it an epoch
is one pass over the rank's shards. Validation and test always make one unshuffled pass.

Exact resume (``state_dict`` / ``load_state_dict``, saved in every checkpoint): the position of
the current training epoch on every rank and DataLoader worker (``data_position``). A run
restored from a mid-epoch checkpoint replays each worker's stream and drops the batches already
trained on, so it trains on exactly the batches the uninterrupted run would have, in the same
order. Resume needs the same ranks, ``num_workers``, shards and seeds.

Order seed: ``seed=None`` (the default) takes the run's ``seed_everything`` seed, so
``--seed_everything N`` changes the data order as a Lightning user expects (the data set itself
is fixed by the data; GeoSynth's generation seed is separate).

Bad data (corrupt image, truncated tar, JSON missing a field) is skipped and counted per
reason in ``self.stats[split]`` (``DataStats``); a split whose skipped fraction exceeds
``max_bad_fraction`` after ``min_samples_before_check`` samples raises ``BadDataError``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from .data_position import EpochPosition, GeoBatch, gather_positions
from .data_stats import DataStats
from .decode import REQUIRED_FIELDS
from .distributed import rank_and_world_size
from .shard_split import expand_shards
from .shard_stream import ShardStream, make_loader

__all__ = ["MP16Reason"]

SPLITS = ("train", "val", "test")


class MP16Reason(LightningDataModule):
    """Streams MP16-Reason-schema WebDataset shards as batches of ``GeoSample``.

    Args:
        train_shards: shard spec for ``fit`` (local paths, brace patterns such as
            ``data/train-{000000..000031}.tar``, ``::``-joined lists, or any url WebDataset
            opens, e.g. ``pipe:curl -s https://.../train-{000000..000031}.tar``).
        val_shards: shard spec for validation (``None``: no validation loader).
        test_shards: shard spec for ``test`` and ``predict``.
        batch_size: samples per batch (batches are ``list[GeoSample]``).
        num_workers: DataLoader worker processes per rank.
        shuffle_buffer: training samples held in the shuffle buffer (0 or 1 disables it;
            shard order is still reshuffled every epoch).
        seed: order seed; epoch ``e`` of rank ``r``, worker ``w`` shuffles with (seed, e, r, w).
            ``None``: the ``seed_everything`` seed of the run (0 without one).
        epoch_length: training samples per rank per epoch (``None``: one pass over the shards).
        max_bad_fraction: largest tolerated fraction of skipped samples per split.
        min_samples_before_check: samples seen before ``max_bad_fraction`` is enforced.
        required_fields: JSON fields a sample must have to be used.
        persistent_workers: keep DataLoader workers alive between epochs.
    """

    def __init__(
        self,
        train_shards: str | list[str] | None = None,
        val_shards: str | list[str] | None = None,
        test_shards: str | list[str] | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        shuffle_buffer: int = 1000,
        seed: int | None = None,
        epoch_length: int | None = None,
        max_bad_fraction: float = 0.1,
        min_samples_before_check: int = 100,
        required_fields: Sequence[str] = REQUIRED_FIELDS,
        persistent_workers: bool = False,
    ) -> None:
        super().__init__()
        self.train_shards = train_shards
        self.val_shards = val_shards
        self.test_shards = test_shards
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.epoch_length = epoch_length
        self.max_bad_fraction = max_bad_fraction
        self.min_samples_before_check = min_samples_before_check
        self.required_fields = tuple(required_fields)
        self.persistent_workers = persistent_workers
        self.stats: dict[str, DataStats] = {
            split: DataStats(split, max_bad_fraction, min_samples_before_check) for split in SPLITS
        }
        self._epoch: int | None = None
        self._position: EpochPosition | None = None  # the training epoch under way on this rank
        self._resume: EpochPosition | None = None  # restored from a checkpoint, for the next train loader

    @property
    def order_seed(self) -> int:
        """The shuffling seed: ``seed``, else ``seed_everything``'s (``PL_GLOBAL_SEED``), else 0."""
        if self.seed is not None:
            return int(self.seed)
        return int(os.environ.get("PL_GLOBAL_SEED", 0))

    def set_epoch(self, epoch: int) -> None:
        """Force the epoch used for shuffling by the next training loader (e.g. outside a Trainer)."""
        self._epoch = epoch

    def stream(self, split: str, shards: str | list[str] | None = None) -> ShardStream:
        """The ``ShardStream`` of one split (``shards`` overrides the configured spec)."""
        spec = shards if shards is not None else getattr(self, f"{split}_shards")
        if spec is None:
            raise ValueError(f"MP16Reason: no {split}_shards configured")
        rank, world_size = rank_and_world_size(self.trainer)
        train = split == "train"
        stream = ShardStream(
            expand_shards(spec),
            batch_size=self.batch_size,
            stats=self.stats[split],
            rank=rank,
            world_size=world_size,
            num_workers=self.num_workers,
            shuffle=train,
            shuffle_buffer=self.shuffle_buffer,
            seed=self.order_seed,
            epoch_length=self.epoch_length if train else None,
            required_fields=self.required_fields,
        )
        if train and self._epoch is not None:
            stream.set_epoch(self._epoch)
        if train and self._resume is not None:
            # Lightning creates the first iterator of a run before it sets the epoch: start the
            # stream at the checkpoint's epoch (the next one when that epoch was complete)
            resume = self._resume
            if resume.complete or (self.epoch_length is not None and resume.total >= len(stream)):
                stream.set_epoch(resume.epoch + 1)
            else:
                stream.set_epoch(resume.epoch)
                stream.resume = resume
        return stream

    def _loader(self, split: str) -> DataLoader:
        return make_loader(self.stream(split), self.num_workers, self.persistent_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val") if self.val_shards is not None else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")

    # ------------------------------------------------------------------ exact resume
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Count each training batch as it reaches the training step (after Lightning's prefetch)."""
        trainer = self.trainer
        if trainer is not None and trainer.training and isinstance(batch, GeoBatch):
            epoch = int(trainer.current_epoch)
            if self._position is None or self._position.epoch != epoch:
                resumed = self._resume if self._resume is not None and self._resume.epoch == epoch else None
                self._position = resumed or EpochPosition(epoch, self.num_workers)
                self._resume = None
            self._position.advance(batch.worker)
            # the loop has prefetched one batch, so it knows whether this one ends the epoch (set just
            # before this hook); counts alone cannot tell for an epoch of unknown length
            self._position.complete = bool(getattr(trainer.fit_loop.epoch_loop.batch_progress, "is_last_batch", False))
        return batch

    def state_dict(self) -> dict[str, Any]:
        """The training position of every rank (a collective under several ranks: Lightning
        builds the checkpoint on every rank, and only rank 0 writes this part)."""
        position = self._position or self._resume
        positions = gather_positions(position.to_dict() if position is not None else None)
        return {"positions": positions, "order_seed": self.order_seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        positions = state_dict.get("positions") or []
        rank, world_size = rank_and_world_size(self.trainer)
        if positions and len(positions) != world_size:
            raise ValueError(
                f"the checkpoint's data position is for {len(positions)} rank(s), this run has {world_size}: "
                "an exact resume needs the same number of ranks"
            )
        if positions and state_dict.get("order_seed") != self.order_seed:
            raise ValueError(
                f"the checkpoint's data order seed is {state_dict.get('order_seed')}, this run's is "
                f"{self.order_seed}: resume with the same seed_everything / data seed"
            )
        mine = positions[rank] if positions else None
        self._resume = EpochPosition.from_dict(mine) if mine is not None else None
        self._position = None

    def data_stats(self) -> dict[str, float]:
        """All split counters as one flat dict for ``log_dict``."""
        out: dict[str, float] = {}
        for stats in self.stats.values():
            out.update(stats.as_log_dict())
        return out
