"""Stream GeoSamples from image files on disk (CSV rows + an image folder).

The counterpart of ``ShardStream`` for data that is not sharded (IM2GPS3K as published):
rows are split over ranks and DataLoader workers (``rows[rank::world][worker::workers]``),
each file is read and decoded with the same ``decode_image`` as the shards, and unreadable
or missing files are counted in a ``DataStats`` and skipped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.data import IterableDataset, get_worker_info

from .data_stats import DataStats
from .decode import SampleError, decode_image
from .sample import GeoSample

__all__ = ["FolderRow", "ImageFolderStream"]


@dataclass
class FolderRow:
    """One image on disk and its labels."""

    key: str
    path: Path
    lat: float
    lon: float
    country: str = ""
    city: str = ""
    localizable: bool = True
    reasoning: str = ""
    entities: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


class ImageFolderStream(IterableDataset):
    """Iterable of ``list[GeoSample]`` batches read from image files, in row order."""

    def __init__(
        self,
        rows: Sequence[FolderRow],
        batch_size: int,
        stats: DataStats,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.num_workers = num_workers
        self.rows = list(rows)
        self.batch_size = batch_size
        self.stats = stats
        self.rank, self.world_size = rank, world_size

    def _samples(self, rows: Sequence[FolderRow]) -> Iterator[GeoSample]:
        for row in rows:
            try:
                data = row.path.read_bytes()
            except OSError as exn:
                self.stats.record_bad("missing_image", row.key, f"{row.path}: {exn.strerror}")
                continue
            try:
                image = decode_image(data)
            except SampleError as exn:
                self.stats.record_bad(exn.reason, row.key, f"{row.path}: {exn}")
                continue
            self.stats.record_ok()
            yield GeoSample(row.key, image, row.lat, row.lon, row.country, row.city, row.localizable,
                            row.reasoning, list(row.entities), dict(row.extra))

    def __iter__(self) -> Iterator[list[GeoSample]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        mine = self.rows[self.rank::self.world_size][worker::num_workers]
        batch: list[GeoSample] = []
        for sample in self._samples(mine):
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
        self.stats.check(final=True)

    def __len__(self) -> int:
        """Batches of this rank when no file is skipped (skipped files make the epoch shorter)."""
        mine = self.rows[self.rank::self.world_size]
        workers = max(self.num_workers, 1)
        return sum(-(-len(mine[w::workers]) // self.batch_size) for w in range(workers))
