"""Convert published data into the project's WebDataset shards.

    python -m data_modules.shard_writer csv --csv X.csv --images DIR --out OUTDIR [--shard-size N] [--prefix train]
    python -m data_modules.shard_writer parquet --parquet F1.parquet F2.parquet --out OUTDIR [--geocode]

Every image is decoded once (a corrupt image is skipped here, not discovered mid-training);
JPEGs are stored as they are, other formats are re-encoded as JPEG (quality 95). Keys are
sanitised image names (``row_sources.sanitize_key``); a repeated key is skipped. Shards are
``OUTDIR/{prefix}-%06d.tar`` with ``--shard-size`` samples each (``wds.ShardWriter``
``maxcount``). The summary (written, shards, skipped per reason with example keys) is printed
as JSON and returned; it is also saved as ``OUTDIR/{prefix}-summary.json``.
"""

from __future__ import annotations

import argparse
import io
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import webdataset as wds
from PIL import Image
from tqdm import tqdm

from .decode import SampleError, decode_image, parse_metadata
from .row_sources import Skipped, SourceRecord, csv_records, parquet_records

__all__ = ["main", "write_shards"]


def _jpeg_bytes(data: bytes) -> bytes:
    """The bytes to store: the original JPEG, or a JPEG re-encoding of any other format."""
    image = decode_image(data)  # SampleError("corrupt_image") when undecodable
    with Image.open(io.BytesIO(data)) as probe:
        if probe.format == "JPEG":
            return data
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def write_shards(
    records: Iterable[SourceRecord | Skipped],
    out: str | Path,
    prefix: str = "train",
    shard_size: int = 1000,
    total: int | None = None,
    required_fields: Sequence[str] = ("lat", "lon"),
    progress: bool = True,
) -> dict:
    """Write records to ``out/{prefix}-%06d.tar``; returns the summary dict."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    skipped: Counter[str] = Counter()
    examples: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    shards: list[str] = []
    written = 0

    def skip(key: str, reason: str) -> None:
        skipped[reason] += 1
        if len(examples[reason]) < 10:
            examples[reason].append(key)

    pattern = str(out / f"{prefix}-%06d.tar")
    with wds.ShardWriter(pattern, maxcount=shard_size, verbose=0, post=lambda f: shards.append(Path(f).name)) as sink:
        for record in tqdm(records, total=total, desc=f"{prefix} shards", unit="img", disable=not progress):
            if isinstance(record, Skipped):
                skip(record.key, record.reason)
                continue
            if record.key in seen:
                skip(record.key, "duplicate_key")
                continue
            try:
                parse_metadata(record.meta, required_fields)  # same validation as the reader
                jpg = _jpeg_bytes(record.image)
            except SampleError as exn:
                skip(record.key, exn.reason)
                continue
            seen.add(record.key)
            meta = json.dumps(record.meta, ensure_ascii=False, sort_keys=True).encode("utf-8")
            sink.write({"__key__": record.key, "jpg": jpg, "json": meta})
            written += 1
    if written == 0:  # ShardWriter opened an empty first shard
        for name in shards:
            (out / name).unlink(missing_ok=True)
        shards = []
    summary = {
        "out": str(out),
        "written": written,
        "shards": shards,
        "shard_pattern": f"{out}/{prefix}-{{000000..{max(len(shards) - 1, 0):06d}}}.tar",
        "skipped": dict(sorted(skipped.items())),
        "skipped_examples": {k: v for k, v in sorted(examples.items())},
    }
    (out / f"{prefix}-summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary


def _count_csv_rows(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        return max(sum(1 for _ in f) - 1, 0)


def _gazetteer_geocoder():
    from globe.geo.gazetteer import Gazetteer  # optional: only for parquet without coordinates

    gazetteer = Gazetteer.load()

    def geocode(city: str, country: str) -> tuple[float, float] | None:
        place = gazetteer.geocode(city or None, country or None)
        return (place.lat, place.lon) if place is not None and place.level == "city" else None

    return geocode


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m data_modules.shard_writer",
                                     description="Write WebDataset shards in the MP16-Reason schema.")
    sub = parser.add_subparsers(dest="source", required=True)
    p_csv = sub.add_parser("csv", help="CSV (MP-16 / IM2GPS3K style) + image folder")
    p_csv.add_argument("--csv", required=True)
    p_csv.add_argument("--images", required=True, help="folder of images named by IMG_ID")
    p_pq = sub.add_parser("parquet", help="parquet files with embedded image bytes (MP16-Reason)")
    p_pq.add_argument("--parquet", required=True, nargs="+")
    p_pq.add_argument("--geocode", action="store_true",
                      help="fill missing lat/lon by geocoding city, country with globe.geo.gazetteer")
    for p in (p_csv, p_pq):
        p.add_argument("--out", required=True)
        p.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
        p.add_argument("--prefix", default="train", help="shard name prefix (default train)")
        p.add_argument("--no-progress", action="store_true")
    a = parser.parse_args(argv)
    if a.source == "csv":
        records, total = csv_records(a.csv, a.images), _count_csv_rows(a.csv)
    else:
        import pyarrow.parquet as pq

        total = sum(pq.ParquetFile(f).metadata.num_rows for f in a.parquet)
        records = parquet_records(a.parquet, geocode=_gazetteer_geocoder() if a.geocode else None)
    summary = write_shards(records, a.out, a.prefix, a.shard_size, total, progress=not a.no_progress)
    print(json.dumps({k: v for k, v in summary.items() if k != "shards"} | {"num_shards": len(summary["shards"])},
                     indent=2, ensure_ascii=False))
    return summary


if __name__ == "__main__":
    main()
