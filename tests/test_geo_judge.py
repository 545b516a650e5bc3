"""GeoJudge: the one country / city rule, hand-worked, and the three callers agreeing on it.

The callers are the policy's evaluation (``globe.evaluation``: validation / test metrics and the
predictions CSV), ``python -m globe.score`` and the R_geo reward head. Before the judge they used
three rules, so the same predictions could get three different country accuracies.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import time

import pytest
from PIL import Image

from globe.evaluation import PREDICTION_COLUMNS, evaluate_completions, metric_inputs
from globe.geo.judge import MAX_NAME_CHARS, GeoJudge, GeoTruth, shared_gazetteer
from globe.metrics import GeoAccuracy, threshold_key
from globe.rewards.base import RewardBatch
from globe.rewards.geo_accuracy import GeoAccuracyReward, accuracy_reward_value
from globe.sample import GeoSample
from globe.score import score_predictions

MUNICH = GeoTruth("Germany", "München", 48.13743, 11.57549)  # GeoNames' Munich: 0 km from "Munich"
PARIS_TX = GeoTruth("United States", "Paris", 33.66094, -95.55551)  # GeoNames' Paris, Texas
PARIS_FR = (48.8566, 2.3522)


@pytest.fixture(scope="module")
def judge() -> GeoJudge:
    return GeoJudge(shared_gazetteer())


def answer(country: str | None, city: str | None) -> str:
    lines = [f"{k}: {v}" for k, v in (("country", country), ("city", city)) if v is not None]
    return "<think>Cues.</think><answer>" + "\n".join(lines) + "</answer>"


# ---------------------------------------------------------------------- the rule, by hand
# (answer country, answer city, truth) -> (predicted code, country_correct, city_correct)
CASES = {
    "right country and city (alias, alternate name)": (("Germany", "Munich"), MUNICH, ("DE", True, True)),
    "right country, wrong city": (("Germany", "Hamburg"), MUNICH, ("DE", True, False)),
    "right city name, wrong country": (("Austria", "Munich"), MUNICH, ("AT", False, False)),
    "no country line: the geocoded city's country": ((None, "Munich"), MUNICH, ("DE", True, True)),
    "unknown country name: the geocoded city's country": (("Bavaria", "Munich"), MUNICH, ("DE", True, True)),
    "country by its comma part": (("Bavaria, Germany", "München"), MUNICH, ("DE", True, True)),
    # "Paris" is a city in France and in Texas: the country decides which one the answer names
    "homonym in the named country": (("USA", "Paris"), PARIS_TX, ("US", True, True)),
    "homonym in the other country": (("France", "Paris"), PARIS_TX, ("FR", False, False)),
    "homonym without a country: the largest": ((None, "Paris"), PARIS_TX, ("FR", False, False)),
    "unknown country and city": (("Atlantis", "Zzyzxqq"), MUNICH, (None, False, False)),
    "known country, unknown city: country only": (("Germany", "Zzyzxqq"), MUNICH, ("DE", True, False)),
    "country only": (("Germany", None), MUNICH, ("DE", True, False)),
    "empty answer": ((None, None), MUNICH, (None, False, False)),
    "empty strings": (("", "  "), MUNICH, (None, False, False)),
    "unknown true country: not judged": (("France", "Paris"), GeoTruth("Atlantis", "Poseidonia", 10.0, -30.0), ("FR", None, None)),
    "no true names: not judged": (("France", "Paris"), GeoTruth("", "", *PARIS_FR), ("FR", None, None)),
    "no true city: city not judged": (("France", "Lyon"), GeoTruth("France", "", *PARIS_FR), ("FR", True, None)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_rule_by_hand(judge, case):
    (country, city), truth, (code, country_ok, city_ok) = CASES[case]
    v = judge.judge(country, city, truth)
    assert (v.pred_country, v.country_correct, v.city_correct) == (code, country_ok, city_ok)


def test_place_and_distance(judge):
    v = judge.judge("Germany", "Munich", MUNICH)
    assert v.place.name == "Munich" and v.place.level == "city" and v.distance_km == pytest.approx(0.0, abs=1e-6)
    capital = judge.judge("Germany", "Zzyzxqq", MUNICH)  # the country's capital, Berlin: ~504 km
    assert capital.place.level == "country" and 495 < capital.distance_km < 510
    lost = judge.judge("Atlantis", "Zzyzxqq", MUNICH)
    assert lost.place is None and math.isnan(lost.pred_lat) and math.isnan(lost.distance_km)
    no_coords = judge.judge("Germany", "Munich", GeoTruth("Germany", "Munich"))
    assert no_coords.country_correct is True and math.isnan(no_coords.distance_km)


def test_truth_from_coordinates():
    judge = GeoJudge(shared_gazetteer(), truth_from_coordinates=True)
    paris = GeoTruth("", "", *PARIS_FR)
    assert (judge.judge("France", "Paris", paris).city_correct, judge.judge("France", "Lyon", paris).city_correct) == (True, False)
    # an unknown country name is replaced by the coordinates' country; the named city is kept
    v = judge.judge("France", "Paris", GeoTruth("Atlantis", "Paris", *PARIS_FR))
    assert (v.true_country, v.country_correct, v.city_correct) == ("FR", True, True)
    # the reverse-geocoded city is used only inside the true country (here the label says Spain)
    v = judge.judge("Spain", "Madrid", GeoTruth("Spain", "", *PARIS_FR))
    assert (v.true_city, v.country_correct, v.city_correct) == ("", True, None)
    # nothing to reverse-geocode: not judged
    assert judge.judge("France", "Paris", GeoTruth("", "", math.nan, math.nan)).country_correct is None


HOSTILE = [
    "x" * 1_000_000,
    "Paris, " * 200_000,  # 1.4 M characters of comma parts
    "," * 500_000,
    "\x00Paris\x00",
    "\ud800\udfff lone surrogates \udcff",
    "Z\u0351\u0352\u0353\u0354" * 50_000,  # combining marks
    "\u202eParis\u202c",  # bidi override
    "Москва", "東京", "",
    "New York\u2028City",
    "Roseville, " + "CA, " * 100_000,
    12345, None, b"Paris", ["Paris"],
]


def test_hostile_names_never_raise_and_cost_bounded_work(judge):
    t0 = time.perf_counter()
    answers = [(a, b) for a in HOSTILE for b in HOSTILE[:6]] + [(a, a) for a in HOSTILE]
    verdicts = judge.judge_many(answers, [MUNICH] * len(answers))
    assert len(verdicts) == len(answers)
    assert all(v.country_correct in (True, False) and v.city_correct in (True, False, None) for v in verdicts)
    assert time.perf_counter() - t0 < 30  # ~100 answers of up to 1.4 M characters each: bounded, not quadratic
    # only the first MAX_NAME_CHARS characters are read
    long = "Munich" + " " * MAX_NAME_CHARS + "Hamburg"
    assert judge.judge("Germany", long, MUNICH).city_correct is True
    # hostile truth names are judged the same way
    for truth_name in HOSTILE:
        judge.judge("Germany", "Munich", GeoTruth(truth_name, truth_name, 48.1, 11.6))


# ---------------------------------------------------------------------- the callers agree
IMAGE = Image.new("RGB", (8, 8))
# one sample per case above the policy could meet, with the completion it is judged on
AGREEMENT = [
    ("munich", MUNICH, answer("Germany", "Munich")),
    ("hamburg", MUNICH, answer("Germany", "Hamburg")),
    ("austria", MUNICH, answer("Austria", "Munich")),  # the scorer used to count this city as right
    ("city-only", MUNICH, answer(None, "Munich")),  # the scorer used to count this country as wrong
    ("bavaria", MUNICH, answer("Bavaria", "München")),
    ("paris-tx", PARIS_TX, answer("USA", "Paris")),
    ("paris-fr", PARIS_TX, answer("France", "Paris")),
    ("nothing", MUNICH, "I cannot tell."),
    ("atlantis", GeoTruth("Atlantis", "Poseidonia", 10.0, -30.0), answer("Portugal", "Lisbon")),
    ("im2gps", GeoTruth("", "", *PARIS_FR), answer("France", "Paris")),  # the scorer used to count it as a miss
    ("no-city", GeoTruth("France", "", *PARIS_FR), answer("France", "Lyon")),
    # long (under the CSV reader's 131,072-character field limit) and with lone surrogates
    ("hostile", MUNICH, "<answer>country: " + "Germany, " * 5_000 + "\ncity: " + "\ud800" * 1_000 + "</answer>"),
    ("tokyo", GeoTruth("Japan", "Tokyo", 35.6895, 139.6917), answer("Japan", "Osaka")),
]


def _samples():
    return [GeoSample(key=k, image=IMAGE, lat=t.lat, lon=t.lon, country=t.country, city=t.city) for k, t, _ in AGREEMENT]


def _write_csv(path, fieldnames, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.slow  # one fresh interpreter runs python -m globe.score (imports torch, loads the gazetteer)
def test_evaluation_and_the_scorer_agree_on_a_written_predictions_csv(tmp_path):
    samples, texts = _samples(), [t for _, _, t in AGREEMENT]
    predictions = evaluate_completions(shared_gazetteer(), samples, texts)
    metric = GeoAccuracy()
    metric.update(**metric_inputs(predictions))  # what validation_step / test_step do
    logged = metric.compute()
    # the predictions CSV as the policy's test stage writes it, and the samples' ground truth
    pred_csv = _write_csv(tmp_path / "predictions.csv", PREDICTION_COLUMNS, [p.row() for p in predictions])
    gt_csv = _write_csv(
        tmp_path / "gt.csv", ["IMG_ID", "LAT", "LON", "country", "city"],
        [{"IMG_ID": s.key, "LAT": s.lat, "LON": s.lon, "country": s.country, "city": s.city} for s in samples],
    )
    out = tmp_path / "scores.json"
    proc = subprocess.run(
        [sys.executable, "-m", "globe.score", "--predictions", str(pred_csv), "--ground-truth", str(gt_csv), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    scored = json.loads(out.read_text())
    # hand count: judged countries are all but atlantis and im2gps (11): right for munich,
    # hamburg, city-only, bavaria, paris-tx, no-city, tokyo (7; the hostile answer's country line
    # lies before the parser's 16k-character window, so it names none); judged cities also leave
    # out no-city (10): right for munich, city-only, bavaria, paris-tx (4)
    assert logged["country_acc"].item() == pytest.approx(7 / 11) and logged["city_acc"].item() == pytest.approx(4 / 10)
    assert (scored["n_country_judged"], scored["n_city_judged"]) == (11, 10)
    for key in ["country_acc", "city_acc", "median_km", *(threshold_key(t) for t in metric.thresholds_km)]:
        assert scored[key] == logged[key].item(), key
    assert scored["n_unresolved"] == logged["n_unresolved"].item() and scored["n"] == logged["n"].item() == len(samples)
    # the same CSV scored in-process from its text column agrees too
    with open(pred_csv, newline="", encoding="utf-8") as f:
        rows = [{"IMG_ID": r["IMG_ID"], "pred_text": r["pred_text"]} for r in csv.DictReader(f)]
    with open(gt_csv, newline="", encoding="utf-8") as f:
        gt = list(csv.DictReader(f))
    from_text = score_predictions(rows, gt, shared_gazetteer())
    for key in ("country_acc", "city_acc", "acc@25km", "acc@2500km"):
        assert from_text[key] == pytest.approx(scored[key], abs=1e-12), key


@pytest.mark.parametrize("names_from_coordinates", [False, True])
def test_reward_tiers_are_the_judges_decisions(names_from_coordinates):
    head = GeoAccuracyReward(alpha=0.8, names_from_coordinates=names_from_coordinates)
    samples, texts = _samples(), [t for _, _, t in AGREEMENT]
    rewards = head.score(RewardBatch([IMAGE] * len(texts), [""] * len(texts), texts, samples)).tolist()
    judge = GeoJudge(shared_gazetteer(), truth_from_coordinates=names_from_coordinates)
    for (key, truth, _), text, reward, prediction in zip(
        AGREEMENT, texts, rewards, evaluate_completions(judge, samples, texts)
    ):
        tier = accuracy_reward_value(prediction.country_ok == 1.0, prediction.city_ok == 1.0, 0.8)
        assert reward == pytest.approx(tier), key
        assert head.score_one(text, GeoSample(key, IMAGE, truth.lat, truth.lon, truth.country, truth.city)) == pytest.approx(tier)
    by_key = dict(zip((k for k, _, _ in AGREEMENT), rewards))
    assert [by_key[k] for k in ("munich", "hamburg", "austria", "city-only", "paris-fr", "nothing")] == pytest.approx(
        [1.0, 0.2, 0.0, 1.0, 0.0, 0.0]
    )
    # the coordinates-only sample: no credit unless the truth is taken from its coordinates
    assert by_key["im2gps"] == (1.0 if names_from_coordinates else 0.0)


def test_the_policy_and_the_reward_heads_share_one_gazetteer(tmp_path):
    from globe.policy import GRPOPolicy

    head = GeoAccuracyReward()
    policy = GRPOPolicy(model_path=str(tmp_path / "never-loaded"), rewards=[head])  # the model loads in configure_model
    assert policy.gazetteer is head.gazetteer is shared_gazetteer()
