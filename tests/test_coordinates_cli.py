"""The coordinate answer path end to end: ``cli.py test`` with the coordinates prompt and reward
heads on GeoSynth districts writes its predictions CSV, and ``python -m globe.score
--prefer-coordinates`` scores the coordinates of answers in that file.

A tiny random policy writes no coordinates, so the scored answers are the data set's own
teacher traces (they end with the district's coordinates) put into the policy's CSV: with the
option they are within 0.25 km of the truth (acc@1km 1.0); without it only their city names
count, 2-6 km from the samples (acc@1km 0.0, acc@25km 1.0).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from data_modules.geosynth import generate_record

REPO = Path(__file__).resolve().parents[1]
ENV = {"WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env={**ENV, "HOME": str(cwd)}, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def _score(predictions: Path, ground_truth: Path, out: Path, *flags: str) -> dict:
    _run([sys.executable, "-m", "globe.score", "--predictions", str(predictions), "--ground-truth", str(ground_truth),
          "--out", str(out), *flags], cwd=REPO)
    return json.loads(out.read_text())


def _write(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.slow
def test_cli_test_with_coordinates_then_score_prefers_them(tmp_path, tiny_model_dir):
    root = tmp_path / "geosynth-districts"
    predictions = tmp_path / "pred.csv"
    _run([
        sys.executable, str(REPO / "cli.py"), "test",
        "--config", str(REPO / "configs/demo.yaml"),
        "--config", str(REPO / "configs/data/geosynth_districts.yaml"),
        "--config", str(REPO / "configs/reward/coordinates.yaml"),
        f"--model.init_args.model_path={tiny_model_dir}", "--model.init_args.eval_sampling.max_new_tokens=8",
        f"--model.init_args.predictions_csv={predictions}",
        f"--data.init_args.root={root}", "--data.init_args.train_size=8", "--data.init_args.val_size=4",
        "--data.init_args.test_size=8", "--data.init_args.batch_size=4", "--data.init_args.min_shards=1",
        "--trainer.logger=false", "--trainer.callbacks=[]", f"--trainer.default_root_dir={tmp_path}",
    ], cwd=tmp_path)
    rows = list(csv.DictReader(open(predictions, encoding="utf-8")))
    assert [r["IMG_ID"] for r in rows] == [f"test-{i:06d}.jpg" for i in range(8)]  # every test image, in order
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["args"]["layout"] == "districts" and manifest["args"]["answer_coordinates"] is True
    ground_truth = root / "im2gps3k" / "im2gps3k.csv"

    # the policy's file as written: the scorer reads it with and without the option
    as_written = _score(predictions, ground_truth, tmp_path / "written.json", "--prefer-coordinates")
    assert as_written["n"] == 8 and as_written["n_missing"] == 0 and "n_from_coordinates" in as_written

    # the same file with the teacher's answers (district coordinates) as the completions
    traces = {f"test-{i:06d}.jpg": generate_record(0, "test", i, layout="districts", answer_coordinates=True).meta["reasoning"]
              for i in range(8)}
    for r in rows:
        r["pred_text"] = traces[r["IMG_ID"]]
    _write(tmp_path / "teacher.csv", rows)
    on = _score(tmp_path / "teacher.csv", ground_truth, tmp_path / "on.json", "--prefer-coordinates")
    assert on["form"] == "latlon" and on["n_from_coordinates"] == 8 and on["n_invalid_answer_coords"] == 0
    assert (on["acc@1km"], on["acc@25km"]) == (1.0, 1.0) and on["median_km"] < 0.25

    # names only (no coordinate columns, option off): the cities' points, 2-6 km away
    _write(tmp_path / "names.csv", [{"IMG_ID": k, "pred_text": t} for k, t in traces.items()])
    off = _score(tmp_path / "names.csv", ground_truth, tmp_path / "off.json")
    assert off["form"] == "text" and (off["acc@1km"], off["acc@25km"]) == (0.0, 1.0) and off["n_city_level"] == 8
    assert 1.5 < off["median_km"] < 6.5
