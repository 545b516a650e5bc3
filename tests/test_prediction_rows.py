"""Prediction rows: written to a UTF-8 CSV whatever the shard key's bytes, read back by globe.score."""

import csv
import math

from globe.evaluation import PREDICTION_COLUMNS, Prediction
from globe.score import read_csv


def _prediction(img_id: str, text: str = "<answer>country: France</answer>") -> Prediction:
    return Prediction(
        IMG_ID=img_id, pred_country="France", pred_city="", pred_lat=48.85, pred_lon=2.35, pred_level="country",
        LAT=48.8566, LON=2.3522, country="France", city="", country_ok=1.0, city_ok=math.nan, pred_text=text,
    )


def test_rows_with_undecodable_key_bytes_are_written_as_utf8(tmp_path):
    # a tar member named with Latin-1 bytes, decoded as the shard reader does (surrogateescape)
    key = b"caf\xe9-\xff01".decode("utf-8", "surrogateescape")
    rows = [_prediction(key), _prediction("plain"), _prediction("Zürich", text="\ud800 lone high surrogate")]
    path = tmp_path / "predictions.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:  # strict UTF-8, as a reader expects
        writer = csv.DictWriter(f, fieldnames=PREDICTION_COLUMNS)
        writer.writeheader()
        writer.writerows(r.row() for r in rows)
    back = read_csv(path)
    # lone surrogates become backslash escapes of the same code points; valid text is unchanged
    assert [r["IMG_ID"] for r in back] == ["caf\\udce9-\\udcff01", "plain", "Zürich"]
    assert back[2]["pred_text"] == "\\ud800 lone high surrogate"
    assert back[0]["pred_country"] == "France" and back[0]["LAT"] == "48.8566"


def test_row_keeps_numbers_and_valid_text_as_they_are():
    p = _prediction("ok.jpg")
    row = p.row()
    assert list(row) == list(PREDICTION_COLUMNS)
    assert row["IMG_ID"] == "ok.jpg" and row["pred_lat"] == 48.85 and math.isnan(row["city_ok"])
