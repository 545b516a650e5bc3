"""The teacher-output parser: what teachers write, and hostile strings (never raises, bounded work)."""

from __future__ import annotations

import time

import pytest

from globe.distill.parse import MAX_OUTPUT_CHARS, PROBLEMS, parse_teacher_output
from globe.distill.prompt import DISTILL_PROMPT

GOOD = ("localizable: yes\nscore: 0.85\n<think>Left-hand traffic, red double-decker buses, a Tube sign.</think>\n"
        "<answer>country: United Kingdom\ncity: London</answer>")


def test_the_prompt_asks_for_what_the_parser_reads():
    for part in ("localizable: [yes or no]", "score:", "<think>", "</think>", "<answer>country:", "city:", "</answer>"):
        assert part in DISTILL_PROMPT
    r = parse_teacher_output(GOOD)
    assert (r.localizable, r.score, r.country, r.city, r.problems) == (True, 0.85, "United Kingdom", "London", ())
    assert r.has_judgement and r.has_chain
    assert r.completion() == ("<think>Left-hand traffic, red double-decker buses, a Tube sign.</think>"
                              "<answer>country: United Kingdom\ncity: London</answer>")


@pytest.mark.parametrize("header, localizable, score", [
    ("localizable: yes\nscore: 0.85", True, 0.85),
    ("Localizable: No\nScore: 0.1", False, 0.1),
    ("**Localizable:** Yes\n**Score:** 0.7", True, 0.7),
    ("Localizability - yes\nScore = .9", True, 0.9),
    ("localisable: true\nscore: 85%", True, 0.85),
    ("localizable: false\nscore: 2/10", False, 0.2),
    ("localizable: yes\nscore: 73/100", True, 0.73),
    ("localizable：yes\nscore：1", True, 1.0),  # full-width colons
    ("LOCALIZABLE: [yes]\nSCORE: (0.6)", True, 0.6),
])
def test_judgement_and_score_variants(header, localizable, score):
    r = parse_teacher_output(header + "\n<think>x</think><answer>country: Peru\ncity: Lima</answer>")
    assert (r.localizable, r.score) == (localizable, pytest.approx(score))
    assert r.problems == ()


def test_header_wins_over_the_chain_and_missing_parts_are_named():
    text = ("localizable: yes\nscore: 0.8\n<think>The hotel had a score: 3 stars; is the sign localizable: no idea."
            "</think><answer>country: Japan\ncity: Kyoto</answer>")
    r = parse_teacher_output(text)
    assert (r.localizable, r.score) == (True, 0.8)  # read outside the <think> block first
    after = parse_teacher_output("<think>x</think><answer>country: Japan\ncity: Kyoto</answer>\nlocalizable: no\nscore: 0.3")
    assert (after.localizable, after.score) == (False, 0.3)
    assert parse_teacher_output("score: 7\n<think>x</think><answer>country: Japan</answer>").problems == (
        "no_judgement", "bad_score", "no_city")  # 7 without a unit is not guessed
    assert parse_teacher_output("localizable: yes").problems == ("no_score", "no_reasoning", "no_country", "no_city")


HOSTILE = {
    "empty": "",
    "whitespace": " \n\t" * 1000,
    "null bytes": "\x00" * 5000 + "localizable: yes\x00score: 0.5",
    "lone surrogates": "\ud800\udfff localizable: yes score: 0.9 <think>\udc80</think><answer>country: \ud83d</answer>",
    "control characters": "".join(chr(i) for i in range(32)) * 200,
    "nested tags": "<think>" * 3000 + "</think>" * 3000 + "<answer>" * 3000,
    "unclosed think": "localizable: yes\nscore: 0.9\n<think>" + "trees " * 4000,
    "many labels": "localizable: localizable: localizable: " * 800,
    "many scores": "score: " * 4000 + "0.5",
    "long digits": "score: " + "9" * 20_000,
    "long decimal": "localizable: yes\nscore: 0." + "1" * 20_000,
    "markdown storm": "*" * 30_000 + "localizable: yes",
    "separators": "localizable" + " -" * 10_000,
    "right-to-left and emoji": "localizable: نعم score: ٠٫٨ 🌍🌍🌍" * 300,
    "huge over the cap": "localizable: yes\nscore: 0.9\n" + "x" * (MAX_OUTPUT_CHARS + 1),
}


@pytest.mark.timeout(120)  # safety net only: each one parses in milliseconds
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_strings_never_raise_and_stay_fast(name):
    text = HOSTILE[name]
    start = time.perf_counter()
    r = parse_teacher_output(text)
    assert time.perf_counter() - start < 2.0, name
    assert set(r.problems) <= set(PROBLEMS)
    assert r.score is None or 0.0 <= r.score <= 1.0
    if len(text) > MAX_OUTPUT_CHARS:
        assert r.problems == ("too_long",)  # not parsed at all: bounded work


@pytest.mark.parametrize("value", [None, 3, 2.5, b"localizable: yes", ["localizable: yes"], object()])
def test_non_strings(value):
    assert parse_teacher_output(value).problems == ("not_text",)


def test_huge_numbers_are_bad_scores_not_errors():
    assert parse_teacher_output("score: " + "9" * 400).problems[:2] == ("no_judgement", "bad_score")
    glued = parse_teacher_output("score: 1e999")  # not "1" followed by junk
    assert glued.score is None and "no_score" in glued.problems
