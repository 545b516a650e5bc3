"""Name folding and country aliases."""

import pytest

from globe.geo.countries import country_code, country_codes, country_name
from globe.geo.text import fold


@pytest.mark.parametrize(
    "raw, folded",
    [
        ("São Paulo", "sao paulo"),
        ("Sao Paulo", "sao paulo"),
        ("  MÜNCHEN ", "munchen"),
        ("Saint-Étienne", "saint etienne"),
        ("Côte d'Ivoire", "cote d ivoire"),
        ("U.S.", "u s"),
        ("Łódź", "lodz"),
        ("Straße", "strasse"),
        ("København", "kobenhavn"),  # ø is not decomposed by NFKD
        ("İstanbul", "istanbul"),
        ("", ""),
    ],
)
def test_fold(raw, folded):
    assert fold(raw) == folded


def test_fold_non_str_is_empty():
    assert fold(None) == ""  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name, code",
    [
        ("USA", "US"), ("U.S.", "US"), ("U.S.A.", "US"), ("United States of America", "US"),
        ("united states", "US"), ("America", "US"),
        ("UK", "GB"), ("United Kingdom", "GB"), ("England", "GB"), ("Great Britain", "GB"),
        ("Russia", "RU"), ("Russian Federation", "RU"),
        ("South Korea", "KR"), ("Korea, Republic of", "KR"), ("Republic of Korea", "KR"),
        ("North Korea", "KP"),
        ("Ivory Coast", "CI"), ("Côte d'Ivoire", "CI"), ("Cote d'Ivoire", "CI"),
        ("Czech Republic", "CZ"), ("Czechia", "CZ"),
        ("Vietnam", "VN"), ("Viet Nam", "VN"),
        ("Holland", "NL"), ("The Netherlands", "NL"), ("Netherlands", "NL"),
        ("Türkiye", "TR"), ("Turkey", "TR"),
        ("The Bahamas", "BS"), ("St. Lucia", "LC"), ("Saint Lucia", "LC"),
        ("Trinidad & Tobago", "TT"), ("Bosnia and Herzegovina", "BA"),
        ("Democratic Republic of the Congo", "CD"), ("Burma", "MM"), ("Kosovo", "XK"),
        ("FR", "FR"), ("fra", "FR"), ("  france. ", "FR"), ("Deutschland", "DE"),
    ],
)
def test_country_aliases(name, code):
    assert country_code(name) == code


@pytest.mark.parametrize("name", ["Atlantis", "", "   ", None, 3, "Bavaria"])
def test_unknown_country_is_none(name):
    assert country_code(name) is None


def test_country_name_is_canonical_and_round_trips():
    assert country_name("KR") == "South Korea"
    assert country_name("us") == "United States"
    assert country_name("NL") == "Netherlands"
    codes = country_codes()
    assert len(codes) >= 249
    for code in codes:  # every canonical name maps back to its code
        assert country_code(country_name(code)) == code, code
    with pytest.raises(KeyError):
        country_name("ZZ")
