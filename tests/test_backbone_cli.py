"""Every backbone through ``cli.py``, picked by one config line (``configs/backbone/<name>.yaml``
composed onto the demo): a supervised warm start and GRPO steps with the transformers engine,
``cli.py test`` on the IM2GPS3K-format set from the checkpoint, and the Hugging Face export
reloading to the trained weights with a processor that still builds prompts."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from globe.metrics import GeoAccuracy
from globe.models.backbones import backbone_for
from globe.models.loading import load_vlm
from globe.rollout.base import SamplingConfig
from globe.rollout.hf_engine import HFRolloutEngine
from globe.rollout.prompts_batch import build_prompt_batch

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path, pythonpath: str | None = None) -> subprocess.CompletedProcess:
    env = {"WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.run([sys.executable, str(REPO / "cli.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["qwen2_5_vl", "qwen3_vl", "internvl3"])
def test_fit_test_and_export_through_cli(tmp_path, geosynth_root, backbone):
    run, model_dir = tmp_path / "run", tmp_path / "model"  # built by the backbone config's build_tiny_if_missing
    common = [
        "--config", str(REPO / "configs/demo.yaml"),
        "--config", str(REPO / f"configs/backbone/{backbone}.yaml"),
        f"--model.init_args.model_path={model_dir}",
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
    assert backbone_for(model_dir).name == backbone

    rows = list(csv.DictReader(open(next(run.rglob("metrics.csv")))))
    grpo_steps = [r for r in rows if r.get("train/reward")]
    assert len(grpo_steps) == 2 and all(r.get("train/completion_length") for r in grpo_steps)  # steps 3 and 4
    assert any(r.get("warm_start/nll") for r in rows) and any(r.get("val/acc@25km") for r in rows)

    # the export reloads to the trained weights, with the family's processor
    ckpt = torch.load(run / "ckpt" / "last.ckpt", map_location="cpu", weights_only=False)
    trained = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    exported, processor = load_vlm(run / "policy", dtype="float32")
    assert backbone_for(run / "policy").name == backbone and backbone_for(processor).name == backbone
    state = exported.state_dict()
    assert state.keys() <= trained.keys() and all(torch.equal(state[k], trained[k]) for k in state)
    initial, _ = load_vlm(model_dir, dtype="float32")
    changed = [k for k, v in initial.state_dict().items() if not torch.equal(v, state[k])]
    assert len(changed) > len(state) // 2, f"only {len(changed)} of {len(state)} tensors changed"
    batch = build_prompt_batch(processor, [Image.new("RGB", (96, 64), (120, 160, 200))])
    out = HFRolloutEngine(exported, processor).generate(batch, n=2, sampling=SamplingConfig(max_new_tokens=4, seed=0))
    assert out.ids.shape[0] == 2

    predictions = tmp_path / "pred.csv"
    proc = _cli("test", *common, f"--ckpt_path={run}/ckpt/last.ckpt", f"--model.init_args.predictions_csv={predictions}", cwd=tmp_path)
    for threshold in GeoAccuracy().thresholds_km:
        assert f"test/acc@{threshold:g}km" in proc.stdout
    assert len(list(csv.DictReader(open(predictions)))) == 8  # every IM2GPS3K-format test image


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["qwen3_vl", "internvl3"])
def test_grpo_steps_on_two_fsdp2_ranks(tmp_path, geosynth_root, backbone):
    """FSDP2 over two CPU ranks: the vision side (InternVL: the tower and its separate projector)
    is one unit, so encoding images outside the model's forward gathers what it needs; both ranks
    end with the same weights."""
    from globe.models.tiny import build_tiny

    run, model_dir = tmp_path / "run", tmp_path / "model"
    build_tiny(model_dir, backbone=backbone)  # before the ranks start, so they do not both build it
    proc = _cli(
        "fit", "--config", str(REPO / "configs/demo.yaml"), "--config", str(REPO / f"configs/backbone/{backbone}.yaml"),
        f"--model.init_args.model_path={model_dir}", "--model.init_args.group_size=2",
        "--model.init_args.sampling.max_new_tokens=8", "--model.init_args.eval_sampling.max_new_tokens=8",
        "--model.init_args.warm_start.steps=1", f"--data.init_args.root={geosynth_root}",
        "--data.init_args.train_size=48", "--data.init_args.val_size=8", "--data.init_args.test_size=8",
        "--data.init_args.batch_size=2", "--data.init_args.num_workers=0",
        "--trainer.devices=2", "--trainer.strategy=lightning.pytorch.strategies.ModelParallelStrategy",
        "--trainer.strategy.data_parallel_size=2", "--trainer.strategy.tensor_parallel_size=1",
        "--trainer.max_steps=3", "--trainer.limit_val_batches=0", "--trainer.logger=false",
        "--trainer.callbacks=[]", "--trainer.callbacks+=test_policy_distributed.ParamSum",
        f"--trainer.default_root_dir={run}", cwd=tmp_path, pythonpath=str(REPO / "tests"))
    import re

    sums = dict(re.findall(r"RANK (\d) PARAMSUM (\S+ \S+)", proc.stdout + proc.stderr))
    assert set(sums) == {"0", "1"} and sums["0"] == sums["1"], sums
