"""Rows of the two published source formats, as records ready for the shard writer.

Each source yields :class:`SourceRecord` (key, image bytes, JSON metadata of the project's
schema) or :class:`Skipped` (key, reason, detail); the writer validates images and counts.

CSV + image folder (MP-16 / MP16-Pro ``IMG_ID,LAT,LON,...,city,...,country,...`` or
IM2GPS3K ``IMG_ID,AUTHOR,LAT,LON,S3_Label,...``). Column names are matched
case-insensitively: id ``IMG_ID|img_id|id|image|filename``; latitude
``LAT|latitude``; longitude ``LON|lng|long|longitude``; optional ``country``, ``city``,
``localizable``, ``reasoning``, ``entities`` (JSON list or ``;``-separated). The image is
``images/IMG_ID`` (``.jpg`` appended when IMG_ID has no extension). Every other column is
kept as provenance in the JSON.

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from globe.answer import format_answer

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
    reason: str  # missing_image | missing_field | bad_value | missing_coordinates
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
    lat_f, lon_f = float(lat), float(lon)  # type: ignore[arg-type]
    if not (abs(lat_f) <= 90 and abs(lon_f) <= 180):
        raise ValueError(f"coordinates out of range: {lat_f}, {lon_f}")
    return lat_f, lon_f


def csv_records(csv_path: str | Path, images: str | Path) -> Iterator[SourceRecord | Skipped]:
    """Records of a CSV + image folder (see module docstring for the accepted columns)."""
    images = Path(images)
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        names = reader.fieldnames or []
        c_id = _column(names, "IMG_ID", "img_id", "id", "image", "filename")
        c_lat = _column(names, "LAT", "latitude")
        c_lon = _column(names, "LON", "lng", "long", "longitude")
        if c_id is None or c_lat is None or c_lon is None:
            raise ValueError(f"{csv_path}: needs an id column (IMG_ID) and LAT/LON columns, has {names}")
        c_country, c_city = _column(names, "country"), _column(names, "city")
        c_loc, c_reason, c_ent = _column(names, "localizable"), _column(names, "reasoning"), _column(names, "entities")
        used = {c for c in (c_id, c_lat, c_lon, c_country, c_city, c_loc, c_reason, c_ent) if c}
        for row in reader:
            img_id = (row.get(c_id) or "").strip()
            key = sanitize_key(img_id)
            try:
                lat, lon = _coords(row.get(c_lat), row.get(c_lon))
                meta = {
                    "lat": lat, "lon": lon,
                    "country": (row.get(c_country) or "") if c_country else "",
                    "city": (row.get(c_city) or "") if c_city else "",
                    "localizable": _parse_bool(row[c_loc]) if c_loc and row.get(c_loc) not in (None, "") else True,
                    "reasoning": (row.get(c_reason) or "") if c_reason else "",
                    "entities": _parse_entities(row.get(c_ent)) if c_ent else [],
                    "img_id": img_id,
                    **{k: v for k, v in row.items() if k not in used and k is not None},
                }
            except (TypeError, ValueError) as exn:
                yield Skipped(key or "?", "bad_value", str(exn))
                continue
            path = images / img_id
            if not Path(img_id).suffix:
                path = path.with_name(img_id + ".jpg")
            try:
                data = path.read_bytes()
            except OSError as exn:
                yield Skipped(key, "missing_image", f"{path}: {exn.strerror}")
                continue
            yield SourceRecord(key, data, meta)


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
    except (TypeError, ValueError, KeyError, json.JSONDecodeError) as exn:
        return Skipped(key, "bad_value", str(exn))
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
