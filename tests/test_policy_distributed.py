"""GRPOPolicy on two CPU processes (gloo) through ``cli.py``.

- DDP: both ranks draw different data, gradients are all-reduced, so the weights stay identical
  across ranks (also with micro-batches, i.e. several backward passes per step); every run below
  checks it, DDP and FSDP2 alike.
- FSDP2 (``ModelParallelStrategy``, ``globe.models.sharding``): the same run, sharded, ends at the
  same weights as under DDP (full fine-tuning with a sharded frozen reference and the KL term, and
  LoRA); its distributed checkpoint restores for ``cli.py test``, whose greedy predictions equal a
  single-process test of the exported Hugging Face directory.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback

from globe.models.sharding import full_tensor

REPO = Path(__file__).resolve().parents[1]
FSDP2 = (
    "--trainer.strategy=lightning.pytorch.strategies.ModelParallelStrategy",
    "--trainer.strategy.data_parallel_size=2",
    "--trainer.strategy.tensor_parallel_size=1",
)


class ParamSum(Callback):
    """Prints checksums of the policy's (gathered) weights on every rank at the end of ``fit``."""

    def on_train_end(self, trainer, pl_module) -> None:
        tensors = [full_tensor(p.detach()).double() for p in pl_module.model.parameters()]
        total, absolute = sum(float(t.sum()) for t in tensors), sum(float(t.abs().sum()) for t in tensors)
        print(f"RANK {trainer.global_rank} PARAMSUM {total:.10f} {absolute:.10f}", flush=True)


def _cli(command: str, tmp_path: Path, tiny_model_dir, geosynth_root, *extra: str, devices: int = 2) -> str:
    args = [
        sys.executable, str(REPO / "cli.py"), command, "--config", str(REPO / "configs/demo.yaml"),
        "--trainer.accelerator=cpu", f"--trainer.devices={devices}",
        f"--model.init_args.model_path={tiny_model_dir}", "--model.init_args.group_size=2",
        "--model.init_args.sampling.max_new_tokens=8", "--model.init_args.warm_start.steps=1",
        "--model.init_args.optim.micro_batch_prompts=1",  # two backward passes per GRPO step
        f"--data.init_args.root={geosynth_root}", "--data.init_args.train_size=48", "--data.init_args.val_size=8",
        "--data.init_args.test_size=8", "--data.init_args.batch_size=2",
        "--trainer.max_steps=3", "--trainer.limit_val_batches=0", "--trainer.logger=false",
        "--trainer.callbacks=[]", f"--trainer.default_root_dir={tmp_path}", *extra,
    ]
    env = {"WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "PYTHONPATH": str(REPO / "tests")}
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr


def _fit(tmp_path: Path, tiny_model_dir, geosynth_root, *extra: str) -> tuple[float, float]:
    """Fit 3 steps, export the policy to ``tmp_path/hf``; the ranks' weight checksums must agree."""
    out = _cli(
        "fit", tmp_path, tiny_model_dir, geosynth_root, "--trainer.enable_checkpointing=false",
        "--trainer.callbacks+=test_policy_distributed.ParamSum",
        "--trainer.callbacks+=callbacks.hf_export.HFExport", f"--trainer.callbacks.dirpath={tmp_path}/hf", *extra,
    )
    sums = dict(re.findall(r"RANK (\d) PARAMSUM (\S+ \S+)", out))
    assert set(sums) == {"0", "1"}, out[-2000:]
    assert sums["0"] == sums["1"], sums  # the ranks hold the same weights
    total, absolute = map(float, sums["0"].split())
    return total, absolute


def _exported(path: Path) -> dict[str, torch.Tensor]:
    from transformers import Qwen2_5_VLForConditionalGeneration

    return Qwen2_5_VLForConditionalGeneration.from_pretrained(path).state_dict()


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize(
    "extra",
    [
        ("--model.init_args.loss.beta=0.01",),  # KL to a frozen copy, sharded too, refreshed after the warm start
        ("--model.init_args.lora.r=4", "--model.init_args.lora.alpha=8", "--model.init_args.optim.learning_rate=1e-2",
         "--model.init_args.loss.beta=0.01"),  # KL to the adapter-disabled model
    ],
    ids=["full", "lora"],
)
def test_fsdp2_ends_where_ddp_ends(tmp_path, tiny_model_dir, geosynth_root, extra):
    ddp, fsdp = tmp_path / "ddp", tmp_path / "fsdp"
    ddp.mkdir(), fsdp.mkdir()
    ddp_sums = _fit(ddp, tiny_model_dir, geosynth_root, "--trainer.strategy=ddp", *extra)
    fsdp_sums = _fit(fsdp, tiny_model_dir, geosynth_root, *FSDP2, *extra)
    # same data, seeds and updates; only the order of float additions in the gradient reduction differs
    assert fsdp_sums == pytest.approx(ddp_sums, rel=1e-7)
    ddp_weights, fsdp_weights = _exported(ddp / "hf"), _exported(fsdp / "hf")  # LoRA: merged
    assert ddp_weights.keys() == fsdp_weights.keys()
    assert max(float((ddp_weights[k] - fsdp_weights[k]).abs().max()) for k in ddp_weights) < 1e-5
    initial = _exported(tiny_model_dir)
    changed = [k for k in fsdp_weights if not torch.equal(initial[k], fsdp_weights[k])]
    if "--model.init_args.lora.r=4" in extra:  # exactly the adapted projections: 2 layers x 7
        assert len(changed) == 14 and all(re.search(r"language_model\.layers\.\d\.(self_attn|mlp)\.\w+_proj", k) for k in changed)
    else:
        assert len(changed) > len(fsdp_weights) // 2  # the run trained


@pytest.mark.slow
@pytest.mark.distributed
def test_fsdp2_checkpoint_restores_for_test(tmp_path, tiny_model_dir, geosynth_root):
    greedy = ("--model.init_args.eval_sampling.temperature=0", "--model.init_args.eval_sampling.max_new_tokens=12")
    _cli(
        "fit", tmp_path, tiny_model_dir, geosynth_root, *FSDP2,
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint", f"--trainer.callbacks.dirpath={tmp_path}/ckpt",
        "--trainer.callbacks.save_last=true",
        "--trainer.callbacks+=callbacks.hf_export.HFExport", f"--trainer.callbacks.dirpath={tmp_path}/hf",
    )
    assert (tmp_path / "ckpt" / "last.ckpt" / ".metadata").exists()  # a distributed (sharded) checkpoint
    sharded = tmp_path / "sharded.csv"
    _cli("test", tmp_path, tiny_model_dir, geosynth_root, *FSDP2, *greedy, f"--ckpt_path={tmp_path}/ckpt/last.ckpt",
         f"--model.init_args.predictions_csv={sharded}")
    single = tmp_path / "single.csv"
    _cli("test", tmp_path, f"{tmp_path}/hf", geosynth_root, *greedy, f"--model.init_args.predictions_csv={single}",
         devices=1)
    rows = {}
    for rank in (0, 1):
        rows.update({r["IMG_ID"]: r["pred_text"] for r in csv.DictReader(open(sharded.with_suffix(f".rank{rank}.csv")))})
    expected = {r["IMG_ID"]: r["pred_text"] for r in csv.DictReader(open(single))}
    assert len(expected) == 8
    assert rows == expected
