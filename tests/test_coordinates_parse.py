"""Coordinates in the answer: the forms models write, hemispheres, ranges, hostile strings."""

from __future__ import annotations

import math
import time

import pytest

from globe.answer import (
    MAX_FIELD_CHARS, ParsedAnswer, format_answer, format_coordinates, parse_answer, parse_coordinates, valid_coordinates,
)

LAT, LON = 48.8566, 2.3522


@pytest.mark.parametrize(
    "value, expected",
    [
        ("48.8566, 2.3522", (LAT, LON)),
        ("48.8566 2.3522", (LAT, LON)),  # space separated
        ("48.8566; 2.3522", (LAT, LON)),
        ("48.8566 / 2.3522", (LAT, LON)),
        ("(48.8566, 2.3522)", (LAT, LON)),
        ("[48.8566, 2.3522]", (LAT, LON)),
        ("+48.8566, +2.3522", (LAT, LON)),
        ("48.8566°, 2.3522°", (LAT, LON)),
        ("48.8566 deg, 2.3522 degrees", (LAT, LON)),
        ("**48.8566, 2.3522**", (LAT, LON)),
        ("~48.8566, 2.3522", (LAT, LON)),  # a hedge before
        ("approximately 48.8566, 2.3522", (LAT, LON)),
        ("48.8566, 2.3522 (Paris)", (LAT, LON)),  # a remark after
        ("48.8566, 2.3522.", (LAT, LON)),
        ("lat 48.8566, lon 2.3522", (LAT, LON)),
        ("lon 2.3522, lat 48.8566", (LAT, LON)),  # axis names: either order
        ("latitude: 48.8566, longitude: 2.3522", (LAT, LON)),
        # hemispheres, after or before the number, letters or words; S and W negate
        ("48.8566 N, 2.3522 E", (LAT, LON)),
        ("48.8566N 2.3522E", (LAT, LON)),
        ("N 48.8566, E 2.3522", (LAT, LON)),
        ("48.8566° N, 2.3522° W", (LAT, -LON)),
        ("33.8688° S, 151.2093° E", (-33.8688, 151.2093)),
        ("33.8688 south, 151.2093 east", (-33.8688, 151.2093)),
        ("22.9 s, 43.2 w", (-22.9, -43.2)),  # lowercase letters
        ("2.3522 E, 48.8566 N", (LAT, LON)),  # a hemisphere says which axis: either order
        ("-33.8688, 151.2093", (-33.8688, 151.2093)),
        ("\u221233.8688, 151.2093", (-33.8688, 151.2093)),  # Unicode minus
        # degrees, minutes, seconds: 48 + 51/60 + 24/3600, 2 + 21/60 + 7.92/3600
        ("48°51′24″N 2°21′7.92″E", (48 + 51 / 60 + 24 / 3600, 2 + 21 / 60 + 7.92 / 3600)),
        ("48°51'24\"N, 2°21'7.92\"E", (48 + 51 / 60 + 24 / 3600, 2 + 21 / 60 + 7.92 / 3600)),
        ("33°52.13' S, 151°12.56' E", (-(33 + 52.13 / 60), 151 + 12.56 / 60)),
        # the range edges are valid
        ("90, 180", (90.0, 180.0)),
        ("-90, -180", (-90.0, -180.0)),
        ("0, 0", (0.0, 0.0)),
    ],
)
def test_forms_models_write(value, expected):
    got = parse_coordinates(value)
    assert got is not None, value
    assert got == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "value",
    [
        "90.0001, 0", "-91, 0", "0, 180.5", "0, -181", "45 N, 200 E", "95 S, 10 E",  # out of range
        "nan, 0", "0, nan", "inf, inf", "-inf, 3", "1e999, 0", "1e3, 2",  # non-finite / exponents
        "1234.5, 2",  # more than three degree digits
        "48.85", "48.85,", ", 2.35", "48.85, 2.35, 7",  # one number, or three
        "48.85 N, 2.35 N", "2.35 E, 48.85 W",  # both numbers on one axis
        "-33.87 S, 151.2 E",  # a sign and a hemisphere: which one was meant?
        "N 48.85 N, 2.35 E",  # two hemispheres on one number
        "lat 2.35 E, lon 48.85",  # the axis name contradicts the hemisphere
        "48.5° 30' N, 2 E", "48° 60' N, 2 E", "48° 30' 60\" N, 2 E",  # minutes with decimal degrees, >= 60
        "٤٨, ٢", "４８, ２",  # other scripts' digits (the scorer's rule)
        "48,85 2,35",  # decimal commas: not one pair
        "Paris", "somewhere near the Seine", "48.85N2.35Eabc",
        "0x30, 0x2", "1_9.07, 2",
    ],
)
def test_invalid_values_read_as_none(value):
    assert parse_coordinates(value) is None


@pytest.mark.parametrize("value", [None, 42, 3.5, b"48.85, 2.35", ["48.85", "2.35"], object()])
def test_non_strings_read_as_none(value):
    assert parse_coordinates(value) is None


def test_valid_coordinates_checks_range_and_finiteness():
    assert valid_coordinates((48.85, 2.35)) == (48.85, 2.35)
    assert valid_coordinates(("48.85", "2.35")) == (48.85, 2.35)
    for bad in [(91.0, 0.0), (0.0, -180.01), (math.nan, 0.0), (0.0, math.inf), None, (1.0,), (1, 2, 3), "48.85, 2.35"]:
        assert valid_coordinates(bad) is None, bad


# ---------------------------------------------------------------------- inside a completion
def answer(*lines: str) -> str:
    return "<think>Cues.</think><answer>" + "\n".join(lines) + "</answer>"


def test_the_paper_format_has_no_coordinates():
    p = parse_answer(answer("country: France", "city: Paris"))
    assert p == ParsedAnswer("Cues.", "France", "Paris", True) and p.coordinates is None and not p.coordinates_invalid


@pytest.mark.parametrize(
    "text, coordinates, invalid",
    [
        (answer("country: France", "city: Paris", "coordinates: 48.8566, 2.3522"), (LAT, LON), False),
        (answer("country: France", "city: Paris", "Coordinates: 48.8566° N, 2.3522° E"), (LAT, LON), False),
        (answer("country: France", "city: Paris", "**Coordinates:** 48.8566, 2.3522"), (LAT, LON), False),
        (answer("country: France", "city: Paris", "- coordinates = 48.8566, 2.3522"), (LAT, LON), False),
        (answer("country: France", "city: Paris", "coords: 48.8566, 2.3522"), (LAT, LON), False),
        (answer("country: France", "city: Paris", "GPS: 48.8566, 2.3522"), (LAT, LON), False),
        (answer("country: France", "city: Paris", "lat/lon: 48.8566, 2.3522"), (LAT, LON), False),
        (answer("country: France", "city: Paris", "latitude: 48.8566", "longitude: 2.3522"), (LAT, LON), False),
        (answer("country: France", "city: Paris", "lat: 48.8566 N", "lng: 2.3522 E"), (LAT, LON), False),
        (answer("country: France, city: Paris, coordinates: 48.8566, 2.3522"), (LAT, LON), False),  # one line
        (answer("coordinates: -33.8688, 151.2093"), (-33.8688, 151.2093), False),  # coordinates only
        # "coordinates - 33.9" is a dash separator; without the space the dash is a minus sign
        (answer("country: Australia", "coordinates - 33.8688, 151.2093"), (33.8688, 151.2093), False),
        (answer("country: Australia", "coordinates: -33.8688, 151.2093"), (-33.8688, 151.2093), False),
        # the last line wins, and the answer block before any coordinates in <think>
        (answer("coordinates: 1, 2", "coordinates: 48.8566, 2.3522"), (LAT, LON), False),
        ("<think>GPS: 1, 2</think><answer>country: France\ncoordinates: 48.8566, 2.3522</answer>", (LAT, LON), False),
        # a complete answer block without coordinates: the lines after it, never the reasoning
        ("<think>x</think><answer>country: France\ncity: Paris</answer>\ncoordinates: 48.8566, 2.3522", (LAT, LON), False),
        ("<think>GPS: 1, 2</think><answer>country: France\ncity: Paris</answer>", None, False),
        # an answer block missing a name: every line is read, as for the names
        ("<think>GPS: 1, 2</think><answer>country: France</answer>", (1.0, 2.0), False),
        ("country: France\ncity: Paris\ncoordinates: 48.8566, 2.3522", (LAT, LON), False),  # no tags at all
        # given but invalid: flagged, never an error; the names are still read
        (answer("country: France", "city: Paris", "coordinates: 148.8, 2.35"), None, True),
        (answer("country: France", "city: Paris", "coordinates: 48.8, 200"), None, True),
        (answer("country: France", "city: Paris", "coordinates: nan, nan"), None, True),
        (answer("country: France", "city: Paris", "coordinates: near the river"), None, True),
        (answer("country: France", "city: Paris", "latitude: 48.8566"), None, True),  # half a pair
        # placeholders are missing, not invalid
        (answer("country: France", "city: Paris", "coordinates: unknown"), None, False),
        (answer("country: France", "city: Paris", "coordinates: N/A"), None, False),
    ],
)
def test_parse_answer_reads_the_coordinates_line(text, coordinates, invalid):
    p = parse_answer(text)
    assert p.coordinates == (pytest.approx(coordinates) if coordinates else None)
    assert p.coordinates_invalid is invalid


def test_names_are_unchanged_beside_coordinates():
    p = parse_answer(answer("country: France", "city: Paris", "coordinates: 148.8, 2.35"))
    assert (p.country, p.city, p.well_formed) == ("France", "Paris", True)
    # a coordinates label ends a name value written on the same line
    p = parse_answer(answer("country: France coordinates: 48.8566, 2.3522", "city: Paris"))
    assert (p.country, p.city, p.coordinates) == ("France", "Paris", (LAT, LON))
    # words that merely contain a label are not labels
    p = parse_answer(answer("country: Thailand", "city: Lat Phrao", "flat: 12, 13", "Latin: 1, 2"))
    assert p.city == "Lat Phrao" and p.coordinates is None and not p.coordinates_invalid


def test_format_answer_writes_a_line_parse_answer_reads_back():
    assert format_coordinates(-22.906423, -43.18223) == "-22.9064, -43.1822"
    text = format_answer("Cues.", "Brazil", "Rio de Janeiro", (-22.906423, -43.18223))
    assert text.endswith("city: Rio de Janeiro\ncoordinates: -22.9064, -43.1822</answer>")
    p = parse_answer(text)
    assert p.well_formed and p.coordinates == (-22.9064, -43.1822) and p.city == "Rio de Janeiro"
    assert format_answer("Cues.", "France", "Paris") == "<think>Cues.</think><answer>country: France\ncity: Paris</answer>"


# ---------------------------------------------------------------------- hostile, long outputs
HOSTILE = {
    "digits": "<answer>coordinates: " + "1" * 200_000 + "</answer>",
    "digit runs": "\ncoordinates: " + "1." * 100_000,
    "spaced digits": "\ncoordinates: " + "1 " * 100_000,
    "degree signs": "\ncoordinates: " + "1°" * 100_000,
    "minute marks": "\ncoordinates: " + "1' " * 100_000,
    "hemisphere letters": "\ncoordinates: " + "N " * 100_000,
    "signs": "\ncoordinates: " + "+-" * 100_000,
    "repeated labels": "coordinates:" * 20_000,
    "repeated axis labels": "lat: lon: " * 15_000,
    "axis pairs": "lat/lon " * 20_000,
    "dashes": "coordinates -" * 15_000,
    "brackets": "\ncoordinates: " + "(" * 100_000 + "1, 2" + ")" * 100_000,
    "separators": "\ncoordinates: 1.1.1,,,;;// " * 8_000,
    "control characters": "\ncoordinates: \x00\x1b[31m48.85\u200b, 2.35\udcff" * 5_000,
}


@pytest.mark.timeout(120)  # safety net only: every shape parses in milliseconds
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_strings_never_raise_and_stay_linear(name):
    text = HOSTILE[name]
    assert len(text) >= 100_000
    start = time.perf_counter()
    p = parse_answer(text)
    assert time.perf_counter() - start < 2.0, name  # linear: ~10 ms here, a backtracking pattern takes minutes
    assert isinstance(p, ParsedAnswer) and p.coordinates is None
    assert parse_coordinates(text) is None  # a whole hostile text is no coordinate pair either


def test_a_coordinates_line_far_before_the_end_is_outside_the_window():
    far = answer("coordinates: 48.8566, 2.3522", "x" * (MAX_FIELD_CHARS + 10))
    assert parse_answer(far).coordinates is None
    near = "x" * (3 * MAX_FIELD_CHARS) + answer("coordinates: 48.8566, 2.3522")
    assert parse_answer(near).coordinates == (LAT, LON)
