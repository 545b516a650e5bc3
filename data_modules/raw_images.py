"""Raw images for the distillation (``cli.py predict --config configs/distill/...``), in chunks.

Two sources:

* ``csv_path`` + ``images``: an MP-16-style CSV (``IMG_ID``, ``LAT``, ``LON``, optional
  ``country``, ``city``, ``entities``; names matched case-insensitively as in the shard
  writer: id ``IMG_ID|img_id|id|image|filename``, ``LAT|lat|latitude``,
  ``LON|lon|lng|long|longitude``) and a folder of images named by ``IMG_ID`` (sub-folders
  allowed: ``a1/1001.jpg``). Every other column is kept in ``extra``.
* ``shards``: existing MP16-Reason-schema shards (GeoSynth, a previous run...). Their
  reasoning is ignored (the teachers write a new one); their ``entities`` are kept (GeoSynth's
  drawn elements: the "oracle" segmentation); only ``lat`` / ``lon`` are required.

**Chunks** are the unit of work and of resume: ``chunk_size`` consecutive CSV rows, or one
input shard. ``setup()`` indexes them (one pass over the CSV, no image read: rows per chunk,
repeated keys; or the samples of each local shard, from its tar headers). A chunk the writer
has finished (``skip_chunks``, from its done-markers) is not read again. The remaining chunks
are split over ranks (``remaining[rank::world_size]``) and DataLoader workers
(``[worker::num_workers]``); each chunk is batched on its own, its last batch flagged
(:class:`globe.distill.batch.ChunkBatch`). The loader has a length (an upper bound: skipped
rows only shorten a chunk), so the progress bar shows an ETA.

**Bad input** is skipped and counted per chunk (the chunk's last batch carries the counts to
the report) and in ``self.stats`` (decode failures, with the ``max_bad_fraction`` guard):
``unsafe_id`` (an id that would leave the image folder: ``..``, absolute, NUL, backslash, a
link leading out; ``image_paths.image_path``), ``bad_row`` (a line the csv module rejects),
``missing_field`` (empty id), ``bad_value`` (coordinates missing, not finite or out of
range), ``duplicate_key`` (a key, ``sanitize_key(IMG_ID)``, already used by an earlier row),
``missing_image``, ``corrupt_image``; from shards also the shard reader's reasons
(``bad_json``, ``missing_json``, ``bad_shard``...).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import tarfile
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from globe.distill.batch import ChunkBatch, DistillSample

from .csv_text import check_utf8, open_csv_text, rows_or_errors
from .data_stats import DataStats
from .decode import IMAGE_EXTENSIONS, SampleError, decode_image, sample_from_record
from .distributed import rank_and_world_size
from .image_paths import UnsafeIdError, image_path
from .row_sources import sanitize_key
from .shard_split import expand_shards
from .shard_stream import make_loader
from .tar_reader import tar_records

__all__ = ["RawImages", "RawImageStream", "csv_columns"]

log = logging.getLogger("data_modules")

_ID = ("IMG_ID", "img_id", "id", "image", "filename")
_LAT = ("LAT", "lat", "latitude")
_LON = ("LON", "lon", "lng", "long", "longitude")
_OPTIONAL = ("country", "city", "entities")
MAX_EXAMPLES = 10  # skipped keys kept per chunk


def csv_columns(fieldnames: Sequence[str]) -> dict[str, str | None]:
    """Column name of each field (case-insensitive), None when absent.

    >>> csv_columns(["img_id", "Latitude", "LON", "City"])
    {'id': 'img_id', 'lat': 'Latitude', 'lon': 'LON', 'country': None, 'city': 'City', 'entities': None}
    """
    lower = {f.lower(): f for f in fieldnames if f is not None}

    def find(*names: str) -> str | None:
        return next((lower[n.lower()] for n in names if n.lower() in lower), None)

    return {"id": find(*_ID), "lat": find(*_LAT), "lon": find(*_LON), **{n: find(n) for n in _OPTIONAL}}


def _coordinates(lat: str, lon: str) -> tuple[float, float]:
    lat_f, lon_f = float(lat), float(lon)
    if not (abs(lat_f) <= 90 and abs(lon_f) <= 180):  # also False for NaN
        raise ValueError(f"coordinates out of range: {lat!r}, {lon!r}")
    return lat_f, lon_f


def _entities(text: str) -> list[str]:
    text = (text or "").strip()
    if not text:
        return []
    if text.startswith("["):
        value = json.loads(text)
        return [str(v["text"] if isinstance(v, dict) else v) for v in value]
    return [t.strip() for t in text.split(";") if t.strip()]


def _key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little", signed=True)


def index_csv(csv_path: str | Path, chunk_size: int) -> tuple[list[int], set[int], dict[str, str | None]]:
    """(rows per chunk, indices of rows whose key an earlier row already has, the columns).

    One pass over the CSV without reading any image; repeated keys are found from 64-bit
    hashes (8 bytes a row, sorted), not from a set of strings."""
    check_utf8(csv_path)
    hashes: list[int] = []
    with open_csv_text(csv_path, check=False) as f:
        reader = csv.DictReader(f)
        columns = csv_columns(reader.fieldnames or [])
        if columns["id"] is None or columns["lat"] is None or columns["lon"] is None:
            raise ValueError(f"{csv_path}: needs an id column (IMG_ID) and LAT / LON columns, has {reader.fieldnames}")
        for row in rows_or_errors(reader):
            key = "" if isinstance(row, csv.Error) else sanitize_key((row.get(columns["id"]) or "").strip())
            hashes.append(_key_hash(key) if key and key != "_" else 0)
    values = np.asarray(hashes, dtype=np.int64)
    order = np.argsort(values, kind="stable")  # equal hashes keep row order: the first one is not a repeat
    sorted_values = values[order]
    repeat = np.zeros(len(values), dtype=bool)
    repeat[order[1:]] = (sorted_values[1:] == sorted_values[:-1]) & (sorted_values[1:] != 0)
    n = len(hashes)
    chunks = [min(chunk_size, n - start) for start in range(0, n, chunk_size)]
    return chunks, {int(i) for i in np.flatnonzero(repeat)}, columns


def count_shard_samples(url: str) -> int | None:
    """Samples (keys with a ``.json`` member) of a local tar, from its headers; None when not local."""
    path = Path(url)
    if not path.is_file():
        return None
    keys: set[str] = set()
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                base, _, ext = member.name.partition(".")
                if ext == "json":
                    keys.add(base)
    except (tarfile.TarError, OSError, EOFError):
        pass  # a broken tar: what could be listed (the reader skips the rest)
    return len(keys)


class _ChunkAccount:
    """What a chunk skipped, for its last batch."""

    def __init__(self) -> None:
        self.rows = 0
        self.skipped: Counter[str] = Counter()
        self.examples: list[tuple[str, str]] = []

    def skip(self, reason: str, key: str) -> None:
        self.skipped[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append((reason, key))


class RawImageStream(IterableDataset):
    """Batches (``ChunkBatch``) of this rank's remaining chunks; see the module docstring."""

    def __init__(self, chunks: Sequence[int], batch_size: int, stats: DataStats, batches_per_chunk: Sequence[int] | None,
                 csv_path: str | None = None, images: str | None = None, chunk_size: int = 0,
                 repeats: set[int] | None = None, columns: dict | None = None, shards: Sequence[str] | None = None,
                 num_workers: int = 0) -> None:
        super().__init__()
        self.chunks = list(chunks)
        self.batch_size, self.stats = batch_size, stats
        self.batches_per_chunk = batches_per_chunk
        self.csv_path, self.images, self.chunk_size = csv_path, images, chunk_size
        self.repeats, self.columns = repeats or set(), columns or {}
        self.shards = list(shards or [])
        self.num_workers = num_workers

    def __len__(self) -> int:
        if self.batches_per_chunk is None:
            raise TypeError("the number of batches is unknown (shards that are not local files)")
        return max(1, sum(self.batches_per_chunk[c] for c in self.chunks))

    # -- samples of one chunk
    def _decode(self, key: str, data: bytes, account: _ChunkAccount, where: str) -> object:
        try:
            image = decode_image(data)
        except SampleError as exn:
            account.skip(exn.reason, key)
            self.stats.record_bad(exn.reason, key, f"{where}: {exn}")
            return None
        self.stats.record_ok()
        return image

    def _csv_chunks(self, mine: set[int]) -> Iterator[tuple[int, Iterator[DistillSample], _ChunkAccount]]:
        c = self.columns
        used = {v for v in c.values() if v}
        with open_csv_text(self.csv_path, check=False) as f:
            reader = csv.DictReader(f)
            rows = rows_or_errors(reader)
            index = 0
            while True:
                chunk = index // self.chunk_size
                block = []
                for row in rows:
                    block.append((index, row, reader.reader.line_num))
                    index += 1
                    if len(block) == self.chunk_size:
                        break
                if not block:
                    return
                if chunk in mine:
                    account = _ChunkAccount()
                    yield chunk, self._csv_samples(block, used, account), account

    def _csv_samples(self, block: list, used: set[str], account: _ChunkAccount) -> Iterator[DistillSample]:
        c = self.columns
        for index, row, line in block:
            account.rows += 1
            if isinstance(row, csv.Error):
                account.skip("bad_row", f"line {line}")
                continue
            img_id = (row.get(c["id"]) or "").strip()
            key = sanitize_key(img_id) if img_id else f"line {line}"
            if not img_id:
                account.skip("missing_field", key)
                continue
            if index in self.repeats:
                account.skip("duplicate_key", key)
                continue
            try:
                path = image_path(self.images, img_id, subfolders=True)
            except UnsafeIdError:
                account.skip("unsafe_id", key)
                continue
            try:
                lat, lon = _coordinates(row.get(c["lat"]) or "", row.get(c["lon"]) or "")
                entities = _entities(row.get(c["entities"]) or "") if c["entities"] else []
            except (TypeError, ValueError, OverflowError, RecursionError):
                account.skip("bad_value", key)
                continue
            if not path.is_file():
                account.skip("missing_image", key)
                self.stats.record_bad("missing_image", key, f"{path}: no such file")
                continue
            try:
                data = path.read_bytes()
            except OSError as exn:
                account.skip("missing_image", key)
                self.stats.record_bad("missing_image", key, f"{path}: {exn.strerror}")
                continue
            image = self._decode(key, data, account, str(path))
            if image is None:
                continue
            extra = {k: v for k, v in row.items() if k not in used and k is not None}
            extra["img_id"] = img_id
            yield DistillSample(key, image, lat, lon, (row.get(c["country"]) or "").strip() if c["country"] else "",
                                (row.get(c["city"]) or "").strip() if c["city"] else "", True, "", entities, extra,
                                image_bytes=data, source="csv")

    def _shard_chunks(self, mine: set[int]) -> Iterator[tuple[int, Iterator[DistillSample], _ChunkAccount]]:
        for chunk in sorted(mine):
            account = _ChunkAccount()
            yield chunk, self._shard_samples(self.shards[chunk], account), account

    def _shard_samples(self, url: str, account: _ChunkAccount) -> Iterator[DistillSample]:
        def on_error(key: str, detail: str) -> None:
            account.skip("bad_shard", key)
            self.stats.record_bad("bad_shard", key, detail)

        seen: set[str] = set()
        for record in tar_records([{"url": url}], on_error):
            account.rows += 1
            key = record.get("__key__", "?")
            try:
                sample = sample_from_record(record, ("lat", "lon"))
            except SampleError as exn:
                account.skip(exn.reason, key)
                self.stats.record_bad(exn.reason, f"{url}:{key}", str(exn))
                continue
            if key in seen:
                account.skip("duplicate_key", key)
                continue
            seen.add(key)
            self.stats.record_ok()
            data = next(record[e] for e in IMAGE_EXTENSIONS if e in record)
            yield DistillSample(sample.key, sample.image, sample.lat, sample.lon, sample.country, sample.city,
                                sample.localizable, "", sample.entities, sample.extra, image_bytes=data, source="shards")

    def __iter__(self) -> Iterator[ChunkBatch]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        mine = set(self.chunks[worker::num_workers])
        if not self.chunks:
            if worker == 0:
                yield ChunkBatch()  # nothing left on this rank: one empty batch, so its predict hooks run
            return
        chunks = self._csv_chunks(mine) if self.csv_path is not None else self._shard_chunks(mine)
        for chunk, samples, account in chunks:
            batch: list[DistillSample] = []
            for sample in samples:
                if len(batch) == self.batch_size:  # a full batch goes once the next sample shows it is not the last
                    yield ChunkBatch(batch, chunk)
                    batch = []
                batch.append(sample)
            # the chunk's rows are all read: its last batch (empty only when nothing was usable) carries
            # the counts; so a chunk of n usable samples is ceil(n / batch_size) batches (1 when n = 0)
            yield ChunkBatch(batch, chunk, True, account.rows, dict(account.skipped), account.examples)
        self.stats.check(final=True)


class RawImages(LightningDataModule):
    """Images to distil, in chunks (see the module docstring); ``predict`` only.

    Args:
        csv_path: MP-16-style CSV (id, LAT, LON, optional country / city / entities).
        images: folder of the images named by the CSV's ids.
        shards: MP16-Reason-schema shard spec instead of csv_path + images (reasoning ignored).
        chunk_size: CSV rows per chunk (the unit of resume and of output shards).
        batch_size: images per teacher batch.
        num_workers: DataLoader worker processes per rank.
        max_bad_fraction: largest tolerated fraction of undecodable images.
        min_samples_before_check: images seen before ``max_bad_fraction`` is enforced.
    """

    def __init__(
        self,
        csv_path: str | None = None,
        images: str | None = None,
        shards: str | list[str] | None = None,
        chunk_size: int = 1000,
        batch_size: int = 8,
        num_workers: int = 0,
        max_bad_fraction: float = 0.5,
        min_samples_before_check: int = 100,
    ) -> None:
        super().__init__()
        if (shards is None) == (csv_path is None):
            raise ValueError("RawImages needs csv_path and images, or shards (not both)")
        if csv_path is not None and images is None:
            raise ValueError("RawImages: csv_path needs images (the image folder)")
        if chunk_size < 1 or batch_size < 1:
            raise ValueError(f"chunk_size and batch_size must be >= 1, got {chunk_size} and {batch_size}")
        self.csv_path, self.images, self.shards = csv_path, images, shards
        self.chunk_size, self.batch_size, self.num_workers = chunk_size, batch_size, num_workers
        self.stats = DataStats("predict", max_bad_fraction, min_samples_before_check)
        self.done: set[int] = set()
        self._rows_per_chunk: list[int | None] | None = None
        self._repeats: set[int] = set()
        self._columns: dict = {}
        self._urls: list[str] = []

    def setup(self, stage: str | None = None) -> None:
        if self._rows_per_chunk is not None:
            return
        if self.csv_path is not None:
            rows, self._repeats, self._columns = index_csv(self.csv_path, self.chunk_size)
            self._rows_per_chunk = list(rows)
            if self._repeats:
                log.warning("RawImages: %d rows of %s repeat an earlier key and will be skipped (duplicate_key)",
                            len(self._repeats), self.csv_path)
        else:
            self._urls = expand_shards(self.shards)  # type: ignore[arg-type]
            self._rows_per_chunk = [count_shard_samples(url) for url in self._urls]

    @property
    def num_chunks(self) -> int:
        self.setup()
        return len(self._rows_per_chunk or [])

    def chunking(self) -> dict:
        """What defines the chunks (a resumed run must see the same)."""
        self.setup()
        if self.csv_path is not None:
            return {"source": "csv", "csv": str(Path(self.csv_path).resolve()), "images": str(Path(self.images).resolve()),
                    "chunk_size": self.chunk_size, "chunks": self.num_chunks, "rows": sum(self._rows_per_chunk or [])}
        return {"source": "shards", "shards": [str(Path(u).resolve()) if Path(u).exists() else u for u in self._urls],
                "chunks": self.num_chunks}

    def skip_chunks(self, done: set[int]) -> None:
        """Chunks finished by an earlier run (the writer's done-markers): not read again."""
        self.done = set(done)

    def remaining_chunks(self) -> list[int]:
        return [c for c in range(self.num_chunks) if c not in self.done]

    def predict_dataloader(self) -> DataLoader:
        self.setup()
        rank, world_size = rank_and_world_size(self.trainer)
        mine = self.remaining_chunks()[rank::world_size]
        rows = self._rows_per_chunk or []
        batches = None if any(r is None for r in rows) else [max(1, math.ceil(r / self.batch_size)) for r in rows]
        stream = RawImageStream(mine, self.batch_size, self.stats, batches, csv_path=self.csv_path, images=self.images,
                                chunk_size=self.chunk_size, repeats=self._repeats, columns=self._columns,
                                shards=self._urls, num_workers=self.num_workers)
        return make_loader(stream, self.num_workers)

