"""End to end through ``cli.py``: fit a few GRPO steps on GeoSynth, then test on its
IM2GPS3K-format set; the weights must change and the metric keys must exist."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import Qwen2_5_VLForConditionalGeneration

from globe.metrics import GeoAccuracy

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # PYTHONPATH: configs may name test-only classes (spread_reward.CoinReward)
    env = {"WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(cwd),
           "PYTHONPATH": str(REPO / "tests")}
    proc = subprocess.run([sys.executable, str(REPO / "cli.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


@pytest.mark.slow
def test_fit_then_test_through_cli(tmp_path, tiny_model_dir, geosynth_root):
    run = tmp_path / "run"
    common = [
        "--config", str(REPO / "configs/demo.yaml"),
        f"--model.init_args.model_path={tiny_model_dir}",
        "--model.init_args.group_size=2",
        "--model.init_args.sampling.max_new_tokens=12",
        "--model.init_args.eval_sampling.max_new_tokens=12",
        "--model.init_args.warm_start.steps=2",
        f"--data.init_args.root={geosynth_root}",
        "--data.init_args.train_size=48", "--data.init_args.val_size=8", "--data.init_args.test_size=8",
        "--data.init_args.batch_size=2",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        f"--trainer.logger.init_args.save_dir={run}",
        "--trainer.callbacks=[]",
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
        f"--trainer.callbacks.dirpath={run}/ckpt",
        "--trainer.callbacks.save_last=true",
        "--trainer.callbacks+=callbacks.hf_export.HFExport",
        f"--trainer.callbacks.dirpath={run}/policy",
        f"--trainer.default_root_dir={run}",
    ]
    _cli("fit", *common, "--trainer.max_steps=4", "--trainer.val_check_interval=4", "--trainer.limit_val_batches=1", cwd=tmp_path)

    # weights changed: the checkpoint's policy differs from the initial model
    ckpt = torch.load(run / "ckpt" / "last.ckpt", map_location="cpu", weights_only=False)
    initial = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir).state_dict()
    trained = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    changed = [k for k, v in initial.items() if k in trained and not torch.equal(v, trained[k])]
    assert len(changed) > len(initial) // 2, f"only {len(changed)} of {len(initial)} tensors changed"
    assert (run / "policy" / "model.safetensors").exists()

    fit_metrics = list(csv.DictReader(open(next(run.rglob("metrics.csv")))))
    keys = set().union(*(r.keys() for r in fit_metrics))
    for key in ("warm_start/nll", "train/reward", "train/reward/geo", "train/zero_spread_fraction",
                "train/truncated_fraction", "train/completion_length", "train/kl", "train/clip_fraction",
                "train/lr", "val/acc@25km", "val/median_km", "val/country_acc"):
        assert key in keys, f"{key} not logged; got {sorted(keys)}"

    predictions = tmp_path / "pred.csv"
    proc = _cli("test", *common, f"--ckpt_path={run}/ckpt/last.ckpt", f"--model.init_args.predictions_csv={predictions}", cwd=tmp_path)
    for threshold in GeoAccuracy().thresholds_km:
        assert f"test/acc@{threshold:g}km" in proc.stdout
    rows = list(csv.DictReader(open(predictions)))
    assert len(rows) == 8  # every test image has a row, resolved or not

    # the scorer reads the policy's predictions back and agrees on the sample count
    ground_truth = geosynth_root / "im2gps3k" / "im2gps3k.csv"
    out = tmp_path / "score.json"
    subprocess.run([sys.executable, "-m", "globe.score", "--predictions", str(predictions), "--ground-truth",
                    str(ground_truth), "--out", str(out)], check=True, capture_output=True, cwd=REPO)
    assert json.loads(out.read_text())["n"] == 8
