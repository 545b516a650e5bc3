"""GeoRetrieval through ``cli.py``: fit a few steps on a tiny GeoSynth set (checkpoint, queue in it,
validation accuracy logged), test from the checkpoint, and an exact resume from a mid-run checkpoint."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs/retrieval/geosynth.yaml"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    proc = subprocess.run([sys.executable, str(REPO / "cli.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def _args(run: Path, geosynth_root: Path, steps: int, *extra: str) -> list[str]:
    return [
        "--config", str(CONFIG),
        f"--data.init_args.root={geosynth_root}",
        "--data.init_args.train_size=48", "--data.init_args.val_size=8", "--data.init_args.test_size=8",
        "--data.init_args.batch_size=8",  # 6 steps per epoch: the runs below cross an epoch boundary
        "--model.init_args.queue_size=20",  # smaller than the rows pushed: the ring wraps
        f"--trainer.max_steps={steps}", "--trainer.val_check_interval=3", "--trainer.limit_val_batches=1",
        "--trainer.log_every_n_steps=1",
        f"--trainer.default_root_dir={run}", f"--trainer.logger.init_args.save_dir={run}",
        f"--trainer.callbacks.dirpath={run}/ckpt", "--trainer.callbacks.every_n_train_steps=1",
        *extra,
    ]


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_fit_writes_a_checkpoint_and_validation_accuracy_then_test(tmp_path, geosynth_root):
    run = tmp_path / "run"
    _cli("fit", *_args(run, geosynth_root, 4), cwd=tmp_path)

    state = _state(run / "ckpt" / "last.ckpt")
    assert int(state["queue.filled"]) == 20 and int(state["queue.pointer"]) == 32 % 20  # 4 steps x 8 rows into 20
    assert int(state["queue.pushes"]) == 4
    assert 1 <= int(state["seen.count"]) <= 30  # GeoSynth's 30 cities
    first = _state(run / "ckpt" / "step=1.ckpt")
    assert not torch.equal(first["location_encoder.branches.0.head.weight"], state["location_encoder.branches.0.head.weight"])

    rows = list(csv.DictReader(open(next(run.rglob("metrics.csv")))))
    keys = set().union(*(r.keys() for r in rows))
    for key in ("train/loss", "train/logit_scale", "train/queue_filled", "train/batch_top1", "val/loss",
                "val/acc@1km", "val/acc@25km", "val/acc@200km", "val/acc@750km", "val/acc@2500km", "val/median_km"):
        assert key in keys, f"{key} not logged; got {sorted(keys)}"
    accuracy = [float(r["val/acc@2500km"]) for r in rows if r.get("val/acc@2500km")]
    assert accuracy and all(0.0 <= a <= 1.0 for a in accuracy)

    proc = _cli("test", *_args(run, geosynth_root, 4), f"--ckpt_path={run}/ckpt/last.ckpt", cwd=tmp_path)
    for threshold in (1, 25, 200, 750, 2500):
        assert f"test/acc@{threshold}km" in proc.stdout


@pytest.mark.slow
def test_resume_from_a_mid_run_checkpoint_is_exact(tmp_path, geosynth_root):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _cli("fit", *_args(straight, geosynth_root, 9), cwd=tmp_path)  # one run, 9 steps (epoch boundary at 6)
    _cli("fit", *_args(resumed, geosynth_root, 9), f"--ckpt_path={straight}/ckpt/step=4.ckpt", cwd=tmp_path)

    a, b = _state(straight / "ckpt" / "last.ckpt"), _state(resumed / "ckpt" / "last.ckpt")
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"resumed run differs in {different[:5]}"
    assert int(b["queue.pushes"]) == 9
