"""Read a teacher's answer to :data:`globe.distill.prompt.DISTILL_PROMPT`; never raises.

What is read, each part on its own (a missing part is named in ``problems``, the others stay
usable):

* ``localizable: yes|no`` (also ``true|false``, ``Localizability - Yes``, markdown around it);
* ``score: X`` with X in [0, 1]; ``85%``, ``8/10`` and ``85/100`` are read as fractions; a
  number above 1 without such a unit is ``bad_score`` (not guessed); a number glued to letters
  (``1e999``, ``0.8x``) is not read;
* the reasoning: the ``<think>`` text (:func:`globe.answer.parse_answer`);
* the answer's ``country`` and ``city`` (:func:`globe.answer.parse_answer`: tags optional,
  the last value wins, placeholders such as ``unknown`` count as missing).

The judgement and the score are looked for outside the ``<think>`` block first (before it, then
after it), then anywhere, so a chain that muses "the score: 3 stars" does not override the
header line.

Bounded work on untrusted text: an output longer than ``max_chars`` is not parsed at all
(``too_long``); below that every pattern is possessive or anchored (no backtracking), and
:func:`globe.answer.parse_answer` is linear, so parsing is O(len(text)). Anything else that
goes wrong is reported as ``parse_error``, never raised.

Problems (counted per teacher in the report): ``not_text``, ``too_long``, ``no_judgement``,
``no_score``, ``bad_score``, ``no_reasoning``, ``no_country``, ``no_city``, ``parse_error``.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from globe.answer import format_answer, parse_answer

__all__ = ["MAX_OUTPUT_CHARS", "PROBLEMS", "TeacherReading", "parse_teacher_output"]

MAX_OUTPUT_CHARS = 32_768  # ~8k tokens: longer than any chain the prompt asks for
PROBLEMS = ("not_text", "too_long", "no_judgement", "no_score", "bad_score", "no_reasoning", "no_country",
            "no_city", "parse_error")

_SEP = r"[\s*_`]*+(?:[:：=?]|(?<=\s)[-–—])[\s*_`\"'\[(]*+"
_JUDGEMENT = re.compile(r"(?<!\w)locali[sz]ab(?:le|ility)" + _SEP + r"(yes|no|true|false)(?!\w)", re.I)
_SCORE = re.compile(
    r"(?<!\w)score" + _SEP + r"(\d++(?:\.\d++)?+|\.\d++)(?!\w)(?:\s*+(%|/\s*+(?:100|10|1)(?!\d)))?+", re.I)
_THINK_OPEN = re.compile(r"<think>", re.I)
_THINK_CLOSE = re.compile(r"</think>", re.I)


class TeacherReading(NamedTuple):
    """What could be read of one teacher output (``None`` / ``""``: not read)."""

    localizable: bool | None
    score: float | None
    reasoning: str
    country: str | None
    city: str | None
    problems: tuple[str, ...]

    @property
    def has_judgement(self) -> bool:
        """Both the yes/no judgement and the score were read."""
        return self.localizable is not None and self.score is not None

    @property
    def has_chain(self) -> bool:
        """A reasoning chain and a country were read (the chain can be kept)."""
        return bool(self.reasoning) and bool(self.country)

    def completion(self) -> str:
        """The chain as a target completion in the policy's format (``<think>..</think><answer>..``)."""
        return format_answer(self.reasoning, self.country or "", self.city or "")


def _regions(text: str) -> list[tuple[int, int]]:
    """Where to look for the header lines, in order: before <think>, after the last </think>, anywhere."""
    opening = _THINK_OPEN.search(text)
    closing = None
    for closing in _THINK_CLOSE.finditer(text):  # the last one (one linear pass)
        pass
    regions = []
    if opening is not None:
        regions.append((0, opening.start()))
    if closing is not None:
        regions.append((closing.end(), len(text)))
    regions.append((0, len(text)))
    return regions


def _search(pattern: re.Pattern, text: str, regions: list[tuple[int, int]]) -> re.Match | None:
    for start, end in regions:
        m = pattern.search(text, start, end)
        if m is not None:
            return m
    return None


def _score(m: re.Match) -> float | None:
    """The score of a match in [0, 1], or None when it is out of range."""
    value = float(m.group(1))
    unit = (m.group(2) or "").replace(" ", "")
    if unit == "%" or unit == "/100":
        value /= 100.0
    elif unit == "/10":
        value /= 10.0
    return value if math.isfinite(value) and 0.0 <= value <= 1.0 else None


def parse_teacher_output(text: object, max_chars: int = MAX_OUTPUT_CHARS) -> TeacherReading:
    """Read one teacher output (see the module docstring); never raises.

    >>> r = parse_teacher_output("localizable: yes\\nscore: 0.8\\n<think>Red buses.</think><answer>country: UK\\ncity: London</answer>")
    >>> r.localizable, r.score, r.reasoning, r.country, r.city, r.problems
    (True, 0.8, 'Red buses.', 'UK', 'London', ())
    >>> parse_teacher_output("**Localizable:** No. Score: 15%").problems
    ('no_reasoning', 'no_country', 'no_city')
    >>> parse_teacher_output(None).problems, parse_teacher_output("x" * 40_000).problems
    (('not_text',), ('too_long',))
    """
    if not isinstance(text, str):
        return TeacherReading(None, None, "", None, None, ("not_text",))
    if len(text) > max_chars:
        return TeacherReading(None, None, "", None, None, ("too_long",))
    try:
        problems: list[str] = []
        regions = _regions(text)
        judgement = _search(_JUDGEMENT, text, regions)
        localizable = judgement.group(1).lower() in ("yes", "true") if judgement else None
        if localizable is None:
            problems.append("no_judgement")
        found = _search(_SCORE, text, regions)
        score = _score(found) if found else None
        if found is None:
            problems.append("no_score")
        elif score is None:
            problems.append("bad_score")
        answer = parse_answer(text)
        reasoning = answer.think or ""
        for missing, name in ((not reasoning, "no_reasoning"), (not answer.country, "no_country"),
                              (not answer.city, "no_city")):
            if missing:
                problems.append(name)
        return TeacherReading(localizable, score, reasoning, answer.country, answer.city, tuple(problems))
    except Exception:  # noqa: BLE001 - one hostile output must not stop a distillation run
        return TeacherReading(None, None, "", None, None, ("parse_error",))
