"""GeoAccuracyReward (R_geo): hand-worked values, aliases, alternate names, distance mode."""

from __future__ import annotations

import math

import pytest
from geographiclib.geodesic import Geodesic
from PIL import Image

from data_modules.sample import GeoSample
from globe.rewards.base import RewardBatch
from globe.rewards.geo_accuracy import GeoAccuracyReward, paper_match

IMAGE = Image.new("RGB", (8, 8))
MUNICH = (48.13743, 11.57549)  # GeoNames coordinates of Munich, what the gazetteer geocodes "Munich" to


def answer(country: str, city: str) -> str:
    return f"<think>Beer gardens and Bavarian roofs.</think><answer>country: {country}\ncity: {city}</answer>"


def sample(country="DE", city="München", lat=MUNICH[0], lon=MUNICH[1]) -> GeoSample:
    return GeoSample(key="k", image=IMAGE, lat=lat, lon=lon, country=country, city=city)


def scores(head, completions, samples) -> list[float]:
    n = len(completions)
    if not isinstance(samples, list):
        samples = [samples] * n
    return head.score(RewardBatch([IMAGE] * n, [""] * n, completions, samples)).tolist()


@pytest.fixture(scope="module")
def head() -> GeoAccuracyReward:
    return GeoAccuracyReward()  # alpha 0.8, names, gazetteer matching


def test_paper_values_with_alpha_0_8(head):
    got = scores(head, [answer("Germany", "Munich"), answer("Germany", "Hamburg"), answer("Austria", "Munich")], sample())
    # city + country = 0.8 * 1 + 0.2 = 1.0; country only = 0.2; wrong country = 0 whatever the city
    assert got == pytest.approx([1.0, 0.2, 0.0])


@pytest.mark.parametrize("alpha, country_only", [(0.5, 0.5), (1.0, 0.0), (0.0, 1.0)])
def test_alpha_sets_the_country_only_reward(alpha, country_only):
    got = scores(GeoAccuracyReward(alpha=alpha), [answer("Germany", "Hamburg"), answer("Germany", "Munich")], sample())
    assert got == pytest.approx([country_only, 1.0])


@pytest.mark.parametrize(
    "pred, truth",
    [
        (("Germany", "Munich"), ("DE", "München")),  # alias code + GeoNames alternate name
        (("Deutschland", "Muenchen"), ("Germany", "Munich")),  # native country name, transliteration
        (("USA", "New York City"), ("United States", "New York")),  # alias + trailing "city"
        (("U.S.", "NYC"), ("United States of America", "New York")),
        (("Italy", "Florence"), ("IT", "Firenze")),
        (("Japan", "Kyōto"), ("JP", "Kyoto")),  # accents folded
    ],
)
def test_aliases_and_alternate_names_match(head, pred, truth):
    assert scores(head, [answer(*pred)], sample(*truth)) == [1.0]


def test_paper_matching_reproduces_the_substring_test():
    paper = GeoAccuracyReward(match="paper")
    got = scores(
        paper,
        [answer("Germany", "Munich"), answer("germany", "munich"), answer("Germany", "München"), answer("USA", "New York")],
        [sample("Germany", "Munich"), sample("Germany", "Munich"), sample("Germany", "Munich"), sample("United States", "York")],
    )
    # exact and case-insensitive -> 1; "München" vs "Munich" -> country only 0.2;
    # "USA" vs "United States" is no substring -> 0 (the gazetteer matching gets 1.0 here, see above)
    assert got == pytest.approx([1.0, 1.0, 0.2, 0.0])
    assert paper_match("Paris", "Paris, France") is False  # 5 / 13 < 0.7
    assert paper_match("New York City", "New York") is False  # 8 / 13 = 0.62 < 0.7 (the gazetteer matches it)


def test_paper_ratio_threshold_is_inclusive_at_0_7():
    assert paper_match("abcdefg", "abcdefghij") is True  # 7 / 10 = 0.7
    assert paper_match("abcdef", "abcdefghij") is False  # 6 / 10
    assert paper_match("", "x") is False and paper_match(None, "x") is False


def test_truth_names_from_coordinates_when_the_sample_has_none(head):
    paris = sample(country="", city="", lat=48.85341, lon=2.3488)  # IM2GPS3K-style: coordinates only
    assert scores(head, [answer("France", "Paris"), answer("France", "Lyon")], paris) == pytest.approx([1.0, 0.2])
    no_fallback = GeoAccuracyReward(names_from_coordinates=False)
    assert scores(no_fallback, [answer("France", "Paris")], paris) == [0.0]


def test_distance_mode_is_exp_minus_d_over_tau():
    head = GeoAccuracyReward(mode="distance", tau_km=500.0)
    north_500km = Geodesic.WGS84.Direct(*MUNICH, 0.0, 500_000.0)  # a point 500 km due north of Munich
    far = sample(lat=north_500km["lat2"], lon=north_500km["lon2"])
    got = scores(head, [answer("Germany", "Munich"), answer("Germany", "Munich")], [sample(), far])
    assert got == pytest.approx([1.0, math.exp(-1.0)], abs=1e-4)  # d = 0 -> 1; d = tau -> 1/e
    # unknown city falls back to the country's capital (Berlin, ~504 km from Munich)
    berlin = scores(head, [answer("Germany", "Atlantis")], sample())[0]
    assert berlin == pytest.approx(math.exp(-504.4 / 500.0), abs=0.01)


@pytest.mark.parametrize("mode", ["names", "distance"])
@pytest.mark.parametrize("match", ["gazetteer", "paper"])
def test_malformed_completions_score_zero(mode, match):
    head = GeoAccuracyReward(mode=mode, match=match)
    bad = [None, "", "garbage !!! ###", "<think>no answer yet", "<answer>country: </answer>", "<answer>city: Zzyzxqq</answer>", 42]
    assert scores(head, bad, sample()) == [0.0] * len(bad)


def test_require_well_formed():
    text = "country: Germany\ncity: Munich"  # answer lines without tags
    assert scores(GeoAccuracyReward(), [text], sample()) == [1.0]
    assert scores(GeoAccuracyReward(require_well_formed=True), [text], sample()) == [0.0]


def test_bad_config_is_rejected():
    with pytest.raises(ValueError):
        GeoAccuracyReward(alpha=1.5)
    with pytest.raises(ValueError):
        GeoAccuracyReward(mode="km")
