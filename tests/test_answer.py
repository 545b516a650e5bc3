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


# ---------------------------------------------------------------------- untrusted, long outputs
def test_field_lines_are_read_from_a_bounded_window():
    from globe.answer import MAX_FIELD_CHARS

    # a field line further than MAX_FIELD_CHARS from the end is outside the window: not read
    far = "country: France\n" + "x" * (MAX_FIELD_CHARS + 10) + "\ncity: Paris"
    assert (parse_answer(far).country, parse_answer(far).city) == (None, "Paris")
    # the window starts mid-text, but a label is still a whole word ("ethnicity" is not "city")
    cut = "ethnicity: Z\n" * (MAX_FIELD_CHARS // 13 + 50)
    assert parse_answer(cut).city is None
    near = "x" * (3 * MAX_FIELD_CHARS) + "\ncountry: France\ncity: Paris"
    assert (parse_answer(near).country, parse_answer(near).city) == ("France", "Paris")


def test_a_field_value_is_read_from_its_first_max_value_chars():
    from globe.answer import MAX_VALUE_CHARS

    p = parse_answer("<answer>country: " + "a" * 10_000 + " (guess)\ncity: Lima</answer>")
    assert p.country == "a" * MAX_VALUE_CHARS and p.city == "Lima"


def test_well_formed_and_think_are_exact_on_long_texts():
    think = "snow " * 40_000  # 200 KB of reasoning
    p = parse_answer(f"<think>{think}</think>\n<answer>country: Norway\ncity: Tromsø</answer>\n")
    assert p == ParsedAnswer(think.strip(), "Norway", "Tromsø", True)
    assert parse_answer(f"<think>{think}</think> x <answer>y</answer>").well_formed is False


# shapes that made the old patterns backtrack (quadratic or worse), >= 100 KB each; where the
# label must be read it lies in the last MAX_FIELD_CHARS characters, after 100 KB of filler
ADVERSARIAL = {
    "spaces after a label": ("country" + " " * 120_000, None, None),
    "ideographic spaces": ("city" + "\u3000" * 120_000 + "x", None, None),
    "spaces in the window": ("x\n" * 50_000 + "country" + " " * 16_000, None, None),
    "spaces and tabs, then a dash": ("x" * 100_000 + "\ncountry" + " \t" * 8_000 + "- Chile", "Chile", None),
    "markdown after a label": ("x\n" * 50_000 + "country" + "*_`" * 5_000, None, None),
    "repeated labels on one line": ("country:" * 15_000, None, None),
    "repeated fields on one line": ("country: Peru, " * 8_000 + "city: Lima", "Peru", "Lima"),
    "repeated lines": ("country: France, city: Paris\n" * 5_000, "France", "Paris"),
    "open parentheses": ("x" * 100_000 + "<answer>country: " + "(" * 16_000 + "</answer>", "(" * 256, None),
    "trailing punctuation": ("x" * 100_000 + "\ncountry: Fiji" + " ." * 8_000, "Fiji", None),
    "nested think tags": ("<think>" * 20_000, None, None),
    "nested answer tags": ("<answer>" * 20_000 + "country: Oman", "Oman", None),
    "interleaved tags": ("<think><answer>" * 10_000 + "city: Doha", None, "Doha"),
    "unclosed tag names": ("x" * 100_000 + "\ncity: " + "<a" * 8_000, None, "<a" * 128),  # not a tag: kept
    "dashes": ("country -" * 15_000, None, None),
    "long answer far after whitespace": (" " * 120_000 + "country: Mali\ncity: Bamako", "Mali", "Bamako"),
}


@pytest.mark.timeout(120)  # safety net only: every shape parses in milliseconds
def test_adversarial_inputs_parse():
    for name, (text, country, city) in ADVERSARIAL.items():
        assert len(text) >= 100_000, name
        p = parse_answer(text)
        assert (p.country, p.city) == (country, city), name
