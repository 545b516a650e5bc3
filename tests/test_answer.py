"""Answer parsing: the format the policy is asked for, and what models write instead."""

import pytest

from globe.answer import ParsedAnswer, format_answer, parse_answer


def test_round_trip():
    text = format_answer("Red double-decker buses.", "United Kingdom", "London")
    assert text == "<think>Red double-decker buses.</think><answer>country: United Kingdom\ncity: London</answer>"
    assert parse_answer(text) == ParsedAnswer("Red double-decker buses.", "United Kingdom", "London", True)


@pytest.mark.parametrize(
    "text, country, city",
    [
        ("<THINK>x</THINK><Answer>Country: France\nCITY: Paris</Answer>", "France", "Paris"),
        ("<think>x</think><answer>country: France.\ncity: Paris!</answer>", "France", "Paris"),
        ("Country - France\nCity - Paris", "France", "Paris"),
        ("Country – France\nCity — Paris", "France", "Paris"),
        ("<answer>**Country:** France\n**City:** Paris</answer>", "France", "Paris"),
        ("**Country**: France\n**City**: Paris", "France", "Paris"),
        ("<answer>\nSure!\n- country: France\n- city: Paris\nHope this helps.\n</answer>", "France", "Paris"),
        ("<answer>country: France, city: Paris</answer>", "France", "Paris"),
        ("<answer>country: [France]\ncity: \"Paris\" (most likely)</answer>", "France", "Paris"),
        ("<think>no tags closed... country: Japan\ncity: Tokyo", "Japan", "Tokyo"),
        # answer lines outside the tags
        ("<think>x</think>\ncountry: Peru\ncity: Cusco", "Peru", "Cusco"),
        # repeated answers: the last one wins
        ("<answer>country: France\ncity: Paris\ncountry: Germany\ncity: Berlin</answer>", "Germany", "Berlin"),
        ("<answer>country: France\ncity: Paris</answer><answer>country: Italy\ncity: Rome</answer>", "Italy", "Rome"),
        # prose in <think> does not override the <answer> block
        ("<think>The country: Spain? No.</think><answer>country: Portugal\ncity: Porto</answer>", "Portugal", "Porto"),
        ("<answer>country: Vatican City\ncity: Vatican City</answer>", "Vatican City", "Vatican City"),
        ("<answer>country: Côte d'Ivoire\ncity: Abidjan</answer>", "Côte d'Ivoire", "Abidjan"),
        ("country-level cues everywhere.\ncountry: Chile\ncity: Santiago", "Chile", "Santiago"),
        ("<answer>country: unknown\ncity: N/A</answer>", None, None),
        ("<answer>country: Brazil</answer>", "Brazil", None),
        ("I cannot tell.", None, None),
    ],
)
def test_parse_variants(text, country, city):
    p = parse_answer(text)
    assert (p.country, p.city) == (country, city)


@pytest.mark.parametrize("bad", [None, 42, b"bytes", ["list"], "", "<answer>", "</think></answer><<<"])
def test_never_raises(bad):
    p = parse_answer(bad)
    assert isinstance(p, ParsedAnswer)
    assert p.well_formed is False


@pytest.mark.parametrize(
    "text, ok",
    [
        ("<think>a</think><answer>country: X\ncity: Y</answer>", True),
        ("  \n<think>a</think>\n\n<answer>b</answer>\n", True),
        ("<think></think><answer></answer>", True),
        ("<think>a</think><answer>b</answer> trailing", False),
        ("leading <think>a</think><answer>b</answer>", False),
        ("<think>a</think>between<answer>b</answer>", False),
        ("<THINK>a</THINK><ANSWER>b</ANSWER>", False),
        ("<think>a</think><answer>b", False),
        ("<answer>b</answer>", False),
        ("<think>a<think>b</think><answer>c</answer>", False),
        ("<think>a</think><answer>b</answer><answer>c</answer>", False),
    ],
)
def test_well_formed(text, ok):
    assert parse_answer(text).well_formed is ok


def test_think_text():
    assert parse_answer("<think> cues </think><answer>x</answer>").think == "cues"
    assert parse_answer("country: X").think is None
