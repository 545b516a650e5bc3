"""GRPOPolicy under DDP on two CPU processes (gloo): both ranks draw different data, the
gradients are all-reduced, so the weights stay identical across ranks (also with micro-batches,
i.e. several backward passes per step)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from lightning.pytorch import Callback

REPO = Path(__file__).resolve().parents[1]


class ParamSum(Callback):
    """Prints a checksum of the policy's weights on every rank at the end of ``fit``."""

    def on_train_end(self, trainer, pl_module) -> None:
        total = sum(float(p.double().sum()) for p in pl_module.model.parameters())
        print(f"RANK {trainer.global_rank} PARAMSUM {total:.10f}", flush=True)


@pytest.mark.slow
@pytest.mark.distributed
def test_ranks_stay_in_sync(tmp_path, tiny_model_dir, geosynth_root):
    args = [
        sys.executable, str(REPO / "cli.py"), "fit", "--config", str(REPO / "configs/demo.yaml"),
        "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp",
        f"--model.init_args.model_path={tiny_model_dir}", "--model.init_args.group_size=2",
        "--model.init_args.sampling.max_new_tokens=8", "--model.init_args.warm_start_steps=1",
        "--model.init_args.micro_batch_prompts=1",  # two backward passes per GRPO step
        f"--data.init_args.root={geosynth_root}", "--data.init_args.train_size=48", "--data.init_args.val_size=8",
        "--data.init_args.test_size=8", "--data.init_args.batch_size=2",
        "--trainer.max_steps=3", "--trainer.limit_val_batches=0", "--trainer.logger=false",
        "--trainer.enable_checkpointing=false", "--trainer.callbacks=[]", "--trainer.callbacks+=test_policy_ddp.ParamSum",
        f"--trainer.default_root_dir={tmp_path}",
    ]
    env = {"WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "PYTHONPATH": str(REPO / "tests")}
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    sums = dict(re.findall(r"RANK (\d) PARAMSUM (\S+)", proc.stdout + proc.stderr))
    assert set(sums) == {"0", "1"}, proc.stdout[-2000:]
    assert sums["0"] == sums["1"]
