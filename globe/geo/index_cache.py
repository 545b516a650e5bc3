"""The gazetteer index on disk: a numpy ``.npz`` archive, never a pickle.

Layout (one archive member per field of :func:`globe.geo.index_build.build_index`'s dict):

* numeric arrays as they are (``lat``, ``lon``: float64; ``pop``, ``geonameid``,
  ``post_ptr``, ``country_pop``, ``capital``, ``medoid``: int64; ``cc``: int16;
  ``post_idx``: int32);
* text (``source``, the NUL-joined ``names`` / ``admin1`` / ``keys``, and the lists ``codes``
  / ``country_names`` joined with NUL) as the UTF-8 bytes of a uint8 array;
* ``format`` and ``n`` as int64 scalars.

Writing: to a temporary file in the same directory, flushed to disk, then ``os.replace`` —
a reader never sees half a file, and a failed write leaves the previous file as it was.

Reading (:func:`read_index`) trusts nothing: ``np.load(allow_pickle=False)`` (a pickle, or an
object array inside an archive, is refused, never run), a size cap on the archive's members,
then every invariant the gazetteer relies on: the exact member set and dtypes, the index format
and the expected ``source``, equal lengths (``n`` cities, one ``post_ptr`` entry per key + 1,
one entry per country), CSR pointers starting at 0, non-decreasing, ending at the number of
postings, postings and country indices in range, keys sorted (bisection), finite coordinates
in range. Any failure — a corrupt, truncated, foreign or tampered file — returns ``None``, and
the caller rebuilds. Zip's CRC-32 of each member catches flipped bytes.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from globe.geo.index_build import INDEX_FORMAT

__all__ = ["write_index", "read_index", "MAX_INDEX_BYTES"]

MAX_INDEX_BYTES = 1 << 30  # the cities500 index is ~30 MB; a member total above this is refused

_ARRAYS = {
    "lat": np.float64, "lon": np.float64, "pop": np.int64, "cc": np.int16, "geonameid": np.int64,
    "post_ptr": np.int64, "post_idx": np.int32, "country_pop": np.int64, "capital": np.int64, "medoid": np.int64,
}
_TEXTS = ("source", "names", "admin1", "keys")
_LISTS = ("codes", "country_names")
_SCALARS = ("format", "n")
_MEMBERS = frozenset(_ARRAYS) | frozenset(_TEXTS) | frozenset(_LISTS) | frozenset(_SCALARS)


def _utf8(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def write_index(path: str | Path, index: dict) -> None:
    """Write ``index`` (build_index's dict) to ``path`` atomically; raises on a value of the
    wrong kind (text that is not a str, an object array), leaving any existing file untouched."""
    path = Path(path)
    members: dict[str, np.ndarray] = {}
    for k in _ARRAYS:
        members[k] = np.asarray(index[k])  # stored as built; read_index checks the dtypes
    for k in _TEXTS:
        if not isinstance(index[k], str):
            raise TypeError(f"index field {k!r} must be a str, got {type(index[k]).__name__}")
        members[k] = _utf8(index[k])
    for k in _LISTS:
        if not all(isinstance(v, str) for v in index[k]):
            raise TypeError(f"index field {k!r} must be a list of str")
        members[k] = _utf8("\x00".join(index[k]))
    for k in _SCALARS:
        members[k] = np.asarray(int(index[k]), dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, allow_pickle=False, **members)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _split(text: str, count: int) -> list[str] | None:
    """``text`` split at NUL into exactly ``count`` parts, else None."""
    if not _parts_are(text, count):
        return None
    return text.split("\x00") if count else []


def _parts_are(text: str, count: int) -> bool:
    """True if ``text`` joins exactly ``count`` parts with NUL (none: the empty string)."""
    return text == "" if count == 0 else text.count("\x00") == count - 1


def read_index(path: str | Path, source: str) -> dict | None:
    """The index stored at ``path`` if it is a valid index of ``source`` (see the module
    docstring), else None. Never unpickles; never raises for a bad file."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
        names = {i.filename.removesuffix(".npy") for i in infos}
        if names != _MEMBERS or len(infos) != len(_MEMBERS):
            return None
        if sum(i.file_size for i in infos) > MAX_INDEX_BYTES:
            return None
        with np.load(path, allow_pickle=False) as z:
            raw = {k: z[k] for k in _MEMBERS}
        return _validated(raw, source)
    except Exception:  # noqa: BLE001 - any unreadable file is rebuilt (zip, CRC, header, pickle refusal)
        return None


def _validated(raw: dict[str, np.ndarray], source: str) -> dict | None:
    """The index dict rebuilt from the archive's arrays, or None if an invariant fails."""
    for k, dtype in _ARRAYS.items():
        if raw[k].dtype != dtype or raw[k].ndim != 1:
            return None
    for k in (*_TEXTS, *_LISTS):
        if raw[k].dtype != np.uint8 or raw[k].ndim != 1:
            return None
    for k in _SCALARS:
        if raw[k].dtype != np.int64 or raw[k].ndim != 0:
            return None
    text = {k: raw[k].tobytes().decode("utf-8") for k in (*_TEXTS, *_LISTS)}  # strict: bad UTF-8 raises
    fmt, n = int(raw["format"]), int(raw["n"])
    if fmt != INDEX_FORMAT or text["source"] != source:
        return None
    lat, lon, ptr, idx = raw["lat"], raw["lon"], raw["post_ptr"], raw["post_idx"]
    if any(len(raw[k]) != n for k in ("lat", "lon", "pop", "cc", "geonameid")):
        return None
    if not (_parts_are(text["names"], n) and _parts_are(text["admin1"], n)):
        return None
    keys = _split(text["keys"], len(ptr) - 1) if len(ptr) else None
    if keys is None or keys != sorted(keys):  # sorted() of sorted input is one linear pass
        return None
    if ptr[0] != 0 or ptr[-1] != len(idx) or (np.diff(ptr) < 0).any():
        return None
    if len(idx) and (idx.min() < 0 or idx.max() >= n):
        return None
    codes = _split(text["codes"], len(raw["country_pop"]))
    country_names = _split(text["country_names"], len(raw["country_pop"]))
    n_countries = len(raw["country_pop"])
    if codes is None or country_names is None or len(raw["capital"]) != n_countries or len(raw["medoid"]) != n_countries:
        return None
    if n and (raw["cc"].min() < 0 or raw["cc"].max() >= n_countries):
        return None
    for k in ("capital", "medoid"):
        if len(raw[k]) and (raw[k].min() < -1 or raw[k].max() >= n):
            return None
    if not (np.isfinite(lat).all() and np.isfinite(lon).all() and (np.abs(lat) <= 90).all() and (np.abs(lon) <= 180).all()):
        return None
    if (raw["pop"] < 0).any():
        return None
    index: dict = {k: raw[k] for k in _ARRAYS}
    index.update({k: text[k] for k in _TEXTS})
    index.update(codes=codes, country_names=country_names, format=fmt, n=n)
    return index
