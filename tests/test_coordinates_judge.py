"""Coordinates preferred over names: the judge, the policy's evaluation path and the scorer,
with hand-worked distances.

Haversine on the sphere of R = 6371.0088 km (``great_circle_km``): 0.1 degree of latitude is
R * pi / 1800 = 11.11951 km, 1 degree 111.19508 km, 5 degrees 555.97542 km, anywhere.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from globe.evaluation import evaluate_completions, metric_inputs
from globe.geo.judge import GeoJudge, GeoTruth, shared_gazetteer
from globe.metrics import GeoAccuracy
from globe.sample import GeoSample
from globe.score import score_predictions

REPO = Path(__file__).resolve().parents[1]
KM_PER_DEGREE = 6371.0088 * math.pi / 180  # 111.19508
MUNICH = GeoTruth("Germany", "München", 48.13743, 11.57549)  # GeoNames' Munich: 0 km from "Munich"


@pytest.fixture(scope="module")
def gazetteer():
    return shared_gazetteer()


@pytest.fixture(scope="module")
def judge(gazetteer) -> GeoJudge:
    return GeoJudge(gazetteer, prefer_coordinates=True)


def north_of_munich(degrees: float) -> tuple[float, float]:
    return MUNICH.lat + degrees, MUNICH.lon


# ---------------------------------------------------------------------- the judge
def test_the_distance_is_from_the_answer_point(judge, gazetteer):
    v = judge.judge("Germany", "Munich", MUNICH, north_of_munich(0.1))
    assert v.distance_km == pytest.approx(0.1 * KM_PER_DEGREE, rel=1e-9)  # 11.11951 km, not the names' 0 km
    assert v.coordinates == north_of_munich(0.1) and (v.pred_lat, v.pred_lon) == north_of_munich(0.1)
    assert v.level == "coordinates" and v.place.name == "Munich"  # the names' place is kept beside it
    assert (v.country_correct, v.city_correct) == (True, True)  # names judged from the names
    # without the option the same call ignores the point: the paper's rule
    off = GeoJudge(gazetteer).judge("Germany", "Munich", MUNICH, north_of_munich(0.1))
    assert off.distance_km == pytest.approx(0.0, abs=1e-6) and off.coordinates is None and off.level == "city"


@pytest.mark.parametrize("bad", [(95.0, 11.0), (48.0, 181.0), (math.nan, 11.0), (48.0, math.inf), None])
def test_invalid_points_fall_back_to_the_names(judge, bad):
    v = judge.judge("Germany", "Munich", MUNICH, bad)
    assert v.coordinates is None and v.level == "city" and v.distance_km == pytest.approx(0.0, abs=1e-6)


def test_a_coordinates_only_answer_is_judged_by_the_place_it_lies_in(judge):
    v = judge.judge(None, None, MUNICH, (MUNICH.lat, MUNICH.lon))
    assert v.coordinate_place.name == "Munich" and v.pred_country == "DE"
    assert (v.country_correct, v.city_correct) == (True, True)  # "Munich" = "München"
    assert v.place is None and v.distance_km == pytest.approx(0.0, abs=1e-6)
    paris = judge.judge("", "", MUNICH, (48.85341, 2.3488))
    assert paris.coordinate_place.name == "Paris" and paris.pred_country == "FR"
    assert (paris.country_correct, paris.city_correct) == (False, False)
    assert 680 < paris.distance_km < 690  # Paris - Munich


def test_a_point_never_overrides_a_written_name(judge):
    # "France" with a point in Munich: the country is France (wrong), the distance the point's (0)
    v = judge.judge("France", "Paris", MUNICH, (MUNICH.lat, MUNICH.lon))
    assert v.pred_country == "FR" and (v.country_correct, v.city_correct) == (False, False)
    assert v.coordinate_place is None and v.distance_km == pytest.approx(0.0, abs=1e-6)
    # a named country and no city: the city is the point's when it lies in that country
    v = judge.judge("Germany", None, MUNICH, north_of_munich(0.001))
    assert v.coordinate_place.name == "Munich" and (v.country_correct, v.city_correct) == (True, True)
    # ... and not when the point is elsewhere
    v = judge.judge("Germany", None, MUNICH, (48.85341, 2.3488))
    assert (v.country_correct, v.city_correct) == (True, False)


def test_untrusted_truth_and_mismatched_lengths(judge):
    v = judge.judge(None, None, GeoTruth("", "", 0.0, 30.0), (0.1, 30.0))  # no true names: not judged
    assert v.country_correct is None and v.distance_km == pytest.approx(0.1 * KM_PER_DEGREE, rel=1e-9)
    with pytest.raises(ValueError, match="2 coordinates for 1 answers"):
        judge.judge_many([("Germany", "Munich")], [MUNICH], [(1.0, 2.0), (3.0, 4.0)])


# ---------------------------------------------------------------------- the policy's evaluation path
def _sample(truth: GeoTruth) -> GeoSample:
    return GeoSample(key="munich", image=Image.new("RGB", (8, 8)), lat=truth.lat, lon=truth.lon,
                     country=truth.country, city=truth.city)


def test_evaluate_completions_prefers_coordinates_when_asked(gazetteer):
    lat, lon = north_of_munich(0.1)
    text = f"<think>x</think><answer>country: Germany\ncity: Munich\ncoordinates: {lat}, {lon}</answer>"
    on, = evaluate_completions(gazetteer, [_sample(MUNICH)], [text], prefer_coordinates=True)
    assert (on.pred_level, on.pred_lat, on.pred_lon) == ("coordinates", lat, lon)
    assert (on.country_ok, on.city_ok) == (1.0, 1.0)
    off, = evaluate_completions(gazetteer, [_sample(MUNICH)], [text])  # default: the paper's names
    assert off.pred_level == "city" and off.pred_lat == pytest.approx(MUNICH.lat)
    # a judge built with the option carries it; the argument overrides it either way
    same, = evaluate_completions(GeoJudge(gazetteer, prefer_coordinates=True), [_sample(MUNICH)], [text])
    assert same.pred_level == "coordinates"
    forced, = evaluate_completions(GeoJudge(gazetteer, prefer_coordinates=True), [_sample(MUNICH)], [text], False)
    assert forced.pred_level == "city"
    metric = GeoAccuracy()
    metric.update(**metric_inputs([on]))
    res = metric.compute()  # 11.1 km: a miss at 1 km, a hit at 25 km
    assert float(res["acc@1km"]) == 0.0 and float(res["acc@25km"]) == 1.0
    assert float(res["median_km"]) == pytest.approx(0.1 * KM_PER_DEGREE, rel=1e-9)


# ---------------------------------------------------------------------- the scorer
GROUND_TRUTH = [  # IMG_ID, LAT, LON, country, city
    {"IMG_ID": "a", "LAT": "0.0", "LON": "30.0", "country": "", "city": ""},
    {"IMG_ID": "b", "LAT": "10.0", "LON": "20.0", "country": "", "city": ""},
    {"IMG_ID": "c", "LAT": "48.13743", "LON": "11.57549", "country": "Germany", "city": "München"},
    {"IMG_ID": "d", "LAT": "-20.0", "LON": "40.0", "country": "", "city": ""},
    {"IMG_ID": "e", "LAT": "48.13743", "LON": "11.57549", "country": "Germany", "city": "München"},
]
PREDICTIONS = [  # the distance from each, with the option
    {"IMG_ID": "a", "pred_text": "<answer>coordinates: 0.1, 30</answer>"},  # 0.1 deg: 11.11951 km
    {"IMG_ID": "b", "pred_text": "<answer>coordinates: 9 N, 20 E</answer>"},  # 1 deg: 111.19508 km
    # invalid coordinates: the names, 0 km
    {"IMG_ID": "c", "pred_text": "<answer>country: Germany\ncity: Munich\ncoordinates: 100, 11</answer>"},
    {"IMG_ID": "d", "pred_text": "<answer>coordinates: 25° S, 40° E</answer>"},  # 5 deg: 555.97542 km
    # coordinates only, in Munich: 0 km, and the country and city of the place they lie in
    {"IMG_ID": "e", "pred_text": "<answer>coordinates: 48.13743, 11.57549</answer>"},
]


def test_scorer_prefers_the_texts_coordinates(gazetteer):
    on = score_predictions(PREDICTIONS, GROUND_TRUTH, gazetteer, prefer_coordinates=True)
    # distances 11.12, 111.20, 0, 555.98, 0 -> sorted 0, 0, 11.12, 111.20, 555.98
    assert [on[f"acc@{t}km"] for t in (1, 25, 200, 750, 2500)] == [0.4, 0.6, 0.8, 1.0, 1.0]
    assert on["median_km"] == pytest.approx(0.1 * KM_PER_DEGREE, rel=1e-9)
    assert (on["n_from_coordinates"], on["n_invalid_answer_coords"], on["n_unparsed"], on["n_unresolved"]) == (4, 1, 0, 0)
    assert on["n_city_level"] == 1  # row c, placed by its names
    assert (on["country_acc"], on["city_acc"], on["n_country_judged"]) == (1.0, 1.0, 2)  # c by names, e by its point

    off = score_predictions(PREDICTIONS, GROUND_TRUTH, gazetteer)  # names only: a, b, d, e unresolved
    assert [off[f"acc@{t}km"] for t in (1, 25, 200, 750, 2500)] == [0.2] * 5
    assert math.isinf(off["median_km"]) and off["n_unparsed"] == 4 and "n_from_coordinates" not in off
    assert off["country_acc"] == 0.5  # e names nothing: judged wrong


def test_scorer_prefers_text_coordinates_over_pred_lat_lon(gazetteer):
    # the policy's CSV shape: pred_lat,pred_lon from the geocoded names, the raw completion beside them
    lat, lon = north_of_munich(1.0)
    rows = [{"IMG_ID": "c", "pred_lat": "48.13743", "pred_lon": "11.57549", "pred_country": "Germany", "pred_city": "Munich",
             "pred_text": f"<answer>country: Germany\ncity: Munich\ncoordinates: {lat}, {lon}</answer>"}]
    gt = [{"IMG_ID": "c", "LAT": "48.13743", "LON": "11.57549"}]
    assert score_predictions(rows, gt, gazetteer)["median_km"] == pytest.approx(0.0, abs=1e-6)
    on = score_predictions(rows, gt, gazetteer, prefer_coordinates=True)
    assert on["median_km"] == pytest.approx(KM_PER_DEGREE, rel=1e-9) and on["n_from_coordinates"] == 1
    assert on["form"] == "latlon" and (on["acc@25km"], on["acc@200km"]) == (0.0, 1.0)


def test_score_command_line_prefer_coordinates(tmp_path):
    import csv

    def write(path, rows):
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    write(tmp_path / "p.csv", PREDICTIONS)
    write(tmp_path / "g.csv", GROUND_TRUTH)
    cmd = [sys.executable, "-m", "globe.score", "--predictions", str(tmp_path / "p.csv"), "--ground-truth", str(tmp_path / "g.csv")]
    proc = subprocess.run([*cmd, "--prefer-coordinates", "--out", str(tmp_path / "on.json")], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "n_from_coordinates" in proc.stdout
    on = json.loads((tmp_path / "on.json").read_text())
    assert on["acc@25km"] == 0.6 and on["n_from_coordinates"] == 4 and on["n_invalid_answer_coords"] == 1
    proc = subprocess.run([*cmd, "--out", str(tmp_path / "off.json")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    off = json.loads((tmp_path / "off.json").read_text())
    assert off["acc@25km"] == 0.2 and off["median_km"] is None  # infinite median -> null
