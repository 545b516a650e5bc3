"""Turn one raw WebDataset record (``{key}.jpg`` + ``{key}.json`` bytes) into a GeoSample.

Failures raise :class:`SampleError` carrying one of the reasons of ``data_stats.REASONS``;
the stream counts and skips them. JSON is checked before the image is decoded (cheaper).

Shard bytes are untrusted, so the JSON side is bounded before and after parsing:

* size: more than ``MAX_JSON_BYTES`` is rejected unparsed (``bad_json``, "json_too_large");
  from a shard, ``tar_reader`` already rejects it by its tar header, unread (``__skip__``);
* parsing: any parser failure is ``bad_json``, including nesting too deep for the parser
  (``RecursionError``) and integers longer than Python's int-string limit (``ValueError``);
* depth: a parsed object nested deeper than ``MAX_JSON_DEPTH`` is ``bad_json`` (it would
  exhaust the recursion limit later, when a worker pickles the batch). The walk that
  measures depth only runs when the raw text holds more than ``MAX_JSON_DEPTH`` brackets,
  so ordinary samples pay two ``bytes.count`` calls;
* coordinates: ``lat``/``lon``, when present, must be JSON numbers or numeric strings
  (not booleans) that are finite and within [-90, 90] / [-180, 180] (``bad_value``; a
  400-digit integer overflows ``float()`` and lands here); an absent one is NaN and only
  rejected when it is required.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence

from PIL import Image

from .sample import GeoSample

__all__ = ["IMAGE_EXTENSIONS", "MAX_JSON_BYTES", "MAX_JSON_DEPTH", "REQUIRED_FIELDS", "SampleError", "decode_image",
           "parse_json", "parse_metadata", "sample_from_record"]

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
REQUIRED_FIELDS: tuple[str, ...] = ("lat", "lon", "country", "city")
MAX_JSON_BYTES = 1 << 20  # per-sample JSON text; MP16-Reason samples are a few KB
MAX_JSON_DEPTH = 32  # nesting levels, the top-level object being level 1
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


def _short(value: object, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters (a hostile value may be a megabyte long)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"<{value.bit_length()}-bit integer>"  # repr() of a huge int is slow or refused
    text = repr(value) if not isinstance(value, str) or len(value) <= limit else repr(value[:limit])
    return text if len(text) <= limit else text[:limit] + "..."


def _coordinate(meta: Mapping, name: str, bound: float) -> float:
    """``meta[name]`` as a finite float within [-bound, bound]; NaN when absent."""
    value = meta.get(name)
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SampleError("bad_value", f"{name}={_short(value)} is not a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):  # OverflowError: an int beyond the float range
        raise SampleError("bad_value", f"{name}={_short(value)} is not a finite number") from None
    if not (math.isfinite(number) and abs(number) <= bound):
        raise SampleError("bad_value", f"{name}={number} out of range [-{bound:g}, {bound:g}]")
    return number


def _deeper_than(value: object, limit: int) -> bool:
    """Whether containers nest more than ``limit`` levels (iterative: no recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))  # type: ignore[union-attr]
    return False


def parse_json(data: bytes | str, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> dict:
    """The JSON object of one sample, bounded in size and depth; ``SampleError("bad_json")`` otherwise."""
    if len(data) > max_bytes:
        raise SampleError("bad_json", f"json_too_large: {len(data)} bytes > {max_bytes}")
    try:
        meta = json.loads(data)
    except RecursionError:
        raise SampleError("bad_json", f"nested too deep to parse (the limit is {max_depth} levels)") from None
    except ValueError as exn:  # JSONDecodeError, UnicodeDecodeError, integers over the int-string limit
        raise SampleError("bad_json", f"{type(exn).__name__}: {_short(str(exn), 200)}") from None
    if not isinstance(meta, dict):
        raise SampleError("bad_json", f"top level is {type(meta).__name__}, not an object")
    opening = (b"[", b"{") if isinstance(data, bytes) else ("[", "{")
    brackets = data.count(opening[0]) + data.count(opening[1])  # type: ignore[arg-type]
    if brackets > max_depth and _deeper_than(meta, max_depth):  # type: ignore[arg-type]
        raise SampleError("bad_json", f"nested deeper than {max_depth} levels")
    return meta


def _as_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise SampleError("bad_value", f"localizable={_short(value)} is not a boolean")


def _as_entities(value: object) -> list[str]:
    # the published parquet stores [{"text": ...}]; shards store plain strings
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise SampleError("bad_value", f"entities={_short(value)} is not a list")
    out = []
    for item in value:
        text = item.get("text") if isinstance(item, Mapping) else item
        if not isinstance(text, str):
            raise SampleError("bad_value", f"entity {_short(item)} is not a string")
        out.append(text)
    return out


def parse_metadata(meta: Mapping, required: Sequence[str] = REQUIRED_FIELDS) -> dict:
    """Validate the JSON fields; returns the GeoSample keyword arguments (without key/image).

    Raises only :class:`SampleError`: a value that trips an exception no check foresaw is
    ``bad_value`` too (the stream must not die on one sample).
    """
    try:
        return _fields(meta, required)
    except SampleError:
        raise
    except (TypeError, ValueError, OverflowError, RecursionError) as exn:
        raise SampleError("bad_value", f"{type(exn).__name__}: {_short(str(exn), 200)}") from None


def _fields(meta: Mapping, required: Sequence[str]) -> dict:
    missing = [f for f in required if meta.get(f) is None]
    if missing:
        raise SampleError("missing_field", f"missing {', '.join(missing)}")
    fields = {"lat": _coordinate(meta, "lat", 90.0), "lon": _coordinate(meta, "lon", 180.0)}
    for name in ("country", "city", "reasoning"):
        value = meta.get(name)
        if value is not None and not isinstance(value, str):
            raise SampleError("bad_value", f"{name}={_short(value)} is not a string")
        fields[name] = value or ""
    fields["localizable"] = _as_bool(meta["localizable"]) if meta.get("localizable") is not None else True
    fields["entities"] = _as_entities(meta["entities"]) if meta.get("entities") is not None else []
    fields["extra"] = {k: v for k, v in meta.items() if k not in _KNOWN}
    return fields


def sample_from_record(record: Mapping, required: Sequence[str] = REQUIRED_FIELDS) -> GeoSample:
    """Decode a WebDataset record (``__key__``, ``__url__``, ``json``, ``jpg``/``png``/...)."""
    key = record["__key__"]
    if "__skip__" in record:  # a member tar_reader did not read: too large by its header
        raise SampleError(*record["__skip__"])
    if "json" not in record:
        raise SampleError("missing_json", "no .json member")
    fields = parse_metadata(parse_json(record["json"]), required)
    data = next((record[e] for e in IMAGE_EXTENSIONS if e in record), None)
    if data is None:
        raise SampleError("missing_image", "no image member")
    image = decode_image(data)
    if "__url__" in record:
        fields["extra"]["url"] = record["__url__"]
    return GeoSample(key=key, image=image, **fields)
