"""``cli.py predict``: predict_step decodes, parses and geocodes each image, and the
PredictionWriter merges the ranks' rows into one file (CSV the scorer reads, or JSONL)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_predict_writes_one_row_per_image(tmp_path, tiny_model_dir, geosynth_root, suffix):
    out = tmp_path / f"predictions{suffix}"
    args = [
        sys.executable, str(REPO / "cli.py"), "predict", "--config", str(REPO / "configs/demo.yaml"),
        f"--model.init_args.model_path={tiny_model_dir}", "--model.init_args.eval_sampling.max_new_tokens=8",
        f"--data.init_args.root={geosynth_root}", "--data.init_args.train_size=48", "--data.init_args.val_size=8",
        "--data.init_args.test_size=8", "--data.init_args.batch_size=3", "--data.init_args.test_format=shards",
        "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path}",
        "--trainer.callbacks=[]", "--trainer.callbacks+=callbacks.prediction_writer.PredictionWriter",
        f"--trainer.callbacks.path={out}",
    ]
    env = {"WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    if suffix == ".csv":
        rows = list(csv.DictReader(open(out, encoding="utf-8")))
    else:
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 8  # every test image once, resolved or not
    assert len({r["IMG_ID"] for r in rows}) == 8
    assert all("pred_text" in r and "pred_lat" in r and "pred_country" in r for r in rows)
    assert not list(tmp_path.glob(".predictions*.partial"))  # rank parts merged and removed


def test_unwritable_prediction_path_fails_before_decoding(tmp_path):
    from callbacks.prediction_writer import PredictionWriter
    from globe.output_files import OutputPathError

    (tmp_path / "taken.csv").mkdir()
    writer = PredictionWriter(str(tmp_path / "taken.csv"))

    class _Trainer:
        global_rank = 0

    with pytest.raises(OutputPathError, match="is a directory"):
        writer.on_predict_start(_Trainer(), None)
    with pytest.raises(ValueError, match=".csv or .jsonl"):
        PredictionWriter(str(tmp_path / "p.txt"))
