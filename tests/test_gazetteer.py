"""Offline GeoNames gazetteer on the real data (the index is cached in $GLOBE_CACHE or ~/.cache/globe)."""

import pickle

import numpy as np
import pytest

from globe.geo.distance import geodesic_km
from globe.geo.gazetteer import Gazetteer, Place
from globe.geo.index_build import INDEX_FORMAT, _unit_vectors
from globe.geo.index_cache import read_index, write_index


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
    assert path.exists() and path.suffix == ".npz" and len(g) == 34006
    with np.load(path, allow_pickle=False) as z:  # a plain numpy archive, no pickle inside
        assert bytes(z["source"]).decode().endswith("cities15000")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # the temporary file was renamed
    stamp = path.stat().st_mtime_ns
    g2 = Gazetteer.load(tmp_path, min_population=15000)  # second load reads the cache
    assert path.stat().st_mtime_ns == stamp
    assert g2.geocode("Munich", "DE") == g.geocode("München", "Germany")
    with pytest.raises(ValueError):
        Gazetteer.load(tmp_path, min_population=123)


# ---------------------------------------------------------------------- untrusted cache files
class _TouchOnUnpickle:
    """Unpickling this creates ``path`` (stands for arbitrary code run by a crafted file)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _tiny_index(source="test cities3"):
    """A hand-made index in build_index's layout: Tokyo, Paris, Lyon (population order)."""
    return {
        "format": INDEX_FORMAT, "source": source,
        "lat": np.array([35.6895, 48.8534, 45.7485]), "lon": np.array([139.6917, 2.3488, 4.8467]),
        "pop": np.array([8_336_599, 2_138_551, 472_317], dtype=np.int64),
        "cc": np.array([1, 0, 0], dtype=np.int16), "geonameid": np.array([1850147, 2988507, 2996944], dtype=np.int64),
        "names": "Tokyo\x00Paris\x00Lyon", "admin1": "40\x0011\x0084",
        "keys": "lyon\x00paris\x00tokio\x00tokyo",  # sorted; "tokio" is an alternate name
        "post_ptr": np.array([0, 1, 2, 3, 4], dtype=np.int64), "post_idx": np.array([2, 1, 0, 0], dtype=np.int32),
        "codes": ["FR", "JP"], "country_names": ["France", "Japan"],
        "country_pop": np.array([66_987_244, 126_529_100], dtype=np.int64),
        "capital": np.array([1, 0], dtype=np.int64), "medoid": np.array([1, 0], dtype=np.int64),
        "n": 3,
    }


def test_index_file_round_trip(tmp_path):
    path = tmp_path / "index.npz"
    write_index(path, _tiny_index())
    assert [p.name for p in tmp_path.iterdir()] == ["index.npz"]  # written to a temporary file, renamed
    back = read_index(path, "test cities3")
    want = _tiny_index()
    assert set(back) == set(want)
    for k, v in want.items():
        if isinstance(v, np.ndarray):
            assert back[k].dtype == v.dtype and np.array_equal(back[k], v), k
        else:
            assert back[k] == v, k
    g = Gazetteer(back)
    assert (g.geocode("Tokio", "Japan").name, g.geocode(None, "France").name, g.reverse(45.75, 4.85).name) == (
        "Tokyo", "France", "Lyon",
    )


def _crafted_files(tmp_path, marker):
    """name -> bytes of files that must never be trusted (the first two run code if unpickled)."""
    good = tmp_path / "good.npz"
    write_index(good, _tiny_index())
    raw = good.read_bytes()
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0xFF
    evil_npz = tmp_path / "evil.npz"
    with open(evil_npz, "wb") as f:  # an object array is stored as a pickle inside the archive
        np.savez(f, **{**{k: np.zeros(1) for k in ("lat", "lon")}, "names": np.array([_TouchOnUnpickle(marker)], dtype=object)})
    foreign = tmp_path / "foreign.npz"
    with open(foreign, "wb") as f:
        np.savez(f, weights=np.ones(3))
    return {
        "pickle": pickle.dumps({"format": INDEX_FORMAT, "payload": _TouchOnUnpickle(marker)}),
        "npz with an object array": evil_npz.read_bytes(),
        "one byte flipped": bytes(flipped),
        "truncated": raw[: len(raw) // 2],
        "foreign archive": foreign.read_bytes(),
        "empty": b"",
        "text": b"not an index\n",
    }


def test_untrusted_index_files_are_rejected_without_unpickling(tmp_path):
    marker = tmp_path / "code-ran"
    for name, data in _crafted_files(tmp_path, marker).items():
        path = tmp_path / "cache.npz"
        path.write_bytes(data)
        assert read_index(path, "test cities3") is None, name
        assert not marker.exists(), name
    write_index(tmp_path / "ok.npz", _tiny_index())
    assert read_index(tmp_path / "ok.npz", "another source") is None  # right layout, other data
    assert read_index(tmp_path / "absent.npz", "test cities3") is None


@pytest.mark.parametrize(
    "field, value",
    [
        ("format", INDEX_FORMAT + 1),
        ("post_idx", np.array([2, 1, 0, 3], dtype=np.int32)),  # a posting past the last city
        ("post_ptr", np.array([0, 2, 1, 3, 4], dtype=np.int64)),  # pointers going backwards
        ("post_ptr", np.array([0, 1, 2, 3], dtype=np.int64)),  # one key too many for the pointers
        ("keys", "paris\x00lyon\x00tokio\x00tokyo"),  # not sorted: bisection would miss keys
        ("cc", np.array([1, 0, 2], dtype=np.int16)),  # a country code index past the table
        ("capital", np.array([1, 3], dtype=np.int64)),
        ("lat", np.array([35.6895, 98.0, 45.7485])),
        ("lon", np.array([139.6917, np.nan, 4.8467])),
        ("pop", np.array([8_336_599, 2_138_551, 472_317], dtype=np.float64)),  # wrong dtype
        ("names", "Tokyo\x00Paris"),  # one name short
        ("country_names", ["France"]),
        ("n", 4),
    ],
)
def test_inconsistent_index_files_are_rejected(tmp_path, field, value):
    path = tmp_path / "index.npz"
    write_index(path, {**_tiny_index(), field: value})
    assert read_index(path, "test cities3") is None


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "index.npz"
    write_index(path, _tiny_index())
    before = path.read_bytes()
    with pytest.raises(Exception):
        write_index(path, {**_tiny_index(), "lat": np.array([object()] * 3)})  # refused while writing
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["index.npz"]


@pytest.mark.slow  # builds the 15000 index once (~5-11 s)
def test_crafted_pickle_in_the_cache_directory_is_never_loaded(tmp_path):
    marker = tmp_path / "code-ran"
    payload = pickle.dumps({"format": INDEX_FORMAT, "payload": _TouchOnUnpickle(marker)})
    path = Gazetteer.cache_path(tmp_path, 15000)
    path.write_bytes(payload)  # at the cache file's own name ...
    path.with_suffix(".pkl").write_bytes(payload)  # ... and at the name of the former pickle cache
    g = Gazetteer.load(tmp_path, min_population=15000)
    assert not marker.exists()
    assert len(g) == 34006 and g.geocode("Munich", "DE").name == "Munich"  # rebuilt, not trusted
    assert read_index(path, g.source) is not None  # and the crafted file replaced by a valid index
