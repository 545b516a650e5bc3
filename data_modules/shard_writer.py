"""Convert published data into the project's WebDataset shards.

    python -m data_modules.shard_writer csv --csv X.csv --images DIR --out OUTDIR [--shard-size N] [--prefix train]
    python -m data_modules.shard_writer parquet --parquet F1.parquet F2.parquet --out OUTDIR [--geocode]

Every image is decoded once (a corrupt image is skipped here, not discovered mid-training);
JPEGs are stored as they are, other formats are re-encoded as JPEG (quality 95). Keys are
sanitised image names (``row_sources.sanitize_key``); a repeated key is skipped. Shards are
``OUTDIR/{prefix}-%06d.tar`` with ``--shard-size`` samples each, written atomically
(``shard_sink.AtomicShardSink``: temporary name, then ``os.replace``), so a crash never
leaves a partial tar under a final name. The summary (written, shards, skipped per reason
with example keys, ``complete``) is printed as JSON and returned; it is also saved
atomically as ``OUTDIR/{prefix}-summary.json``.

Bad input is counted, never fatal: a row whose id leaves the image folder (``unsafe_id``),
a row the CSV parser rejects (``bad_row``), a bad value, a missing or corrupt image are
skipped with their reason. What is checked before the long work starts: the output folder
is writable (``OutputDirError``), the CSV is UTF-8 and has its id/LAT/LON columns
(``CsvEncodingError`` names the byte offset and line). If the run still stops (an error of
the source itself, Ctrl-C), the finished shards stay, the shard being written is deleted, and
the summary is saved with ``"complete": false`` and the error before it is re-raised.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from .csv_text import CsvEncodingError
from .decode import SampleError, decode_image, parse_metadata
from .row_sources import Skipped, SourceRecord, csv_records, parquet_records
from .shard_sink import AtomicShardSink, OutputDirError, check_output_dir, write_text_atomic

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
    out = check_output_dir(out)
    skipped: Counter[str] = Counter()
    examples: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()

    def skip(key: str, reason: str) -> None:
        skipped[reason] += 1
        if len(examples[reason]) < 10:
            examples[reason].append(key)

    def summary(sink: AtomicShardSink, error: BaseException | None = None) -> dict:
        shards = sink.names
        result = {
            "out": str(out),
            "written": sink.published,  # samples in complete shards
            "shards": shards,
            "shard_pattern": f"{out}/{prefix}-{{000000..{max(len(shards) - 1, 0):06d}}}.tar",
            "skipped": dict(sorted(skipped.items())),
            "skipped_examples": {k: v for k, v in sorted(examples.items())},
            "complete": error is None,
        }
        if error is not None:
            result["error"] = f"{type(error).__name__}: {error}"
        write_text_atomic(out / f"{prefix}-summary.json", json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        return result

    sink = AtomicShardSink(out, prefix, shard_size)
    try:
        with sink:
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
                    meta = json.dumps(record.meta, ensure_ascii=False, sort_keys=True).encode("utf-8")
                except SampleError as exn:
                    skip(record.key, exn.reason)
                    continue
                except (TypeError, ValueError, OverflowError, RecursionError):  # meta that JSON cannot hold
                    skip(record.key, "bad_value")
                    continue
                seen.add(record.key)
                sink.write({"__key__": record.key, "jpg": jpg, "json": meta})
    except BaseException as exn:
        with contextlib.suppress(Exception):  # the summary is best effort here; the error is what matters
            summary(sink, exn)
        raise
    return summary(sink)


def _count_lines(path: str) -> int:
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


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
    check_output_dir(a.out)  # cheap checks first: a bad --out must not wait for a long CSV scan
    if a.source == "csv":
        records, total = csv_records(a.csv, a.images), max(_count_lines(a.csv) - 1, 0)
    else:
        import pyarrow.parquet as pq

        total = sum(pq.ParquetFile(f).metadata.num_rows for f in a.parquet)
        records = parquet_records(a.parquet, geocode=_gazetteer_geocoder() if a.geocode else None)
    summary = write_shards(records, a.out, a.prefix, a.shard_size, total, progress=not a.no_progress)
    print(json.dumps({k: v for k, v in summary.items() if k != "shards"} | {"num_shards": len(summary["shards"])},
                     indent=2, ensure_ascii=False))
    return summary


if __name__ == "__main__":
    try:
        main()
    except (OutputDirError, CsvEncodingError, FileNotFoundError) as exn:  # bad arguments: the message, no traceback
        raise SystemExit(f"shard_writer: {exn}") from None
