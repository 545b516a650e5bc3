"""IM2GPS3K (Hays & Efros 2008; the 2,997-image test set) as a LightningDataModule.

Two sources:

* ``csv_path`` + ``images``: the published ground truth CSV
  (``IMG_ID,AUTHOR,LAT,LON,S3_Label,S16_Label,S365_Label,Prob_indoor,Prob_natural,Prob_urban``)
  and a folder of images named by ``IMG_ID``. ``setup()`` checks every file up front and
  reports missing ones (and, with ``verify_images``, undecodable ones) in ``self.summary``
  and the log: they are counted, not silently dropped. The remaining rows are streamed.
  IMG_IDs are plain file names: one with a path separator, ``..``, NUL or an absolute path,
  or a link leading out of the folder, is never opened (``image_paths.image_path``) and is
  reported as ``unsafe_ids``. The CSV must be UTF-8: otherwise ``setup()`` raises
  ``CsvEncodingError`` naming the byte offset and line (``csv_text``).
* ``shards``: the same data converted with ``python -m data_modules.shard_writer csv``,
  read through :class:`MP16Reason`'s test pipeline.

IM2GPS3K has no country/city labels: those fields are "" (metrics use coordinates). Extra
CSV columns (AUTHOR, S3_Label, ...) land in ``GeoSample.extra``. Used for ``test`` and
``predict``; the key of a sample is ``row_sources.sanitize_key(IMG_ID)`` (extension dropped,
``@``/``/``/``.`` -> ``_``), the same key the shard writer gives it.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from lightning.pytorch import LightningDataModule
from PIL import Image
from torch.utils.data import DataLoader

from .csv_text import open_csv_text, rows_or_errors
from .data_stats import DataStats
from .distributed import rank_and_world_size
from .image_folder import FolderRow, ImageFolderStream
from .image_paths import UnsafeIdError, image_path
from .mp16_reason import MP16Reason
from .row_sources import sanitize_key
from .shard_stream import make_loader

__all__ = ["IM2GPS3K", "read_im2gps3k_csv"]

log = logging.getLogger("data_modules")

_LAT_NAMES = ("LAT", "lat", "latitude", "Latitude")
_LON_NAMES = ("LON", "lon", "longitude", "Longitude", "LNG", "lng")


def _first(row: dict, names: tuple[str, ...]) -> str | None:
    return next((row[n] for n in names if row.get(n) not in (None, "")), None)


def read_im2gps3k_csv(csv_path: str | Path, images: str | Path) -> tuple[list[FolderRow], list[tuple[str, str, str]]]:
    """Rows of an IM2GPS3K-style CSV, and ``(IMG_ID, reason, detail)`` of each unusable row.

    Reasons: ``bad_coordinates`` (missing, not finite or out of range), ``unsafe_id`` (an id
    that would leave the image folder), ``bad_row`` (a line the csv module rejects).
    """
    rows: list[FolderRow] = []
    bad: list[tuple[str, str, str]] = []
    used = {"IMG_ID", *_LAT_NAMES, *_LON_NAMES, "country", "city"}
    with open_csv_text(csv_path) as f:
        reader = csv.DictReader(f)
        for row in rows_or_errors(reader):
            if isinstance(row, csv.Error):
                line = reader.reader.line_num
                bad.append((f"line {line}", "bad_row", f"{csv_path}:{line}: {row}"))
                continue
            img_id = (row.get("IMG_ID") or "").strip()
            try:
                lat, lon = float(_first(row, _LAT_NAMES)), float(_first(row, _LON_NAMES))  # type: ignore[arg-type]
                if not (abs(lat) <= 90 and abs(lon) <= 180):  # also False for NaN
                    raise ValueError(f"out of range {lat}, {lon}")
            except (TypeError, ValueError) as exn:
                bad.append((img_id, "bad_coordinates", f"bad coordinates: {exn}"))
                continue
            try:
                path = image_path(images, img_id)
            except UnsafeIdError as exn:
                bad.append((img_id, "unsafe_id", str(exn)))
                continue
            extra = {k: v for k, v in row.items() if k not in used and k is not None}
            extra["img_id"] = img_id
            rows.append(FolderRow(sanitize_key(img_id), path, lat, lon, row.get("country") or "", row.get("city") or "",
                                  extra=extra))
    return rows, bad


class IM2GPS3K(LightningDataModule):
    """IM2GPS3K test data as batches of ``GeoSample`` (``list[GeoSample]``).

    Args:
        csv_path: ground-truth CSV (e.g. ``im2gps3k_places365.csv``).
        images: folder holding the images named by ``IMG_ID``.
        shards: WebDataset shard spec instead of csv_path + images.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        verify_images: decode every image in ``setup()`` to count unreadable files up front
            (otherwise they are counted when streamed, in ``self.stats``).
        max_bad_fraction: largest tolerated fraction of unusable samples.
        min_samples_before_check: samples seen before ``max_bad_fraction`` is enforced.
    """

    def __init__(
        self,
        csv_path: str | None = None,
        images: str | None = None,
        shards: str | list[str] | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        verify_images: bool = False,
        max_bad_fraction: float = 0.1,
        min_samples_before_check: int = 100,
    ) -> None:
        super().__init__()
        if shards is None and (csv_path is None or images is None):
            raise ValueError("IM2GPS3K needs csv_path and images, or shards")
        self.csv_path, self.images, self.shards = csv_path, images, shards
        self.batch_size, self.num_workers = batch_size, num_workers
        self.verify_images = verify_images
        self.max_bad_fraction, self.min_samples_before_check = max_bad_fraction, min_samples_before_check
        self.stats = DataStats("test", max_bad_fraction, min_samples_before_check)
        self.summary: dict = {}
        self._rows: list[FolderRow] | None = None
        self._shards_dm: MP16Reason | None = None
        if shards is not None:
            self._shards_dm = MP16Reason(test_shards=shards, batch_size=batch_size, num_workers=num_workers,
                                         max_bad_fraction=max_bad_fraction,
                                         min_samples_before_check=min_samples_before_check,
                                         required_fields=("lat", "lon"))
            self.stats = self._shards_dm.stats["test"]

    def setup(self, stage: str | None = None) -> None:
        if self._shards_dm is not None or self._rows is not None:
            return
        rows, bad_rows = read_im2gps3k_csv(self.csv_path, self.images)  # type: ignore[arg-type]
        missing = [r.key for r in rows if not r.path.is_file()]
        missing_set = set(missing)
        present = [r for r in rows if r.key not in missing_set]
        unreadable: list[str] = []
        if self.verify_images:
            for r in present:
                try:
                    with Image.open(r.path) as im:
                        im.load()
                except Exception:  # any decoder failure: count it
                    unreadable.append(r.key)
        bad = set(unreadable)
        self._rows = [r for r in present if r.key not in bad]
        by_reason = {reason: [k for k, r, _ in bad_rows if r == reason]
                     for reason in ("bad_coordinates", "unsafe_id", "bad_row")}
        self.summary = {
            "rows": len(rows) + len(bad_rows),
            "usable": len(self._rows),
            "missing": len(missing),
            "unreadable": len(unreadable),
            "bad_coordinates": len(by_reason["bad_coordinates"]),
            "unsafe_ids": len(by_reason["unsafe_id"]),
            "bad_rows": len(by_reason["bad_row"]),
            "missing_examples": missing[:10],
            "unreadable_examples": unreadable[:10],
            "bad_coordinate_examples": by_reason["bad_coordinates"][:10],
            "unsafe_id_examples": by_reason["unsafe_id"][:10],
            "bad_row_examples": by_reason["bad_row"][:10],
        }
        for _, reason, detail in bad_rows[:5]:
            log.warning("IM2GPS3K: skipped a row (%s): %s", reason, detail)
        if missing or unreadable or bad_rows:
            log.warning(
                "IM2GPS3K: %d of %d images usable; %d missing (e.g. %s), %d unreadable, %d rows with bad coordinates, "
                "%d with unsafe ids, %d unparsable (folder %s)", len(self._rows), self.summary["rows"], len(missing),
                ", ".join(missing[:3]), len(unreadable), self.summary["bad_coordinates"], self.summary["unsafe_ids"],
                self.summary["bad_rows"], self.images)
        if not self._rows:
            raise FileNotFoundError(f"IM2GPS3K: none of the {self.summary['rows']} images listed in {self.csv_path} "
                                    f"is usable in {self.images} (summary: {self.summary})")

    def test_dataloader(self) -> DataLoader:
        if self._shards_dm is not None:
            self._shards_dm.trainer = self.trainer
            return self._shards_dm.test_dataloader()
        self.setup("test")
        rank, world_size = rank_and_world_size(self.trainer)
        stream = ImageFolderStream(self._rows or [], self.batch_size, self.stats, rank, world_size, self.num_workers)
        return make_loader(stream, self.num_workers)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
