"""Parse and format the policy's answer: ``<think>...</think><answer>country: X\ncity: Y</answer>``,
optionally with a third line ``coordinates: lat, lon``.

:func:`parse_answer` never raises (``None`` and non-strings give an empty answer) and accepts
what models really write:

* tags in any case, missing ``</answer>`` / ``</think>``, or no tags at all;
* ``country: X`` / ``Country - X`` / ``**Country:** X`` / ``- city = Y`` / ``country：X``, extra
  lines, trailing punctuation and quotes, bracketed values (``[France]``), a trailing
  parenthetical (``Paris (likely)``), both fields on one line (``country: France, city: Paris``);
* fields are read inside the last ``<answer>`` block first, then anywhere in the text (answer
  lines written outside the tags); when a field appears several times the *last* one wins;
* placeholder values (``unknown``, ``n/a``, ``none``, ``-``) count as missing.

Coordinates (optional; the paper's format has none): a ``coordinates:`` line (also
``coordinate`` / ``coords`` / ``gps`` / ``lat/lon``), or ``latitude:`` and ``longitude:`` lines
(``lat`` / ``lon`` / ``lng``), the last one winning, read from the last ``<answer>`` block;
without one there, from the lines after the block when the block names both country and city
(coordinates in ``<think>`` are reasoning, not the answer), else from anywhere in the text, as
the names are. The value is read by :func:`parse_coordinates`: decimal degrees, signed or with a hemisphere (``N S E W`` or the
words, before or after the number; S and W negate), an optional degree sign, optional minutes
``'`` and seconds ``"``, the two numbers separated by a comma, semicolon, slash or spaces, in
brackets or not, ``lat 48.8 lon 2.3`` naming the axes. Without hemispheres or axis names the
first number is the latitude; with them either order is read. A value that does not read as
one such pair, or is out of range (``|lat| > 90``, ``|lon| > 180``), is *invalid*:
``coordinates`` stays None and ``coordinates_invalid`` is True (never an error). Only the
coordinate labels take a colon / equals sign or a dash *followed by a space*, so
``coordinates -33.9, 151.2`` is not read as a dash separator with 33.9.

``well_formed`` is True only for exactly ``<think>...</think>`` followed by
``<answer>...</answer>`` with nothing but whitespace around or between them and no nested tags
(the format reward); it says nothing about whether the fields could be read.

Bounded, linear work on untrusted text (model outputs can be arbitrarily long):

* tags are found in one pass over the whole text (a fixed-length pattern, then plain index
  arithmetic); ``well_formed`` and ``think`` are exact on texts of any length;
* field lines are read from the last ``MAX_FIELD_CHARS`` (16,384) characters of the answer
  block, and of the text for answer lines outside the tags (the answer comes last); a label
  there is still matched as a whole word, whatever precedes the window;
* a field value is read from its first ``MAX_VALUE_CHARS`` (256) characters;
* every pattern is possessive or anchored at the start of a run, so none can backtrack:
  parsing is O(len(text)).
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import NamedTuple

__all__ = [
    "ParsedAnswer", "parse_answer", "parse_coordinates", "valid_coordinates", "format_answer", "format_coordinates",
    "MAX_FIELD_CHARS", "MAX_VALUE_CHARS",
]

MAX_FIELD_CHARS = 16_384  # field lines are read from this many characters at the end
MAX_VALUE_CHARS = 256  # a field value is read from this many characters (a place name is short)


class ParsedAnswer(NamedTuple):
    think: str | None  # text inside the last <think> block (stripped), None if no block
    country: str | None
    city: str | None
    well_formed: bool
    coordinates: tuple[float, float] | None = None  # (lat, lon) in degrees, in range; None if absent or invalid
    coordinates_invalid: bool = False  # a coordinates value was given but is unreadable or out of range


_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_TAG_ANY_CASE = re.compile(r"</?(?:think|answer)>", re.I)  # fixed length: one linear pass
# a field label (a whole word; markdown before it is left out of the match), then whitespace
# and markdown (possessive: never given back), then a separator (":", "=", or a dash right
# after whitespace; for a coordinate label the dash must be followed by whitespace too: a
# dash before a digit is a minus sign) and the rest of the line
_FIELD = re.compile(  # (?=[cgl]): lets the engine skip to a label's first letter (2x faster scans)
    r"(?=[cglCGL])(?<!\w)(?:(country|city)|(coordinates?|coords|gps|lat(?:itude)?\s*+(?:[/,&]|and)\s*+(?:lon(?:gitude)?|lng)"
    r"|latitude|longitude|lat|lon|lng))"
    r"[\s*_`]*+(?:[:：=]|(?<=\s)[-–—](?(1)|(?=\s)))\s*+(.*)",
    re.I,
)
_COORDINATE_KEYS = ("coordinates", "lat", "lon")
_MISSING = {"", "unknown", "n a", "na", "none", "not sure", "unclear", "null", "?", "-", "tbd"}


_TAG = re.compile(r"</?\w++>")
_MARKDOWN = re.compile(r"[*_`]+")
# only at the start of a run (lookbehind), possessive: one attempt per run, no backtracking
_TRAILING_PUNCT = re.compile(r"(?<![\s.,;:!?])[\s.,;:!?]++$")
_QUOTES = "[]{}\"'“”‘’«»"


def _drop_trailing_paren(v: str) -> str:
    """``"Paris (likely)"`` -> ``"Paris"``: a final ``(...)`` holding no ``)``, with the
    whitespace before it (the leftmost ``(`` after the previous ``)``)."""
    s = v.rstrip()
    if not s.endswith(")"):
        return v
    opening = s.find("(", s.rfind(")", 0, len(s) - 1) + 1, len(s) - 1)
    return s[:opening].rstrip() if opening >= 0 else v


@lru_cache(maxsize=1 << 14)
def _clean(value: str) -> str | None:
    """A field value without tags, markdown, quotes, brackets, trailing punctuation.

    ``value`` is at most ``MAX_VALUE_CHARS`` long (the cache holds short strings only)."""
    v = _TAG.split(value, maxsplit=1)[0]  # stop at any tag
    v = _MARKDOWN.sub("", v)
    v = _drop_trailing_paren(v)
    v = v.strip().strip(_QUOTES).strip()
    v = _TRAILING_PUNCT.sub("", v).strip().strip("[]\"'“”‘’").strip()
    if v.lower().replace("/", " ").strip() in _MISSING:
        return None
    return v


def _key(m: re.Match) -> str:
    """The field a label names: country, city, coordinates, lat or lon."""
    if m.group(1):
        return m.group(1).lower()
    label = m.group(2).lower()
    if label.startswith(("coord", "gps")) or not label.isalpha():  # also "lat/lon", "latitude and longitude"
        return "coordinates"
    return "lat" if label.startswith("lat") else "lon"


def _fields(text: str, start: int = 0, end: int | None = None) -> dict[str, str | None]:
    """Last value of each field in ``text[start:end]``, read from its last ``MAX_FIELD_CHARS``
    characters; a line may hold several fields. Names are cleaned (:func:`_clean`); coordinate
    values are kept raw for :func:`parse_coordinates`. Positions, never slices of the rest of a
    line: each character is scanned a bounded number of times."""
    end = len(text) if end is None else end
    found: dict[str, str | None] = {}
    for m in _FIELD.finditer(text, max(start, end - MAX_FIELD_CHARS), end):
        key, lo, hi = _key(m), m.start(3), m.end(3)  # the value group stops at the end of the line
        while True:
            nxt = _FIELD.search(text, lo, hi)  # "country: France, city: Paris" on one line
            stop = nxt.start() if nxt else hi
            value = text[lo : min(stop, lo + MAX_VALUE_CHARS)]
            found[key] = _clean(value) if key in ("country", "city") else value
            if nxt is None:
                break
            key, lo = _key(nxt), nxt.start(3)
    return found


# ---------------------------------------------------------------------- coordinates
_HEMISPHERE = r"(?:north|south|east|west|[nsew])(?![a-z])"
# ASCII digits only (as the scorer reads numbers), bounded: a float holds fewer
_DEGREES = r"(?:[0-9]{1,3}(?:\.[0-9]{1,15})?|\.[0-9]{1,15})"
# one number: [axis name] [hemisphere] [sign] degrees [°] [minutes ' [seconds "]] [hemisphere];
# every optional piece carries its own leading whitespace, so a component ends on its last mark
_COMPONENT = (
    r"(?:(lat(?:itude)?|lon(?:gitude)?|lng)\s*+[:=]?\s*+)?"
    rf"(?:({_HEMISPHERE})\s*+)?"
    r"([+-]?)\s*+"
    rf"({_DEGREES})"
    r"(?:\s*+(?:°|º|˚|deg(?:rees?)?(?![a-z])))?"
    r"(?:\s*+([0-9]{1,2}(?:\.[0-9]{1,15})?)\s*+['′’]"
    r"(?:\s*+([0-9]{1,2}(?:\.[0-9]{1,15})?)\s*+(?:\"|″|”|''))?)?"
    rf"(?:\s*+({_HEMISPHERE}))?"
)
_PAIR = re.compile(rf"{_COMPONENT}(?:\s*+[,;/]\s*+|\s++){_COMPONENT}", re.I)
_SINGLE = re.compile(_COMPONENT, re.I)
_HEDGE = re.compile(r"(?:~|≈|approx(?:imately|\.)?|about|around|roughly|ca\.)\s*+", re.I)
_LIMITS = {"lat": 90.0, "lon": 180.0}


def _component(groups: tuple) -> tuple[str | None, float] | None:
    """(axis or None, signed degrees) of one matched number; None when it contradicts itself
    (two hemispheres, a sign with a hemisphere, decimal degrees with minutes, minutes >= 60,
    a hemisphere of the other axis than the axis name)."""
    name, before, sign, degrees, minutes, seconds, after = groups
    if before and after:
        return None
    hemisphere = (before or after or "")[:1].lower()
    if hemisphere and sign:
        return None  # "-33.9 S": which one was meant?
    if minutes is not None and "." in degrees or seconds is not None and "." in minutes:
        return None
    if minutes is not None and float(minutes) >= 60 or seconds is not None and float(seconds) >= 60:
        return None
    value = float(degrees) + float(minutes or 0) / 60 + float(seconds or 0) / 3600
    if sign == "-" or hemisphere in ("s", "w"):
        value = -value
    axis = {"n": "lat", "s": "lat", "e": "lon", "w": "lon"}.get(hemisphere)
    named = None if name is None else ("lat" if name.lower().startswith("lat") else "lon")
    if axis and named and axis != named:
        return None
    return axis or named, value


def _strip_value(value: str) -> str:
    """A coordinate value without tags, markdown around it, hedges, a trailing remark in
    brackets, outer brackets and trailing punctuation; the Unicode minus read as ``-``."""
    v = _TAG.split(value[:MAX_VALUE_CHARS], maxsplit=1)[0]
    v = v.strip().strip("*_`").replace("\u2212", "-").strip()  # markdown around the value only: "1_9" is no 19
    m = _HEDGE.match(v)
    v = v[m.end():] if m else v
    if not v.startswith(("(", "[")):
        v = _drop_trailing_paren(v)
    v = v.strip().rstrip(".;,!").strip()
    if v[:1] in "([{" and v[-1:] in ")]}":
        v = v[1:-1].strip()
    return v


def _in_range(axis: str, value: float) -> bool:
    return math.isfinite(value) and abs(value) <= _LIMITS[axis]


def _read_coordinates(value: str | None) -> tuple[tuple[float, float] | None, bool]:
    """(coordinates or None, invalid) of a ``coordinates:`` value (module docstring)."""
    if not isinstance(value, str):
        return None, False
    v = _strip_value(value)
    if v.lower().replace("/", " ").strip() in _MISSING:
        return None, False
    m = _PAIR.fullmatch(v)
    if m is None:
        return None, True
    first, second = _component(m.groups()[:7]), _component(m.groups()[7:])
    if first is None or second is None or (first[0] is not None and first[0] == second[0]):
        return None, True
    if first[0] == "lon" or second[0] == "lat":
        first, second = second, first
    lat, lon = first[1], second[1]
    if not (_in_range("lat", lat) and _in_range("lon", lon)):
        return None, True
    return (lat, lon), False


def _read_axis(value: str | None, axis: str) -> tuple[float | None, bool]:
    """(degrees or None, invalid) of a ``latitude:`` / ``longitude:`` value."""
    if not isinstance(value, str):
        return None, False
    v = _strip_value(value)
    if v.lower().replace("/", " ").strip() in _MISSING:
        return None, False
    m = _SINGLE.fullmatch(v)
    read = _component(m.groups()) if m else None
    if read is None or read[0] not in (None, axis) or not _in_range(axis, read[1]):
        return None, True
    return read[1], False


def _coordinate_fields(found: dict[str, str | None]) -> tuple[tuple[float, float] | None, bool]:
    """The answer's coordinates from a ``coordinates:`` field, else ``latitude:`` + ``longitude:``."""
    if "coordinates" in found:
        return _read_coordinates(found["coordinates"])
    (lat, lat_bad), (lon, lon_bad) = _read_axis(found.get("lat"), "lat"), _read_axis(found.get("lon"), "lon")
    if lat is None and lon is None:
        return None, lat_bad or lon_bad
    if lat is None or lon is None:
        return None, True  # one half only
    return (lat, lon), False


def parse_coordinates(text: object) -> tuple[float, float] | None:
    """``(lat, lon)`` in degrees from a coordinate value, None when it does not read as one
    valid pair (module docstring); never raises.

    >>> parse_coordinates("48.8566, 2.3522"), parse_coordinates("33.87° S, 151.21° E")
    ((48.8566, 2.3522), (-33.87, 151.21))
    >>> parse_coordinates("2.35 E 48.85 N"), parse_coordinates("91, 0"), parse_coordinates("nan, 0")
    ((48.85, 2.35), None, None)
    """
    try:
        return _read_coordinates(text)[0] if isinstance(text, str) else None
    except Exception:  # noqa: BLE001 - same contract as parse_answer
        return None


def valid_coordinates(point: object) -> tuple[float, float] | None:
    """``point`` as ``(lat, lon)`` floats when it is a finite pair in range, else None.

    >>> valid_coordinates((48.85, 2.35)), valid_coordinates((91.0, 0.0)), valid_coordinates(None)
    ((48.85, 2.35), None, None)
    """
    try:
        lat, lon = (float(v) for v in point)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return (lat, lon) if _in_range("lat", lat) and _in_range("lon", lon) else None


def _last_block(tags: list[tuple[int, int, str]], n: int, opening: str, stops: tuple[str, ...]) -> tuple[int, int] | None:
    """(start, end) of the last ``opening(.*?)(stops|$)`` block, scanning left to right
    without overlap (what ``re.findall`` of that lazy pattern returns last), in O(len(tags))."""
    last = None
    k = 0
    while k < len(tags):
        if tags[k][2] != opening:
            k += 1
            continue
        j = k + 1
        while j < len(tags) and tags[j][2] not in stops:
            j += 1
        if j == len(tags):
            return tags[k][1], n
        last = (tags[k][1], tags[j][0])
        k = j + 1
    return last


def _well_formed(text: str) -> bool:
    """Each tag exactly once, in order, with only whitespace around and between the blocks."""
    if any(text.count(t) != 1 for t in _TAGS):
        return False
    a, b, c, d = (text.find(t) for t in _TAGS)
    if not a < b < c < d:
        return False
    gaps = (text[:a], text[b + len("</think>") : c], text[d + len("</answer>") :])
    return all(not g or g.isspace() for g in gaps)


def parse_answer(text: str) -> ParsedAnswer:
    """Parse a completion into (think, country, city, well_formed, coordinates,
    coordinates_invalid); never raises; O(len(text)).

    >>> parse_answer("<think>Red buses.</think><answer>country: UK\\ncity: London</answer>")[:4]
    ('Red buses.', 'UK', 'London', True)
    >>> parse_answer("<answer>country: France\\ncity: Paris\\ncoordinates: 48.85 N, 2.35 E</answer>").coordinates
    (48.85, 2.35)
    >>> parse_answer("**Country:** France.\\n**City:** Paris").country
    'France'
    """
    try:
        if not isinstance(text, str):
            return ParsedAnswer(None, None, None, False)
        well_formed = _well_formed(text)
        tags = [(m.start(), m.end(), m.group().lower()) for m in _TAG_ANY_CASE.finditer(text)]
        n = len(text)
        think_span = _last_block(tags, n, "<think>", ("</think>", "<answer>"))
        think = text[think_span[0] : think_span[1]].strip() if think_span else None
        answer_span = _last_block(tags, n, "<answer>", ("</answer>",))
        fields = _fields(text, *answer_span) if answer_span else {}
        has_coordinates = any(k in fields for k in _COORDINATE_KEYS)
        if "country" not in fields or "city" not in fields:
            outside = _fields(text)  # answer lines outside the tags
            for key in ("country", "city"):
                if key not in fields and key in outside:
                    fields[key] = outside[key]
            if not has_coordinates:
                fields.update({k: v for k, v in outside.items() if k in _COORDINATE_KEYS})
        elif not has_coordinates and answer_span[1] < n:  # a complete answer block: only lines after it
            fields.update({k: v for k, v in _fields(text, answer_span[1]).items() if k in _COORDINATE_KEYS})
        coordinates, invalid = _coordinate_fields(fields)
        return ParsedAnswer(think, fields.get("country"), fields.get("city"), well_formed, coordinates, invalid)
    except Exception:  # noqa: BLE001 - the parser is used inside reward loops and must not raise
        return ParsedAnswer(None, None, None, False)


def format_coordinates(lat: float, lon: float, decimals: int = 4) -> str:
    """``lat, lon`` in signed decimal degrees (4 decimals: ~11 m), as ``format_answer`` writes them.

    >>> format_coordinates(-22.906423, -43.18223)
    '-22.9064, -43.1822'
    """
    return f"{lat:.{decimals}f}, {lon:.{decimals}f}"


def format_answer(think: str, country: str, city: str, coordinates: tuple[float, float] | None = None) -> str:
    """The target completion string; with ``coordinates`` a third answer line ``coordinates: lat, lon``.

    >>> format_answer("Cues.", "France", "Paris")
    '<think>Cues.</think><answer>country: France\\ncity: Paris</answer>'
    >>> format_answer("Cues.", "France", "Paris", (48.85341, 2.3488))
    '<think>Cues.</think><answer>country: France\\ncity: Paris\\ncoordinates: 48.8534, 2.3488</answer>'
    """
    line = f"\ncoordinates: {format_coordinates(*coordinates)}" if coordinates is not None else ""
    return f"<think>{think}</think><answer>country: {country}\ncity: {city}{line}</answer>"
