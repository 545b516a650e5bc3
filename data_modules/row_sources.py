"""Rows of the two published source formats, as records ready for the shard writer.

Each source yields :class:`SourceRecord` (key, image bytes, JSON metadata of the project's
schema) or :class:`Skipped` (key, reason, detail); the writer validates images and counts.

CSV + image folder (MP-16 / MP16-Pro ``IMG_ID,LAT,LON,...,city,...,country,...`` or
IM2GPS3K ``IMG_ID,AUTHOR,LAT,LON,S3_Label,...``). Column names are matched
case-insensitively: id ``IMG_ID|img_id|id|image|filename``; latitude
``LAT|latitude``; longitude ``LON|lng|long|longitude``; optional ``country``, ``city``,
``localizable``, ``reasoning``, ``entities`` (JSON list or ``;``-separated). The image is
``images/IMG_ID`` (``.jpg`` appended when IMG_ID has no extension; sub-folders allowed). Every
other column is kept as provenance in the JSON. An IMG_ID that would leave the image folder
(``..``, absolute, NUL, backslash, a link leading out; ``image_paths.image_path``) is
skipped as ``unsafe_id``; a row the csv module rejects (e.g. a field over its 131,072
character limit) as ``bad_row`` with its line number. The file must be UTF-8
(``csv_text.open_csv_text``): ``csv_records`` checks the encoding and the header when it is
called, before the first record, and raises ``CsvEncodingError`` / ``ValueError``.

Parquet with embedded images (MP16-Reason as published): image from ``images`` (list of
``{"bytes": ...}``, the first is used) or ``image`` (``{"bytes": ...}`` or raw bytes);
reasoning from ``response`` (wrapped into the answer format unless it already has
``<think>``) or ``reasoning``; country/city from ``solution`` (or ``__#solution``) written as
``<country>X</country><city>Y</city>``, else from ``country``/``city`` columns; entities from
``entities`` (list of ``{"text": ...}`` or strings); coordinates from the first of
``lat|LAT|latitude`` and ``lon|LON|lng|longitude`` (or a ``gps``/``coordinates`` pair); the
published train parquet has no coordinates, so pass a ``geocode`` function (the CLI's
``--geocode`` uses ``globe.geo.gazetteer``) or such rows are skipped as
``missing_coordinates``; ``localizable`` if present, else true. Scalar columns are kept as
provenance.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from globe.answer import format_answer

from .csv_text import check_utf8, open_csv_text, rows_or_errors
from .image_paths import UnsafeIdError, image_path

__all__ = ["Skipped", "SourceRecord", "csv_records", "parquet_records", "sanitize_key"]

Geocoder = Callable[[str, str], "tuple[float, float] | None"]


@dataclass
class SourceRecord:
    key: str
    image: bytes
    meta: dict


@dataclass
class Skipped:
    key: str
    reason: str  # missing_image | missing_field | bad_value | missing_coordinates | unsafe_id | bad_row
    detail: str = ""


_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def sanitize_key(name: str) -> str:
    """A WebDataset key for an image name: extension dropped, anything but ``[A-Za-z0-9_-]`` -> ``_``.

    (WebDataset splits a member name at its first dot, so keys must not contain dots.)

    >>> sanitize_key("1000269685_e60e9cdfb4_1125_78841376@N00.jpg")
    '1000269685_e60e9cdfb4_1125_78841376_N00'
    """
    path = Path(name)
    stem = str(path.with_suffix("")) if path.suffix.lower() in _IMAGE_SUFFIXES else name
    return re.sub(r"[^A-Za-z0-9_-]", "_", stem) or "_"


def _column(fieldnames: Sequence[str], *names: str) -> str | None:
    lower = {f.lower(): f for f in fieldnames}
    return next((lower[n.lower()] for n in names if n.lower() in lower), None)


def _parse_entities(value: object) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            value = json.loads(text)
        else:
            return [t.strip() for t in text.split(";") if t.strip()]
    return [str(v["text"] if isinstance(v, dict) else v) for v in value]  # type: ignore[union-attr]


def _parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "1.0"):
        return True
    if text in ("0", "false", "no", "0.0"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _coords(lat: object, lon: object) -> tuple[float, float]:
    if isinstance(lat, bool) or isinstance(lon, bool):
        raise ValueError(f"coordinates are booleans: {lat}, {lon}")
    lat_f, lon_f = float(lat), float(lon)  # type: ignore[arg-type]
    if not (abs(lat_f) <= 90 and abs(lon_f) <= 180):  # also False for NaN
        raise ValueError(f"coordinates out of range: {lat_f}, {lon_f}")
    return lat_f, lon_f


def csv_records(csv_path: str | Path, images: str | Path) -> Iterator[SourceRecord | Skipped]:
    """Records of a CSV + image folder (see module docstring for the accepted columns).

    The encoding and the header are checked now (raising before any record is produced); the
    rows are read lazily by the returned iterator.
    """
    check_utf8(csv_path)  # one pass over the file now, instead of a UnicodeDecodeError mid-run
    with open_csv_text(csv_path, check=False) as f:
        names = csv.DictReader(f).fieldnames or []
    columns = {
        "id": _column(names, "IMG_ID", "img_id", "id", "image", "filename"),
        "lat": _column(names, "LAT", "latitude"),
        "lon": _column(names, "LON", "lng", "long", "longitude"),
    }
    if None in columns.values():
        raise ValueError(f"{csv_path}: needs an id column (IMG_ID) and LAT/LON columns, has {names}")
    for name in ("country", "city", "localizable", "reasoning", "entities"):
        columns[name] = _column(names, name)
    return _csv_rows(csv_path, Path(images), columns)


def _csv_rows(csv_path: str | Path, images: Path, c: dict[str, str | None]) -> Iterator[SourceRecord | Skipped]:
    used = {v for v in c.values() if v}
    with open_csv_text(csv_path, check=False) as f:  # checked by csv_records
        reader = csv.DictReader(f)
        for row in rows_or_errors(reader):
            if isinstance(row, csv.Error):
                line = reader.reader.line_num  # DictReader's own line_num is not updated on an error
                yield Skipped(f"line {line}", "bad_row", f"{csv_path}:{line}: {row}")
                continue
            img_id = (row.get(c["id"]) or "").strip()  # type: ignore[arg-type]
            key = sanitize_key(img_id)
            if not img_id:
                yield Skipped(f"line {reader.line_num}", "missing_field", "empty id")
                continue
            try:
                path = image_path(images, img_id, subfolders=True)
            except UnsafeIdError as exn:
                yield Skipped(key, "unsafe_id", str(exn))
                continue
            try:
                meta = _csv_meta(row, c, used)
            except (TypeError, ValueError, OverflowError, RecursionError) as exn:  # RecursionError: nested entities
                yield Skipped(key, "bad_value", str(exn)[:200])
                continue
            meta["img_id"] = img_id
            if not path.is_file():  # also refuses a folder, a FIFO or a device that happens to be named so
                yield Skipped(key, "missing_image", f"{path}: no such file")
                continue
            try:
                data = path.read_bytes()
            except OSError as exn:
                yield Skipped(key, "missing_image", f"{path}: {exn.strerror}")
                continue
            yield SourceRecord(key, data, meta)


def _csv_meta(row: dict, c: dict[str, str | None], used: Iterable[str]) -> dict:
    """The JSON metadata of one CSV row (``c`` maps field -> column name or None)."""
    def cell(name: str) -> str:
        return (row.get(c[name]) or "") if c[name] else ""  # type: ignore[arg-type]

    lat, lon = _coords(cell("lat"), cell("lon"))
    return {
        "lat": lat, "lon": lon, "country": cell("country"), "city": cell("city"),
        "localizable": _parse_bool(cell("localizable")) if cell("localizable") else True,
        "reasoning": cell("reasoning"),
        "entities": _parse_entities(cell("entities")),
        **{k: v for k, v in row.items() if k not in used and k is not None},
    }


_COUNTRY_RE = re.compile(r"<country>(.*?)</country>", re.S)
_CITY_RE = re.compile(r"<city>(.*?)</city>", re.S)


def _image_bytes(row: dict) -> bytes | None:
    value = row.get("images")
    if isinstance(value, list) and value:
        value = value[0]
    elif value is None or (isinstance(value, list) and not value):
        value = row.get("image")
    if isinstance(value, dict):
        value = value.get("bytes")
    return bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else None


def _first_present(row: dict, *names: str) -> object:
    return next((row[n] for n in names if row.get(n) not in (None, "")), None)


def parquet_records(
    files: Sequence[str | Path],
    geocode: Geocoder | None = None,
    key_prefix: str = "mp16r",
) -> Iterator[SourceRecord | Skipped]:
    """Records of MP16-Reason-style parquet files (see module docstring for the columns)."""
    import pyarrow.parquet as pq

    for file_index, path in enumerate(files):
        pf = pq.ParquetFile(path)
        row_index = 0
        for batch in pf.iter_batches(batch_size=256):
            for row in batch.to_pylist():
                row_index += 1
                raw_id = _first_present(row, "key", "id", "IMG_ID", "img_id")
                if raw_id is None and isinstance(row.get("images"), list) and row["images"] and isinstance(row["images"][0], dict):
                    raw_id = row["images"][0].get("path")
                key = sanitize_key(str(raw_id)) if raw_id is not None else f"{key_prefix}-{file_index:03d}-{row_index:08d}"
                yield _parquet_record(row, key, geocode)


def _parquet_record(row: dict, key: str, geocode: Geocoder | None) -> SourceRecord | Skipped:
    image = _image_bytes(row)
    if image is None:
        return Skipped(key, "missing_image", "no images[0].bytes / image.bytes")
    solution = str(_first_present(row, "solution", "__#solution") or "")
    m_country, m_city = _COUNTRY_RE.search(solution), _CITY_RE.search(solution)
    country = (m_country.group(1) if m_country else str(row.get("country") or "")).strip()
    city = (m_city.group(1) if m_city else str(row.get("city") or "")).strip()
    if not country:
        return Skipped(key, "missing_field", "no country in solution/country")
    try:
        lat_v = _first_present(row, "lat", "LAT", "latitude", "Latitude")
        lon_v = _first_present(row, "lon", "LON", "lng", "longitude", "Longitude")
        pair = _first_present(row, "gps", "coordinates")
        if (lat_v is None or lon_v is None) and isinstance(pair, (list, tuple)) and len(pair) == 2:
            lat_v, lon_v = pair
        if lat_v is None or lon_v is None:
            found = geocode(city, country) if geocode is not None else None
            if found is None:
                return Skipped(key, "missing_coordinates",
                               f"no lat/lon columns{' and geocoding failed' if geocode else ' (use --geocode)'}: {city}, {country}")
            lat_v, lon_v = found
        lat, lon = _coords(lat_v, lon_v)
        localizable = _parse_bool(row["localizable"]) if row.get("localizable") is not None else True
        entities = _parse_entities(row.get("entities"))
    except (TypeError, ValueError, KeyError, OverflowError, RecursionError) as exn:
        return Skipped(key, "bad_value", str(exn)[:200])
    response = str(_first_present(row, "response", "reasoning") or "")
    reasoning = response if "<think>" in response or not response else format_answer(response.strip(), country, city)
    skip = {"images", "image", "response", "reasoning", "solution", "__#solution", "entities", "localizable",
            "lat", "LAT", "latitude", "Latitude", "lon", "LON", "lng", "longitude", "Longitude", "country", "city"}
    provenance = {k: v for k, v in row.items() if k not in skip and _jsonable(v)}
    meta = {"lat": lat, "lon": lon, "country": country, "city": city, "localizable": localizable,
            "reasoning": reasoning, "entities": entities, **provenance}
    return SourceRecord(key, image, meta)


def _jsonable(value: object) -> bool:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return False
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False
