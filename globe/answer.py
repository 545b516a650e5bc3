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
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

__all__ = ["ParsedAnswer", "parse_answer", "format_answer"]


class ParsedAnswer(NamedTuple):
    think: str | None  # text inside the last <think> block (stripped), None if no block
    country: str | None
    city: str | None
    well_formed: bool


# with each of the four tags present exactly once, this full match is the format check
_WELL_FORMED = re.compile(r"\s*<think>.*</think>\s*<answer>.*</answer>\s*", re.S)
_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_THINK = re.compile(r"<think>(.*?)(?:</think>|<answer>|$)", re.S | re.I)
_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.S | re.I)
# a field label (not inside a word; markdown before it is left out of the match), optional
# markdown after it, then a separator (":", "=", or a spaced dash) and the rest of the line
_FIELD = re.compile(
    r"(?<![\w])(country|city)\s*[*_`]*\s*(?:[:：=]|\s[-–—]\s?)\s*(.*)",
    re.I,
)
_MISSING = {"", "unknown", "n a", "na", "none", "not sure", "unclear", "null", "?", "-", "tbd"}


_TAG = re.compile(r"</?\w+>")
_MARKDOWN = re.compile(r"[*_`]+")
_TRAILING_PAREN = re.compile(r"\s*\([^)]*\)\s*$")
_TRAILING_PUNCT = re.compile(r"[\s.,;:!?]+$")


@lru_cache(maxsize=1 << 14)
def _clean(value: str) -> str | None:
    """A field value without tags, markdown, quotes, brackets, trailing punctuation."""
    v = _TAG.split(value, maxsplit=1)[0]  # stop at any tag
    v = _MARKDOWN.sub("", v)
    v = _TRAILING_PAREN.sub("", v)
    v = v.strip().strip("[]{}\"'“”‘’«»").strip()
    v = _TRAILING_PUNCT.sub("", v).strip().strip("[]\"'“”‘’").strip()
    if v.lower().replace("/", " ").strip() in _MISSING:
        return None
    return v


def _fields(text: str) -> dict[str, str | None]:
    """Last value of each field in ``text``; a line may hold both fields."""
    found: dict[str, str | None] = {}
    for m in _FIELD.finditer(text):  # the value group stops at the end of the line
        while m is not None:
            tail = m.group(2)
            nxt = _FIELD.search(tail)  # "country: France, city: Paris" on one line
            found[m.group(1).lower()] = _clean(tail[: nxt.start()] if nxt else tail)
            m = nxt
    return found


def parse_answer(text: str) -> ParsedAnswer:
    """Parse a completion into (think, country, city, well_formed); never raises.

    >>> parse_answer("<think>Red buses.</think><answer>country: UK\\ncity: London</answer>")
    ParsedAnswer(think='Red buses.', country='UK', city='London', well_formed=True)
    >>> parse_answer("**Country:** France.\\n**City:** Paris").country
    'France'
    """
    try:
        if not isinstance(text, str):
            return ParsedAnswer(None, None, None, False)
        well_formed = all(text.count(t) == 1 for t in _TAGS) and _WELL_FORMED.fullmatch(text) is not None
        thinks = _THINK.findall(text)
        think = thinks[-1].strip() if thinks else None
        answers = _ANSWER.findall(text)
        fields = _fields(answers[-1]) if answers else {}
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
