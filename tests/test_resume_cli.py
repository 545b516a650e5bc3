"""Exact resume through ``cli.py``: a GRPO run killed with SIGKILL and resumed with
``--ckpt_path last`` ends with the same weights, bit for bit, as the same run uninterrupted, and
samples the same completions from the same batches after the resume.

The run covers what a resume must restore: a supervised warm start then GRPO with the KL term
(beta > 0, so the reference refreshed at the end of the warm start must come back from the
checkpoint), a cosine LR schedule, two DataLoader workers, a validation pass, and an epoch
boundary, in one process, under DDP and under FSDP2 (two CPU ranks, gloo); and with dynamic
sampling, whose steps draw further batches from the stream.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
STEPS = 9
STRATEGIES = {
    "single": ("--trainer.devices=1",),
    "ddp": ("--trainer.devices=2", "--trainer.strategy=ddp"),
    "fsdp2": (
        "--trainer.devices=2",
        "--trainer.strategy=lightning.pytorch.strategies.ModelParallelStrategy",
        "--trainer.strategy.data_parallel_size=2",
        "--trainer.strategy.tensor_parallel_size=1",
    ),
}


def _args(run: Path, tiny_model_dir, geosynth_root, strategy: str) -> list[str]:
    return [
        sys.executable, str(REPO / "cli.py"), "fit", "--config", str(REPO / "configs/demo.yaml"),
        "--trainer.accelerator=cpu", *STRATEGIES[strategy],
        f"--model.init_args.model_path={tiny_model_dir}", "--model.init_args.group_size=2",
        "--model.init_args.sampling.max_new_tokens=8", "--model.init_args.eval_sampling.max_new_tokens=8",
        "--model.init_args.warm_start.steps=3", "--model.init_args.warm_start.decay=cosine",
        "--model.init_args.loss.beta=0.05",  # the KL term: a wrong reference after resume changes the weights
        "--model.init_args.optim.learning_rate=1e-3", "--model.init_args.optim.lr_decay=cosine",
        f"--data.init_args.root={geosynth_root}", "--data.init_args.train_size=48", "--data.init_args.val_size=8",
        "--data.init_args.test_size=8", "--data.init_args.batch_size=4", "--data.init_args.num_workers=2",
        f"--trainer.max_steps={STEPS}", "--trainer.val_check_interval=4", "--trainer.limit_val_batches=1",
        "--trainer.logger=false", f"--trainer.default_root_dir={run}",
        "--trainer.callbacks=[]",
        "--trainer.callbacks+=callbacks.atomic_checkpoint.AtomicCheckpoint",
        f"--trainer.callbacks.dirpath={run}/ckpt", "--trainer.callbacks.filename=step={step}",
        "--trainer.callbacks.auto_insert_metric_name=false", "--trainer.callbacks.every_n_train_steps=1",
        "--trainer.callbacks.save_top_k=-1", "--trainer.callbacks.save_last=true",
        "--trainer.callbacks+=callbacks.completions_table.CompletionsTable",
        "--trainer.callbacks.every_n_steps=1", "--trainer.callbacks.max_rows=64",
        "--trainer.callbacks+=callbacks.hf_export.HFExport", f"--trainer.callbacks.dirpath={run}/policy",
    ]


def _env(run: Path) -> dict[str, str]:
    return {"WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(run),
            "PYTHONPATH": str(REPO / "tests")}  # test-only classes (spread_reward.CoinReward)


def _completions(run: Path) -> dict[int, list]:
    """Completions by step; a step redone after the kill keeps its last record."""
    by_step: dict[int, list] = {}
    for line in (run / "completions.jsonl").read_text().splitlines():
        row = json.loads(line)
        by_step.setdefault(row["step"], {})[row["key"], row["completion"]] = True
    return {step: sorted(rows) for step, rows in by_step.items()}


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["single", "ddp", "fsdp2"])
def test_sigkill_then_resume_ends_at_the_uninterrupted_weights(tmp_path, tiny_model_dir, geosynth_root, strategy):
    check_exact_resume(tmp_path, tiny_model_dir, geosynth_root, strategy)


def check_exact_resume(tmp_path: Path, tiny_model_dir, geosynth_root, strategy: str, extra: tuple[str, ...] = ()) -> Path:
    """An uninterrupted run, the same run killed after its step-5 checkpoint and resumed: same
    exported weights bit for bit, same completions at every GRPO step (``extra``: more arguments).
    Returns the uninterrupted run's directory."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    for run in (full, cut):
        run.mkdir()

    def _args_of(run: Path) -> list[str]:
        return [*_args(run, tiny_model_dir, geosynth_root, strategy), *extra]

    done = subprocess.run(_args_of(full), cwd=full, env=_env(full),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-5000:]

    # kill the whole process group once a GRPO-phase checkpoint exists (wherever the run is then)
    proc = subprocess.Popen(_args_of(cut), cwd=cut, env=_env(cut),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 900
    while not (cut / "ckpt" / "step=5.ckpt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (cut / "policy").exists()

    resumed = subprocess.run([*_args_of(cut), "--ckpt_path=last"], cwd=cut,
                             env=_env(cut), capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-5000:]

    want, got = load_file(full / "policy" / "model.safetensors"), load_file(cut / "policy" / "model.safetensors")
    assert want.keys() == got.keys()
    differing = [k for k in want if not torch.equal(want[k], got[k])]
    assert not differing, f"{len(differing)} of {len(want)} tensors differ after resume, e.g. {differing[:3]}"
    # the same batches, hence the same completions, at every GRPO step (warm-start steps have none)
    assert _completions(cut) == _completions(full)
    assert sorted(_completions(full)) == list(range(4, STEPS + 1))  # logged after GRPO steps 3..8
    return full


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["single", "fsdp2"])
def test_resume_with_dynamic_sampling(tmp_path, tiny_model_dir, geosynth_root, strategy):
    """Steps that draw further batches (dynamic sampling, scored by the coin reward so that groups
    are dropped and refilled): the resumed run draws the same batches, hence ends at the same weights.
    The refills end epochs early, so the runs also cross epoch boundaries. Two FSDP2 ranks (their
    rounds decided together) rather than DDP too: the stricter collectives, and ~2 min each."""
    from spread_reward import CLI_ARGS as COIN_REWARD

    full = check_exact_resume(tmp_path, tiny_model_dir, geosynth_root, strategy,
                              ("--model.init_args.dynamic_sampling.enabled=true", *COIN_REWARD))
    rows = _completions(full)
    assert any(len(r) > 4 * 2 for r in rows.values()), {k: len(v) for k, v in rows.items()}  # some step refilled
    last = full / "ckpt" / "last.ckpt"
    last = torch.load(last / "meta.pt" if last.is_dir() else last, map_location="cpu", weights_only=False)  # FSDP2: a directory
    # 9 steps of 4 prompts ran past an epoch's batches (12 on one rank, 6 on each of two): only refills can do that
    assert all(position["epoch"] >= 1 for position in last["GeoSynth"]["positions"])


@pytest.mark.slow
def test_resume_with_two_batches_per_grpo_step(tmp_path, tiny_model_dir, geosynth_root):
    """``rollout_batches: 2``: every GRPO step rolls out its own batch and one drawn from the stream
    (8 prompts of a 4-image batch size); the resumed run draws the same ones."""
    full = check_exact_resume(tmp_path, tiny_model_dir, geosynth_root, "single", ("--model.init_args.rollout_batches=2",))
    keys = {step: {key for key, _ in rows} for step, rows in _completions(full).items()}
    # an epoch has 12 batches: 3 warm-start steps and GRPO steps 3-6 take 11, step 7 gets the epoch's
    # last batch alone (logged as step 8), step 8 the first two of the next epoch
    assert {step: len(k) for step, k in keys.items()} == {4: 8, 5: 8, 6: 8, 7: 8, 8: 4, 9: 8}
    last = torch.load(full / "ckpt" / "last.ckpt", map_location="cpu", weights_only=False)
    (position,) = last["GeoSynth"]["positions"]
    assert (position["epoch"], sum(position["consumed"])) == (1, 2)
