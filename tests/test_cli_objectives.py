"""End to end through ``cli.py``: a few GRPO steps with configs/grpo/dapo.yaml and
configs/grpo/gspo.yaml composed on the demo; the objective's settings reach the policy and its
numbers are logged."""

from __future__ import annotations

import csv

import pytest
import yaml

from spread_reward import CLI_ARGS as COIN_REWARD
from test_cli_e2e import REPO, _cli


def _fit(tmp_path, tiny_model_dir, geosynth_root, objective: str, *extra: str) -> tuple[set[str], list[dict], dict]:
    run = tmp_path / objective
    _cli(
        "fit",
        "--config", str(REPO / "configs/demo.yaml"),
        "--config", str(REPO / f"configs/grpo/{objective}.yaml"),
        f"--model.init_args.model_path={tiny_model_dir}",
        "--model.init_args.group_size=2",
        "--model.init_args.sampling.max_new_tokens=8",
        "--model.init_args.eval_sampling.max_new_tokens=8",
        "--model.init_args.warm_start.steps=0",
        "--model.init_args.optim.warmup_steps=0",
        f"--data.init_args.root={geosynth_root}",
        "--data.init_args.train_size=48", "--data.init_args.val_size=8", "--data.init_args.test_size=8",
        "--data.init_args.batch_size=2",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        f"--trainer.logger.init_args.save_dir={run}",
        "--trainer.callbacks=[]",
        "--trainer.enable_checkpointing=false",
        f"--trainer.default_root_dir={run}",
        "--trainer.val_check_interval=2", "--trainer.limit_val_batches=1",  # validate after 2 batches
        *extra,
        cwd=tmp_path,
    )
    rows = list(csv.DictReader(open(next(run.rglob("metrics.csv")))))
    hparams = yaml.safe_load(open(next(run.rglob("hparams.yaml"))))
    return set().union(*(r.keys() for r in rows)), rows, hparams


@pytest.mark.slow
def test_dapo_config_through_cli(tmp_path, tiny_model_dir, geosynth_root):
    # the random model's real rewards are all 0: with dynamic sampling (on in dapo.yaml) no group would
    # ever be kept; the coin reward makes half of them informative
    keys, rows, hparams = _fit(tmp_path, tiny_model_dir, geosynth_root, "dapo", "--trainer.max_steps=2", *COIN_REWARD)
    loss = hparams["loss"]
    assert loss["loss_type"] == "dapo" and loss["epsilon_high"] == 0.28 and loss["mask_truncated_completions"]
    assert hparams["dynamic_sampling"] == {"enabled": True, "max_tries": 3, "min_std": 0.0}
    for key in ("train/loss", "train/truncated_fraction", "train/masked_truncated_fraction", "train/clip_fraction", "val/acc@25km",
                "train/dynamic_sampling/refills", "train/dynamic_sampling/kept_groups"):
        assert key in keys, f"{key} not logged; got {sorted(keys)}"
    # every truncated completion is masked, so the two fractions agree at every step
    steps = [r for r in rows if r.get("train/truncated_fraction")]
    assert steps and all(r["train/masked_truncated_fraction"] == r["train/truncated_fraction"] for r in steps)


@pytest.mark.slow
def test_gspo_config_with_best_of_k_through_cli(tmp_path, tiny_model_dir, geosynth_root):
    # num_iterations 2: two optimiser steps (trainer steps) per batch, so 4 steps for 2 batches
    keys, rows, hparams = _fit(tmp_path, tiny_model_dir, geosynth_root, "gspo", "--trainer.max_steps=4",
                               "--model.init_args.eval_group_size=2")
    assert hparams["loss"]["loss_type"] == "gspo" and hparams["loss"]["epsilon"] == 3e-4 and hparams["optim"]["num_iterations"] == 2
    for key in ("train/loss", "train/ratio_mean", "train/clip_fraction", "val/acc@25km", "val/best_of_k/acc@25km",
                "val/best_of_k/median_km"):
        assert key in keys, f"{key} not logged; got {sorted(keys)}"
    # masking is off here: nothing is masked whatever is truncated
    assert all(float(r["train/masked_truncated_fraction"]) == 0.0 for r in rows if r.get("train/masked_truncated_fraction"))
