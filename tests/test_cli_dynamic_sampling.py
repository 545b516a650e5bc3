"""Dynamic sampling end to end through ``cli.py`` (configs/grpo/dapo.yaml on the demo, which turns it
on): the refill metrics are logged, every training sample a step consumed is one the data stream
gave once, and the checkpoint's data position counts the refills; in one process, under DDP and
under FSDP2 (two CPU ranks, gloo), where every rank must run the same rounds or a collective hangs.

The tiny random model's real rewards are all 0 (no group would ever be informative), so these runs
score with ``spread_reward.CoinReward`` (0 / 1 by a hash of key and completion): about half the
groups of 2 completions are informative.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spread_reward import CLI_ARGS as COIN_REWARD

REPO = Path(__file__).resolve().parents[1]
DS = "train/dynamic_sampling/"
TWO_RANKS = {
    "ddp": ("--trainer.devices=2", "--trainer.strategy=ddp"),
    "fsdp2": ("--trainer.devices=2", "--trainer.strategy=lightning.pytorch.strategies.ModelParallelStrategy",
              "--trainer.strategy.data_parallel_size=2", "--trainer.strategy.tensor_parallel_size=1"),
}


def _fit(run: Path, tiny_model_dir, geosynth_root, *extra: str, timeout: int = 600) -> subprocess.CompletedProcess:
    args = [
        sys.executable, str(REPO / "cli.py"), "fit",
        "--config", str(REPO / "configs/demo.yaml"), "--config", str(REPO / "configs/grpo/dapo.yaml"),
        "--trainer.accelerator=cpu", f"--model.init_args.model_path={tiny_model_dir}",
        "--model.init_args.group_size=2", "--model.init_args.sampling.max_new_tokens=8",
        "--model.init_args.eval_sampling.max_new_tokens=8", "--model.init_args.warm_start.steps=0",
        "--model.init_args.optim.warmup_steps=0", *COIN_REWARD,
        f"--data.init_args.root={geosynth_root}", "--data.init_args.train_size=48", "--data.init_args.val_size=8",
        "--data.init_args.test_size=8", "--data.init_args.batch_size=2", "--data.init_args.num_workers=0",
        "--trainer.max_steps=4", "--trainer.limit_val_batches=0",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger", f"--trainer.logger.init_args.save_dir={run}",
        "--trainer.callbacks=[]",
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint", f"--trainer.callbacks.dirpath={run}/ckpt",
        "--trainer.callbacks.save_last=true",
        "--trainer.callbacks+=callbacks.completions_table.CompletionsTable",
        "--trainer.callbacks.every_n_steps=1", "--trainer.callbacks.max_rows=1000",
        f"--trainer.default_root_dir={run}", *extra,
    ]
    env = {"WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(run),
           "PYTHONPATH": str(REPO / "tests")}
    run.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(args, cwd=run, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def _steps(run: Path) -> list[dict[str, float]]:
    rows = list(csv.DictReader(open(next(run.rglob("metrics.csv")))))
    return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in rows if r.get(DS + "refills")]


def _check_run(run: Path, proc: subprocess.CompletedProcess, ranks: int) -> list[dict[str, float]]:
    steps = _steps(run)
    assert len(steps) == 4
    for s in steps:
        assert s[DS + "tries"] == s[DS + "refills"] + 1 and s[DS + "refills"] <= 3
        assert 0 <= s[DS + "kept_groups"] <= 2 and 0 <= s[DS + "informative_fraction"] <= 1
        informative = s[DS + "informative_fraction"] * 2 * s[DS + "tries"]  # of the 2 groups of every try
        assert informative == pytest.approx(round(informative)) and s[DS + "kept_groups"] == min(round(informative), 2)
    assert any(s[DS + "refills"] > 0 for s in steps), steps  # the coin made some step refill
    # the data position of every rank counts each batch a step consumed, refills included
    ckpt = torch.load(run / "ckpt" / "last.ckpt", map_location="cpu", weights_only=False) if ranks == 1 else None
    if ckpt is not None:
        (position,) = ckpt["GeoSynth"]["positions"]
        assert sum(position["consumed"]) == sum(s[DS + "tries"] for s in steps)
    # a warning for each step that went ahead short of 2 groups (the logs are rank 0's; every rank warns)
    short = sum(1 for s in steps if s[DS + "kept_groups"] < 2)
    warned = re.findall(r"dynamic sampling: step \d+ goes ahead with", proc.stderr)
    assert len(warned) == short if ranks == 1 else len(warned) >= short
    return steps


@pytest.mark.slow
def test_dapo_config_refills_and_counts_every_sample_through_cli(tmp_path, tiny_model_dir, geosynth_root):
    run = tmp_path / "run"
    proc = _fit(run, tiny_model_dir, geosynth_root)
    steps = _check_run(run, proc, ranks=1)
    # every sample the steps consumed was rolled out once (logged by CompletionsTable): 2 per try,
    # no sample twice (4 steps draw at most 16 of the epoch's 24 batches)
    keys = {}
    for line in next(run.rglob("completions.jsonl")).read_text().splitlines():
        row = json.loads(line)
        keys.setdefault(row["step"], []).append(row["key"])
    per_step = [sorted(set(k)) for _, k in sorted(keys.items())]
    assert [len(k) for k in per_step] == [2 * s[DS + "tries"] for s in steps]
    everything = [k for ks in per_step for k in ks]
    assert len(everything) == len(set(everything))
    logged = {k for s in steps for k in s}
    for key in ("refills", "tries", "informative_fraction", "kept_groups", "pad_groups"):
        assert DS + key in logged


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_dynamic_sampling_on_two_ranks_finishes(tmp_path, tiny_model_dir, geosynth_root, strategy):
    """Two ranks refill different numbers of times on their own, pad to each other's micro-batch
    count (``micro_batch_prompts: 1``) and finish, with the same weights on both ranks."""
    run = tmp_path / strategy
    proc = _fit(run, tiny_model_dir, geosynth_root, *TWO_RANKS[strategy], "--model.init_args.optim.micro_batch_prompts=1",
                "--trainer.callbacks+=test_policy_distributed.ParamSum", timeout=600)
    _check_run(run, proc, ranks=2)
    sums = dict(re.findall(r"RANK (\d) PARAMSUM (\S+ \S+)", proc.stdout + proc.stderr))
    assert set(sums) == {"0", "1"} and sums["0"] == sums["1"], sums


@pytest.mark.slow
def test_nothing_informative_on_two_ranks_steps_without_gradient(tmp_path, tiny_model_dir, geosynth_root):
    """The demo's own rewards are all 0 on the random model: every step refills to the cap, keeps
    nothing on either rank and steps the optimiser with no gradient: the weights stay the initial ones."""
    run = tmp_path / "zero"
    demo_rewards = ("--model.init_args.rewards=[{class_path: globe.rewards.format.FormatReward, init_args: {name: format}}]",
                    "--model.init_args.reward_weights={format: 1.0}")
    proc = _fit(run, tiny_model_dir, geosynth_root, *TWO_RANKS["ddp"], *demo_rewards,
                "--trainer.callbacks+=test_policy_distributed.ParamSum", "--trainer.max_steps=2")
    steps = [s for s in _steps(run)]
    assert [(s[DS + "refills"], s[DS + "kept_groups"], s["train/loss"]) for s in steps] == [(3.0, 0.0, 0.0)] * 2
    assert len(re.findall(r"dynamic sampling: step \d+ goes ahead with 0 of 2", proc.stderr)) == 4  # each rank, each step
    from transformers import Qwen2_5_VLForConditionalGeneration

    initial = [p.detach().double() for p in Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir).parameters()]
    total = sum(float(t.sum()) for t in initial)
    sums = dict(re.findall(r"RANK (\d) PARAMSUM (\S+) \S+", proc.stdout + proc.stderr))
    assert float(sums["0"]) == float(sums["1"]) == pytest.approx(total, abs=1e-6)
