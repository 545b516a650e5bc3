"""Dynamic sampling with the vLLM engine through ``cli.py`` (configs/grpo/dapo.yaml on the demo,
scored by the coin reward so that groups are dropped and refilled): each refill round is one more
rollout of the colocated engine (woken, synced when it dropped its weights, put back to sleep), in
one process and on two FSDP2 ranks, where every rank must run the same rounds."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

from spread_reward import CLI_ARGS as COIN_REWARD

REPO = Path(__file__).resolve().parents[2]
DS = "train/dynamic_sampling/"
FSDP2_TWO_RANKS = (
    "--trainer.accelerator=cpu", "--trainer.devices=2",
    "--trainer.strategy=lightning.pytorch.strategies.ModelParallelStrategy",
    "--trainer.strategy.data_parallel_size=2", "--trainer.strategy.tensor_parallel_size=1",
    "--trainer.callbacks+=test_policy_distributed.ParamSum",
)


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.parametrize("parallel", [(), FSDP2_TWO_RANKS], ids=["one-process", "fsdp2-two-ranks"])
def test_dynamic_sampling_with_the_vllm_engine_through_cli(tmp_path, parallel):
    from data_modules.geosynth.generate import write_geosynth
    from globe.models.tiny import build_tiny_qwen2_5_vl

    model_dir = build_tiny_qwen2_5_vl(tmp_path / "tiny")
    data = tmp_path / "geosynth"
    write_geosynth(data, train=48, val=4, test=4, seed=0)
    run = tmp_path / "run"
    args = [
        sys.executable, str(REPO / "cli.py"), "fit",
        "--config", str(REPO / "configs/demo.yaml"), "--config", str(REPO / "configs/grpo/dapo.yaml"),
        "--model.init_args.engine=vllm", "--model.init_args.vllm={max_model_len: 1024}",
        f"--model.init_args.model_path={model_dir}", "--model.init_args.group_size=2",
        "--model.init_args.sampling.max_new_tokens=8", "--model.init_args.warm_start.steps=1",
        "--model.init_args.optim.learning_rate=1.0e-3", *COIN_REWARD,
        f"--data.init_args.root={data}", "--data.init_args.train_size=48", "--data.init_args.val_size=4",
        "--data.init_args.test_size=4", "--data.init_args.batch_size=2", "--data.init_args.num_workers=0",
        "--trainer.max_steps=4", "--trainer.limit_val_batches=0",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger", f"--trainer.logger.init_args.save_dir={run}",
        "--trainer.callbacks=[]", f"--trainer.default_root_dir={run}", "--trainer.enable_checkpointing=false", *parallel,
    ]
    env = {"WANDB_MODE": "offline", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "VLLM_CPU_KVCACHE_SPACE": "1",
           "PYTHONPATH": str(REPO / "tests"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]

    rows = list(csv.DictReader(open(next(run.rglob("metrics.csv")))))
    steps = [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in rows if r.get(DS + "refills")]
    assert len(steps) == 3  # the GRPO steps after the warm-start step
    assert all(s[DS + "tries"] == s[DS + "refills"] + 1 <= 4 for s in steps)
    assert any(s[DS + "refills"] > 0 for s in steps), steps
    # kept groups were trained on vLLM rollouts with the importance-sampling correction, whose
    # log-probs match the trainer's (the engine held the current weights in every round)
    trained = [s for s in steps if s[DS + "kept_groups"] > 0]
    assert trained and all("train/is_weight_mean" in s and s["train/logprob_diff_max"] < 1e-2 for s in trained), trained
    if parallel:
        sums = dict(re.findall(r"RANK (\d) PARAMSUM (\S+ \S+)", proc.stdout + proc.stderr))
        assert set(sums) == {"0", "1"} and sums["0"] == sums["1"], sums
