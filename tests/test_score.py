"""The scorer: three prediction forms, misses never dropped, clear CLI errors."""

import csv
import json
import math
import subprocess
import sys

import pytest

from globe.geo.gazetteer import Gazetteer
from globe.score import ScoreInputError, main, score_predictions

GT = [  # IMG_ID, LAT, LON, country, city
    ("paris.jpg", 48.8566, 2.3522, "France", "Paris"),
    ("munich.jpg", 48.1374, 11.5755, "Germany", "München"),
    ("tokyo.jpg", 35.6762, 139.6503, "Japan", "Tokyo"),
    ("sydney.jpg", -33.8688, 151.2093, "Australia", "Sydney"),
    ("nowhere.jpg", 0.0, -30.0, "", ""),  # mid-Atlantic, no prediction
]
# predictions: Paris right; Munich via an alias; Tokyo answered as Osaka (~400 km);
# Sydney unparseable text
PRED_LATLON = [("paris.jpg", 48.85341, 2.3488), ("munich.jpg", 48.13743, 11.57549), ("tokyo.jpg", 34.69374, 135.50218), ("sydney.jpg", "", "")]
PRED_NAMES = [("paris.jpg", "Paris", "France"), ("munich.jpg", "München", "DE"), ("tokyo.jpg", "Osaka", "Japan"), ("sydney.jpg", "", "")]
PRED_TEXT = [
    ("paris.jpg", "<think>Haussmann facades.</think><answer>country: France\ncity: Paris</answer>"),
    ("munich.jpg", "**Country:** Germany\n**City:** Munich."),
    ("tokyo.jpg", "<think>..</think><answer>country: Japan\ncity: Osaka</answer>"),
    ("sydney.jpg", "I am not sure where this is."),
]


@pytest.fixture(scope="module")
def gaz() -> Gazetteer:
    return Gazetteer.load()


def _gt_rows(with_names=False):
    rows = [{"IMG_ID": i, "AUTHOR": "x", "LAT": str(la), "LON": str(lo)} for i, la, lo, _, _ in GT]
    if with_names:
        for r, g in zip(rows, GT):
            r["country"], r["city"] = g[3], g[4]
    return rows


def _rows(header, data):
    return [dict(zip(header, map(str, d))) for d in data]


def _write(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _check(res):
    # hits: Paris (~0.3 km), Munich (0 km); Osaka is ~400 km from Tokyo; 2 misses everywhere
    assert res["acc@1km"] == pytest.approx(2 / 5)
    assert res["acc@25km"] == pytest.approx(2 / 5)
    assert res["acc@200km"] == pytest.approx(2 / 5)
    assert res["acc@750km"] == pytest.approx(3 / 5)
    assert res["acc@2500km"] == pytest.approx(3 / 5)
    assert res["n"] == 5 and res["n_predictions"] == 4
    assert res["n_unresolved"] == 1 and res["n_missing"] == 1
    assert 390 < res["median_km"] < 410  # sorted: ~0, ~0, ~400, inf, inf


def test_three_forms_agree(gaz):
    r1 = score_predictions(_rows(["IMG_ID", "pred_lat", "pred_lon"], PRED_LATLON), _gt_rows(), gaz)
    r2 = score_predictions(_rows(["IMG_ID", "pred_city", "pred_country"], PRED_NAMES), _gt_rows(), gaz)
    r3 = score_predictions(_rows(["IMG_ID", "pred_text"], PRED_TEXT), _gt_rows(), gaz)
    for r, form in ((r1, "latlon"), (r2, "names"), (r3, "text")):
        _check(r)
        assert r["form"] == form
    assert r3["n_unparsed"] == 1 and r3["n_city_level"] == 3
    assert r2["median_km"] == pytest.approx(r3["median_km"])


def test_country_and_city_accuracy_from_gt_names(gaz):
    r = score_predictions(_rows(["IMG_ID", "pred_text"], PRED_TEXT), _gt_rows(with_names=True), gaz)
    assert r["country_acc"] == pytest.approx(3 / 5)  # France, Germany, Japan
    assert r["city_acc"] == pytest.approx(2 / 5)  # Paris, Munich == München
    assert "country_acc" not in score_predictions(_rows(["IMG_ID", "pred_text"], PRED_TEXT), _gt_rows(), gaz)


def test_no_predictions_all_missing(gaz):
    r = score_predictions([], _gt_rows(), gaz)
    assert r["n_missing"] == 5 and r["acc@2500km"] == 0.0 and math.isinf(r["median_km"])


@pytest.mark.parametrize(
    "preds, gt, message",
    [
        ([{"IMG_ID": "zzz.jpg", "pred_lat": "1", "pred_lon": "2"}], None, "not in the ground truth"),
        ([{"IMG_ID": "paris.jpg", "pred_lat": "1"}], None, "one of"),
        ([{"id": "paris.jpg", "pred_text": "x"}], None, "IMG_ID"),
        ([{"IMG_ID": "paris.jpg", "pred_text": "x"}] * 2, None, "duplicate"),
        ([], [{"IMG_ID": "a", "LAT": "1"}], "LON"),
    ],
)
def test_input_errors(gaz, preds, gt, message):
    with pytest.raises(ScoreInputError, match=message):
        score_predictions(preds, gt if gt is not None else _gt_rows(), gaz)


@pytest.mark.slow  # a fresh interpreter imports torch and loads the gazetteer
def test_cli_subprocess_all_forms(tmp_path):
    gt = _write(tmp_path / "gt.csv", _gt_rows())
    for name, header, data in (
        ("latlon", ["IMG_ID", "pred_lat", "pred_lon"], PRED_LATLON),
        ("names", ["IMG_ID", "pred_city", "pred_country"], PRED_NAMES),
        ("text", ["IMG_ID", "pred_text"], PRED_TEXT),
    ):
        pred = _write(tmp_path / f"{name}.csv", _rows(header, data))
        out = tmp_path / f"{name}.json"
        if name == "text":  # once as a real subprocess, the others in-process
            proc = subprocess.run(
                [sys.executable, "-m", "globe.score", "--predictions", str(pred), "--ground-truth", str(gt), "--out", str(out)],
                capture_output=True, text=True, timeout=120,
            )
            assert proc.returncode == 0, proc.stderr
            assert "acc@25km" in proc.stdout and "n_missing" in proc.stdout
        else:
            assert main(["--predictions", str(pred), "--ground-truth", str(gt), "--out", str(out)]) == 0
        res = json.loads(out.read_text())
        for key in ("acc@1km", "acc@25km", "acc@200km", "acc@750km", "acc@2500km", "median_km", "n", "n_unresolved"):
            assert key in res
        _check(res)


def test_cli_errors(tmp_path, capsys):
    gt = _write(tmp_path / "gt.csv", _gt_rows())
    bad_gt = _write(tmp_path / "bad_gt.csv", [{"IMG_ID": "a", "LATITUDE": "1", "LON": "2"}])
    unknown = _write(tmp_path / "unknown.csv", [{"IMG_ID": "ghost.jpg", "pred_lat": "1", "pred_lon": "2"}])
    no_cols = _write(tmp_path / "nocols.csv", [{"IMG_ID": "paris.jpg", "guess": "Paris"}])
    cases = [
        (["--predictions", str(tmp_path / "absent.csv"), "--ground-truth", str(gt)], "file not found"),
        (["--predictions", str(unknown), "--ground-truth", str(bad_gt)], "lacks column"),
        (["--predictions", str(no_cols), "--ground-truth", str(gt)], "pred_text"),
        (["--predictions", str(unknown), "--ground-truth", str(gt)], "ghost.jpg"),
    ]
    for argv, msg in cases:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "error:" in err and msg in err and "Traceback" not in err
