"""Offline GeoNames gazetteer on the real data (the index is cached in $GLOBE_CACHE or ~/.cache/globe)."""

import pickle

import numpy as np
import pytest

from globe.geo.distance import geodesic_km
from globe.geo.gazetteer import Gazetteer, Place
from globe.geo.index_build import _unit_vectors


@pytest.fixture(scope="module")
def gaz() -> Gazetteer:
    return Gazetteer.load()


def test_forward_city(gaz):
    p = gaz.geocode("Paris", "France")
    assert isinstance(p, Place)
    assert (p.name, p.country_code, p.country_name, p.level) == ("Paris", "FR", "France", "city")
    assert geodesic_km(p.lat, p.lon, 48.8566, 2.3522) < 2


@pytest.mark.parametrize(
    "city, country, name, code",
    [
        ("Munich", "Germany", "Munich", "DE"),
        ("München", "DE", "Munich", "DE"),
        ("MUENCHEN", "deutschland", "Munich", "DE"),
        ("São Paulo", "Brazil", "São Paulo", "BR"),
        ("Sao Paulo", "brasil", "São Paulo", "BR"),
        ("New York", "U.S.", "New York City", "US"),
        ("Saigon", "Vietnam", "Ho Chi Minh City", "VN"),
        ("Kiev", "Ukraine", "Kyiv", "UA"),
        ("Abidjan", "Ivory Coast", "Abidjan", "CI"),
        ("Seoul", "South Korea", "Seoul", "KR"),
        ("Prague", "Czech Republic", "Prague", "CZ"),
        ("Moscow", "Russia", "Moscow", "RU"),
        ("Amsterdam", "Holland", "Amsterdam", "NL"),
        ("Washington, D.C.", "USA", "Washington", "US"),  # comma parts are tried
        ("Rome", None, "Rome", "IT"),  # no country: most populous match
        ("Roma", None, "Rome", "IT"),  # alternate name of a big city beats small "Roma"s
        ("Paris", "United States", "Paris", "US"),  # the country disambiguates
        ("Quebec City", "Canada", "Québec", "CA"),
        ("Cusco", "Bavaria, Peru", "Cusco", "PE"),  # country parts are tried too
        ("Paris, TX", None, "Paris", "US"),  # a US state after a comma
        ("Roseville, California", "USA", "Roseville", "US"),
        ("Athens, Georgia", None, "Athens", "US"),
        ("Tbilisi, Georgia", None, "Tbilisi", "GE"),  # not a US city: the country reading
        ("Washington, D.C.", None, "Washington", "US"),
    ],
)
def test_forward_aliases_and_disambiguation(gaz, city, country, name, code):
    p = gaz.geocode(city, country)
    assert p is not None and p.level == "city"
    assert (p.name, p.country_code) == (name, code)


def test_us_state_qualifier_picks_the_right_homonym(gaz):
    ca = gaz.geocode("Roseville, CA", "United States")
    mi = gaz.geocode("Roseville, Michigan", "United States")
    assert ca.lon < -120 and mi.lon > -90  # California vs Michigan
    assert gaz.admin1_code(int(gaz.reverse_indices([ca.lat], [ca.lon])[0])) == "CA"


def test_fallback_to_country(gaz):
    p = gaz.geocode("Nowhereville-sur-Mer", "France")
    assert p is not None and p.level == "country"
    assert (p.name, p.country_code) == ("France", "FR")
    # the country point is the capital by default
    assert geodesic_km(p.lat, p.lon, 48.8566, 2.3522) < 2
    assert gaz.geocode(None, "USA").level == "country"
    assert gaz.geocode("", "Japan").name == "Japan"
    # a city of another country does not override a recognised country
    assert gaz.geocode("Berlin", "Italy").level == "country"


def test_unknown_is_none(gaz):
    assert gaz.geocode(None, "Atlantis") is None
    assert gaz.geocode("Nowhereville-sur-Mer", None) is None
    assert gaz.geocode(None, None) is None
    assert gaz.geocode("Nowhereville-sur-Mer", "Atlantis") is None
    # city known, country not recognised: the city anywhere
    assert gaz.geocode("Tokyo", "Atlantis").country_code == "JP"


def test_geocode_many_matches_geocode(gaz):
    pairs = [("Paris", "France"), ("Lyon", None), (None, "Spain"), ("xx", "yy"), ("Paris", "France"), (None, None)]
    assert gaz.geocode_many(pairs) == [gaz.geocode(*p) for p in pairs]


def test_medoid_country_point():
    g = Gazetteer.load(country_point="medoid")
    us = g.geocode(None, "United States")
    # the population medoid of the US lies in the middle of the country, not on the east coast
    assert -100 < us.lon < -80 and 33 < us.lat < 42


def test_same_city(gaz):
    assert gaz.same_city("Munich", "München", "DE")
    assert gaz.same_city("München", "Munich")
    assert gaz.same_city("Sao Paulo", "São Paulo")
    assert gaz.same_city("Saigon", "Ho Chi Minh City", "VN")
    assert gaz.same_city("Köln", "Cologne", "Germany")
    assert not gaz.same_city("Paris", "Lyon", "FR")
    assert not gaz.same_city("Munich", "Berlin")
    assert not gaz.same_city("", "Paris")
    assert not gaz.same_city(None, "Paris")  # type: ignore[arg-type]


def test_reverse_known_points(gaz):
    p = gaz.reverse(48.8566, 2.3522)
    assert (p.name, p.country_code, p.level) == ("Paris", "FR", "city")
    assert [q.name for q in gaz.reverse_many([41.9028, 40.7128, 35.6762], [12.4964, -74.0060, 139.6503])] == [
        "Rome", "New York City", "Tokyo",
    ]
    # the nearest populated place can be a neighbourhood; rule="city" snaps to the city
    assert gaz.reverse(48.8566, 2.3522, rule="nearest").name.startswith("Paris 04")
    # a separate town next to a big city keeps its own name
    assert gaz.reverse(40.7357, -74.1724).name == "Newark"


def test_reverse_grid_equals_brute_force(gaz):
    rng = np.random.default_rng(0)
    # dense land (grid path), open ocean / poles / date line (growing blocks, brute-force path)
    lats = np.concatenate([rng.uniform(35, 60, 40), rng.uniform(-90, 90, 4), [89.9, -89.9, 0.0, -45.0]])
    lons = np.concatenate([rng.uniform(-10, 30, 40), rng.uniform(-180, 180, 4), [0.0, 179.99, -179.999, -140.0]])
    q = _unit_vectors(lats, lons)
    for rule in ("nearest", "city"):
        fast = gaz.reverse_indices(lats, lons, rule=rule)
        dot = q @ gaz._xyz.T
        if rule == "nearest":
            brute = dot.argmax(1)
        else:
            d2 = np.maximum(2 * 6371.0088**2 * (1 - dot), 0)
            brute = (np.sqrt(gaz._pop + 1.0) / (d2 + 1.0)).argmax(1)
        np.testing.assert_array_equal(fast, brute)
    with pytest.raises(ValueError):
        gaz.reverse(float("nan"), 0.0)


def test_reverse_then_forward_round_trip(gaz):
    for lat, lon in [(52.52, 13.405), (-33.8688, 151.2093), (19.4326, -99.1332), (-22.9068, -43.1729)]:
        p = gaz.reverse(lat, lon)
        q = gaz.geocode(p.name, p.country_name)
        assert q == p


def test_cities(gaz):
    fr = gaz.cities("FR", min_population=500_000)
    assert [c.name for c in fr][:1] == ["Paris"]
    assert all(c.population >= 500_000 and c.country_code == "FR" for c in fr)
    pops = [c.population for c in gaz.cities("France", 100_000)]
    assert pops == sorted(pops, reverse=True) and len(pops) > 20
    assert gaz.cities("Atlantis") == []


@pytest.mark.slow  # builds an index: ~5 s idle, ~11 s on a busy 2-core machine
def test_build_and_cache_round_trip(tmp_path):
    g = Gazetteer.load(tmp_path, min_population=15000)  # smallest GeoNames set: builds in a few s
    path = Gazetteer.cache_path(tmp_path, 15000)
    assert path.exists() and len(g) == 34006
    with open(path, "rb") as f:
        assert pickle.load(f)["source"].endswith("cities15000")
    g2 = Gazetteer.load(tmp_path, min_population=15000)  # second load reads the cache
    assert g2.geocode("Munich", "DE") == g.geocode("München", "Germany")
    with pytest.raises(ValueError):
        Gazetteer.load(tmp_path, min_population=123)
