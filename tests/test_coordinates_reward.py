"""The distance reward's two shapes, hand-worked, and R_geo scoring an answer's coordinates.

R_geo's distance is geodesic (WGS84): along the equator, 0.1 degree of longitude is
a * pi / 1800 = 6378.137 km * 0.00174533 = 11.131949 km.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from PIL import Image

from globe.prompts import GEO_COORDINATES_PROMPT, GEO_PROMPT
from globe.rewards.geo_accuracy import GeoAccuracyReward, distance_reward_value
from globe.sample import GeoSample

REPO = Path(__file__).resolve().parents[1]
EQUATOR_KM = 6378.137 * math.pi / 1800  # 0.1 degree of longitude on the equator: 11.131949 km


def test_exp_and_logistic_shapes_by_hand():
    tau = 25.0
    assert distance_reward_value(0.0, tau) == 1.0 and distance_reward_value(0.0, tau, "logistic") == 1.0
    # the half-reward distances: exp(-d / tau) = 1/2 at tau ln 2; 2 / (1 + e^(d / tau)) = 1/2 at tau ln 3
    assert distance_reward_value(tau * math.log(2), tau) == pytest.approx(0.5, abs=1e-12)
    assert distance_reward_value(tau * math.log(3), tau, "logistic") == pytest.approx(0.5, abs=1e-12)
    # at d = tau: 1/e = 0.367879 and 2 / (1 + e) = 0.537883
    assert distance_reward_value(tau, tau) == pytest.approx(0.367879441, abs=1e-9)
    assert distance_reward_value(tau, tau, "logistic") == pytest.approx(0.537882843, abs=1e-9)
    # at d = 4 tau: 2 / (1 + e^4) = 2 / 55.598150 = 0.035972420
    assert distance_reward_value(4 * tau, tau, "logistic") == pytest.approx(0.035972420, abs=1e-9)
    # far away: no overflow (e^(d / tau) would be e^(1e9)), the reward is 0
    assert distance_reward_value(1e9, 1.0, "logistic") == 0.0 and distance_reward_value(1e9, 1.0) == 0.0
    # unresolved, or a negative distance clamped to 0
    assert distance_reward_value(math.nan, tau, "logistic") == 0.0 and distance_reward_value(-5.0, tau, "logistic") == 1.0
    with pytest.raises(ValueError, match="shape"):
        distance_reward_value(1.0, tau, "gauss")
    with pytest.raises(ValueError, match="shape"):
        GeoAccuracyReward(mode="distance", shape="gauss")


def test_logistic_is_flatter_near_the_truth_and_decreasing():
    tau = 10.0
    ds = [0.0, 1.0, 5.0, 10.0, 25.0, 100.0, 1000.0]
    exp = [distance_reward_value(d, tau) for d in ds]
    logistic = [distance_reward_value(d, tau, "logistic") for d in ds]
    assert exp == sorted(exp, reverse=True) and logistic == sorted(logistic, reverse=True)
    assert all(lg > e for lg, e in zip(logistic[1:], exp[1:]))  # 2 / (1 + e^x) > e^-x for x > 0
    assert logistic[-1] == pytest.approx(2 * exp[-1], rel=1e-12)  # the same tail, doubled


def _sample(lat: float, lon: float, country: str = "", city: str = "") -> GeoSample:
    return GeoSample(key="k", image=Image.new("RGB", (8, 8)), lat=lat, lon=lon, country=country, city=city)


EQUATOR = _sample(0.0, 0.0)
MUNICH = _sample(48.13743, 11.57549, "Germany", "München")  # GeoNames' Munich: 0 km from "Munich"


def completion(*lines: str) -> str:
    return "<think>x</think><answer>" + "\n".join(lines) + "</answer>"


def test_distance_head_scores_the_answers_coordinates():
    tau = 10.0
    logistic = GeoAccuracyReward(mode="distance", shape="logistic", tau_km=tau, prefer_coordinates=True)
    exp = GeoAccuracyReward(mode="distance", tau_km=tau, prefer_coordinates=True)
    point = completion("coordinates: 0, 0.1")  # 11.131949 km east of the truth on the equator
    # 2 / (1 + e^1.1131949) = 2 / 4.0440684 = 0.4945515; e^-1.1131949 = 0.3285077
    assert logistic.score_one(point, EQUATOR) == pytest.approx(2 / (1 + math.exp(EQUATOR_KM / tau)), rel=1e-6)
    assert logistic.score_one(point, EQUATOR) == pytest.approx(0.4945515, abs=1e-6)
    assert exp.score_one(point, EQUATOR) == pytest.approx(0.3285077, abs=1e-6)
    # no (valid) coordinates: the geocoded names, here 0 km
    for text in (completion("country: Germany", "city: Munich"),
                 completion("country: Germany", "city: Munich", "coordinates: 91, 11")):
        assert logistic.score_one(text, MUNICH) == pytest.approx(1.0)
    # coordinates beat the names when both are given
    near = completion("country: Germany", "city: Munich", "coordinates: 48.13743, 11.67549")  # 0.1 deg of lon east
    assert 0.5 < logistic.score_one(near, MUNICH) < 1.0
    # neither: 0
    assert logistic.score_many(["no answer", completion("coordinates: far away")], [EQUATOR, EQUATOR]) == [0.0, 0.0]


def test_without_the_option_coordinates_are_ignored():
    head = GeoAccuracyReward(mode="distance", shape="logistic", tau_km=10.0)  # prefer_coordinates off: the paper
    assert head.score_one(completion("coordinates: 0, 0.1"), EQUATOR) == 0.0
    near = completion("country: Germany", "city: Munich", "coordinates: 48.13743, 11.67549")
    assert head.score_one(near, MUNICH) == pytest.approx(1.0)  # the names' 0 km


def test_names_head_judges_a_coordinates_only_answer_by_its_place():
    on = GeoAccuracyReward(alpha=0.8, prefer_coordinates=True)
    off = GeoAccuracyReward(alpha=0.8)
    at_munich = completion("coordinates: 48.13743, 11.57549")
    in_paris = completion("coordinates: 48.85341, 2.3488")
    assert on.score_many([at_munich, in_paris], [MUNICH, MUNICH]) == [1.0, 0.0]  # country + city / wrong country
    assert off.score_one(at_munich, MUNICH) == 0.0
    # a written country decides, whatever the point: country right, no city, point elsewhere -> 0.2
    assert on.score_one(completion("country: Germany", "coordinates: 48.85341, 2.3488"), MUNICH) == pytest.approx(0.2)


def test_the_coordinates_reward_config():
    config = yaml.safe_load((REPO / "configs/reward/coordinates.yaml").read_text())["model"]["init_args"]
    assert config["prompt"] == GEO_COORDINATES_PROMPT != GEO_PROMPT  # verbatim: the YAML can't import the constant
    heads = {h["init_args"]["name"]: h["init_args"] for h in config["rewards"]}
    assert heads["coords"] == {"name": "coords", "mode": "distance", "shape": "logistic", "tau_km": 25.0,
                               "prefer_coordinates": True}
    assert heads["geo"]["prefer_coordinates"] is True
    assert set(config["reward_weights"]) == set(heads)
    coords = GeoAccuracyReward(**heads["coords"])
    assert coords.score_one(completion("coordinates: 0, 0.1"), EQUATOR) == pytest.approx(
        2 / (1 + math.exp(EQUATOR_KM / 25.0)), rel=1e-6)


def test_the_coordinates_prompt_asks_for_the_line_the_parser_reads():
    assert "coordinates: [latitude], [longitude]" in GEO_COORDINATES_PROMPT
    assert GEO_COORDINATES_PROMPT.startswith(GEO_PROMPT.split("\n")[0])
    assert "coordinates" not in GEO_PROMPT  # the paper's prompt is unchanged
