"""Turn one raw WebDataset record (``{key}.jpg`` + ``{key}.json`` bytes) into a GeoSample.

Failures raise :class:`SampleError` carrying one of the reasons of ``data_stats.REASONS``;
the stream counts and skips them. JSON is checked before the image is decoded (cheaper).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence

from PIL import Image

from .sample import GeoSample

__all__ = ["IMAGE_EXTENSIONS", "REQUIRED_FIELDS", "SampleError", "decode_image", "parse_metadata", "sample_from_record"]

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
REQUIRED_FIELDS: tuple[str, ...] = ("lat", "lon", "country", "city")
_KNOWN = ("lat", "lon", "country", "city", "localizable", "reasoning", "entities")


class SampleError(ValueError):
    """A sample that cannot be used; ``reason`` is one of ``data_stats.REASONS``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def decode_image(data: bytes) -> Image.Image:
    """Fully decode image bytes to RGB (``load()`` so truncated files fail here, not later)."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        return image if image.mode == "RGB" else image.convert("RGB")
    except Exception as exn:  # PIL raises many types (OSError, SyntaxError, ValueError ...)
        raise SampleError("corrupt_image", f"{type(exn).__name__}: {exn}") from None


def _as_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise SampleError("bad_value", f"localizable={value!r} is not a boolean")


def _as_entities(value: object) -> list[str]:
    # the published parquet stores [{"text": ...}]; shards store plain strings
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise SampleError("bad_value", f"entities={value!r} is not a list")
    out = []
    for item in value:
        text = item.get("text") if isinstance(item, Mapping) else item
        if not isinstance(text, str):
            raise SampleError("bad_value", f"entity {item!r} is not a string")
        out.append(text)
    return out


def parse_metadata(meta: Mapping, required: Sequence[str] = REQUIRED_FIELDS) -> dict:
    """Validate the JSON fields; returns the GeoSample keyword arguments (without key/image)."""
    missing = [f for f in required if meta.get(f) is None]
    if missing:
        raise SampleError("missing_field", f"missing {', '.join(missing)}")
    try:
        lat = float(meta.get("lat", math.nan))
        lon = float(meta.get("lon", math.nan))
    except (TypeError, ValueError):
        raise SampleError("bad_value", f"lat/lon not numbers: {meta.get('lat')!r}, {meta.get('lon')!r}") from None
    if ("lat" in required or "lon" in required) and not (abs(lat) <= 90 and abs(lon) <= 180):
        raise SampleError("bad_value", f"lat/lon out of range: {lat}, {lon}")
    fields = {"lat": lat, "lon": lon}
    for name in ("country", "city", "reasoning"):
        value = meta.get(name)
        if value is not None and not isinstance(value, str):
            raise SampleError("bad_value", f"{name}={value!r} is not a string")
        fields[name] = value or ""
    fields["localizable"] = _as_bool(meta["localizable"]) if meta.get("localizable") is not None else True
    fields["entities"] = _as_entities(meta["entities"]) if meta.get("entities") is not None else []
    fields["extra"] = {k: v for k, v in meta.items() if k not in _KNOWN}
    return fields


def sample_from_record(record: Mapping, required: Sequence[str] = REQUIRED_FIELDS) -> GeoSample:
    """Decode a WebDataset record (``__key__``, ``__url__``, ``json``, ``jpg``/``png``/...)."""
    key = record["__key__"]
    if "json" not in record:
        raise SampleError("missing_json", "no .json member")
    try:
        meta = json.loads(record["json"])
    except (UnicodeDecodeError, json.JSONDecodeError) as exn:
        raise SampleError("bad_json", str(exn)) from None
    if not isinstance(meta, dict):
        raise SampleError("bad_json", f"top level is {type(meta).__name__}, not an object")
    fields = parse_metadata(meta, required)
    data = next((record[e] for e in IMAGE_EXTENSIONS if e in record), None)
    if data is None:
        raise SampleError("missing_image", "no image member")
    image = decode_image(data)
    if "__url__" in record:
        fields["extra"]["url"] = record["__url__"]
    return GeoSample(key=key, image=image, **fields)
