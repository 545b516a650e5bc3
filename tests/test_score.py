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
    # nowhere.jpg has no true names: not judged (left out, as in the policy's country_acc);
    # the unparseable Sydney answer is judged and wrong
    assert r["n_country_judged"] == 4 and r["n_city_judged"] == 4
    assert r["country_acc"] == pytest.approx(3 / 4)  # France, Germany, Japan
    assert r["city_acc"] == pytest.approx(2 / 4)  # Paris, Munich == München
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


# ---------------------------------------------------------------------- untrusted CSV input
def _write_text(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "text, line",
    [
        ("IMG_ID,pred_lat,pred_lon\nparis.jpg,48.85,2.35\nmunich.jpg,48.1,11.5,extra\n", 3),  # one field too many
        ("IMG_ID,pred_lat,pred_lon\nparis.jpg,48.85,2.35\n\ntokyo.jpg,35.6\n", 4),  # one too few (after a blank line)
        ('IMG_ID,pred_text\nparis.jpg,"two\nlines"\nmunich.jpg,"a",b,c\n', 4),  # a quoted newline counts as a line
    ],
)
def test_rows_with_a_wrong_field_count_are_an_error_naming_the_line(tmp_path, capsys, text, line):
    from globe.score import read_csv

    pred = _write_text(tmp_path / "pred.csv", text)
    with pytest.raises(ScoreInputError, match=f"pred.csv: line {line}: "):
        read_csv(pred)
    gt = _write(tmp_path / "gt.csv", _gt_rows())
    with pytest.raises(SystemExit) as e:
        main(["--predictions", str(pred), "--ground-truth", str(gt)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"line {line}" in err and "Traceback" not in err


def test_undecodable_csv_is_an_error_naming_the_file(tmp_path, capsys):
    pred = tmp_path / "pred.csv"
    pred.write_bytes(b"IMG_ID,pred_lat,pred_lon\n\xff\xfe.jpg,1,2\n")
    gt = _write(tmp_path / "gt.csv", _gt_rows())
    with pytest.raises(SystemExit):
        main(["--predictions", str(pred), "--ground-truth", str(gt)])
    err = capsys.readouterr().err
    assert "pred.csv" in err and "UTF-8" in err and "Traceback" not in err


@pytest.mark.parametrize("ok", ["48.85", "-0.5", "+1e2", ".5", "5.", " 7 ", "-180", "1E-3"])
def test_parse_decimal_accepts_plain_ascii_numbers(ok):
    from globe.score import parse_decimal

    assert parse_decimal(ok) == float(ok)


@pytest.mark.parametrize(
    "bad",
    ["1_9.07", "٤٨.٨٥", "１２", "nan", "inf", "-Infinity", "1e", "", " ", "--1", "0x10", "1.2.3", "1,5", None, "4\u00a0"],
)
def test_parse_decimal_rejects_what_float_would_stretch_to_read(bad):
    from globe.score import parse_decimal

    assert math.isnan(parse_decimal(bad))


def test_invalid_predicted_coordinates_are_unresolved_and_reported(gaz):
    preds = [
        ("paris.jpg", "48.85341", "-357.6512"),  # Paris's longitude minus 360: outside [-180, 180]
        ("munich.jpg", "48.13743", "1_1.57549"),  # float() reads 11.57549 (Munich)
        ("tokyo.jpg", "٣٥.٦٧٦٢", "139.6503"),  # Arabic-Indic digits: float() reads 35.6762 (Tokyo)
        ("sydney.jpg", "-33.8688", "300"),
        ("nowhere.jpg", " 0.0 ", "-30"),  # surrounding spaces are fine: the one hit
    ]
    r = score_predictions(_rows(["IMG_ID", "pred_lat", "pred_lon"], preds), _gt_rows(), gaz)
    assert r["acc@1km"] == pytest.approx(1 / 5) and r["acc@2500km"] == pytest.approx(1 / 5)
    assert r["n_unresolved"] == 4 and r["n_invalid_coords"] == 4 and r["n_missing"] == 0
    # blank coordinates are unresolved but not invalid; the poles and the date line are valid
    edge = [("paris.jpg", "90", "180"), ("munich.jpg", "-90", "-180"), ("tokyo.jpg", "", "")]
    r = score_predictions(_rows(["IMG_ID", "pred_lat", "pred_lon"], edge), _gt_rows(), gaz)
    assert r["n_unresolved"] == 1 and r["n_invalid_coords"] == 0 and r["n_missing"] == 2
    from globe.score import format_table

    assert "n_invalid_coords" in format_table(r)


@pytest.mark.parametrize(
    "lat, lon, message",
    [("95", "2.35", "outside"), ("48.8", "181", "outside"), ("-90.5", "0", "outside"), ("1_9", "2", "non-numeric"), ("", "2", "non-numeric")],
)
def test_ground_truth_coordinates_are_checked(gaz, lat, lon, message):
    gt = _gt_rows()
    gt[1]["LAT"], gt[1]["LON"] = lat, lon
    with pytest.raises(ScoreInputError, match=f"{message}.*munich.jpg"):
        score_predictions([], gt, gaz)


@pytest.mark.parametrize("bad", ["inf", "nan", "0", "-25", "-inf", "abc"])
def test_thresholds_must_be_positive_and_finite(tmp_path, capsys, gaz, bad):
    gt = _write(tmp_path / "gt.csv", _gt_rows())
    pred = _write(tmp_path / "pred.csv", _rows(["IMG_ID", "pred_lat", "pred_lon"], PRED_LATLON[:1]))
    with pytest.raises(SystemExit) as e:
        main(["--predictions", str(pred), "--ground-truth", str(gt), "--thresholds", "25", bad])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--thresholds" in err and "Traceback" not in err
    if bad != "abc":
        with pytest.raises(ScoreInputError, match="threshold"):
            score_predictions([], _gt_rows(), gaz, thresholds_km=[25, float(bad)])


def test_missing_and_unresolved_fail_at_every_threshold(gaz):
    # 30,000 km is beyond any great-circle distance (20,015 km): every resolved prediction is a
    # hit there, while the unresolved Sydney row and the missing mid-Atlantic one stay misses
    preds = _rows(["IMG_ID", "pred_lat", "pred_lon"], PRED_LATLON)
    r = score_predictions(preds, _gt_rows(), gaz, thresholds_km=[1, 30_000])
    assert r["acc@30000km"] == pytest.approx(3 / 5) and r["acc@1km"] == pytest.approx(2 / 5)
    assert score_predictions([], _gt_rows(), gaz, thresholds_km=[30_000])["acc@30000km"] == 0.0


@pytest.mark.timeout(120)  # safety net only: the parser is linear (the old one took ~48 s on such a row)
def test_long_pred_text_rows_are_scored(gaz):
    texts = [
        ("paris.jpg", "<think>" + "country " * 10_000 + "</think><answer>country: France\ncity: Paris</answer>"),
        ("munich.jpg", "country" + " " * 80_000),
        ("tokyo.jpg", "city: " + "(" * 80_000),
    ]
    r = score_predictions(_rows(["IMG_ID", "pred_text"], texts), _gt_rows(), gaz)
    assert r["acc@25km"] == pytest.approx(1 / 5) and r["n_unparsed"] == 2 and r["n_unresolved"] == 2
