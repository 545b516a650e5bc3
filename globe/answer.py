"""Parse and format the policy's answer: ``<think>...</think><answer>country: X\ncity: Y</answer>``.

:func:`parse_answer` never raises (``None`` and non-strings give an empty answer) and accepts
what models really write:

* tags in any case, missing ``</answer>`` / ``</think>``, or no tags at all;
* ``country: X`` / ``Country - X`` / ``**Country:** X`` / ``- city = Y`` / ``country：X``, extra
  lines, trailing punctuation and quotes, bracketed values (``[France]``), a trailing
  parenthetical (``Paris (likely)``), both fields on one line (``country: France, city: Paris``);
* fields are read inside the last ``<answer>`` block first, then anywhere in the text (answer
  lines written outside the tags); when a field appears several times the *last* one wins;
* placeholder values (``unknown``, ``n/a``, ``none``, ``-``) count as missing.

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

import re
from functools import lru_cache
from typing import NamedTuple

__all__ = ["ParsedAnswer", "parse_answer", "format_answer", "MAX_FIELD_CHARS", "MAX_VALUE_CHARS"]

MAX_FIELD_CHARS = 16_384  # field lines are read from this many characters at the end
MAX_VALUE_CHARS = 256  # a field value is read from this many characters (a place name is short)


class ParsedAnswer(NamedTuple):
    think: str | None  # text inside the last <think> block (stripped), None if no block
    country: str | None
    city: str | None
    well_formed: bool


_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_TAG_ANY_CASE = re.compile(r"</?(?:think|answer)>", re.I)  # fixed length: one linear pass
# a field label (a whole word; markdown before it is left out of the match), then whitespace
# and markdown (possessive: never given back), then a separator (":", "=", or a dash right
# after whitespace) and the rest of the line
_FIELD = re.compile(
    r"(?<!\w)(country|city)[\s*_`]*+(?:[:：=]|(?<=\s)[-–—])\s*+(.*)",
    re.I,
)
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


def _fields(text: str, start: int = 0, end: int | None = None) -> dict[str, str | None]:
    """Last value of each field in ``text[start:end]``, read from its last ``MAX_FIELD_CHARS``
    characters; a line may hold both fields. Positions, never slices of the rest of a line:
    each character is scanned a bounded number of times."""
    end = len(text) if end is None else end
    found: dict[str, str | None] = {}
    for m in _FIELD.finditer(text, max(start, end - MAX_FIELD_CHARS), end):
        label, lo, hi = m.group(1), m.start(2), m.end(2)  # the value group stops at the end of the line
        while True:
            nxt = _FIELD.search(text, lo, hi)  # "country: France, city: Paris" on one line
            stop = nxt.start() if nxt else hi
            found[label.lower()] = _clean(text[lo : min(stop, lo + MAX_VALUE_CHARS)])
            if nxt is None:
                break
            label, lo = nxt.group(1), nxt.start(2)
    return found


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
    """Parse a completion into (think, country, city, well_formed); never raises; O(len(text)).

    >>> parse_answer("<think>Red buses.</think><answer>country: UK\\ncity: London</answer>")
    ParsedAnswer(think='Red buses.', country='UK', city='London', well_formed=True)
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
        if "country" not in fields or "city" not in fields:
            outside = _fields(text)  # answer lines outside the tags
            for key in ("country", "city"):
                if key not in fields and key in outside:
                    fields[key] = outside[key]
        return ParsedAnswer(think, fields.get("country"), fields.get("city"), well_formed)
    except Exception:  # noqa: BLE001 - the parser is used inside reward loops and must not raise
        return ParsedAnswer(None, None, None, False)


def format_answer(think: str, country: str, city: str) -> str:
    """The target completion string.

    >>> format_answer("Cues.", "France", "Paris")
    '<think>Cues.</think><answer>country: France\\ncity: Paris</answer>'
    """
    return f"<think>{think}</think><answer>country: {country}\ncity: {city}</answer>"
