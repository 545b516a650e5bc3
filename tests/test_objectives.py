"""benchmarks/objectives.py: the variants' commands (budget, dynamic sampling, configs) and the tables."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("objectives", REPO / "benchmarks" / "objectives.py")
objectives = importlib.util.module_from_spec(_spec)
sys.modules["objectives"] = objectives
_spec.loader.exec_module(objectives)


def test_every_variant_gets_the_same_batch_budget_and_its_own_objective(tmp_path):
    runner = objectives.Objectives(tmp_path, sys.executable, quick=False, timeout_s=1.0)
    assert runner.budget == runner.max_steps - runner.warm_start_steps > 0
    variants = {name: extra for name, _, extra in objectives.VARIANTS}
    assert set(variants) == {"grpo", "dapo", "grpo_ds", "dapo_ds"}
    for name, extra in variants.items():
        argv = runner.cli("fit", 1, *extra, *objectives.budget_args(runner.budget), "--ckpt_path=s.ckpt")
        assert f"--trainer.callbacks.max_batches={runner.budget}" in argv
        dapo = str(REPO / "configs/grpo/dapo.yaml") in argv
        assert dapo == name.startswith("dapo")
        assert ("--model.init_args.loss.loss_type=grpo" in argv) == name.startswith("grpo")
        # dynamic sampling: on in the shipped dapo config, switched on / off explicitly otherwise
        if name == "dapo":
            assert "--model.init_args.dynamic_sampling.enabled=false" in argv
        if name == "grpo_ds":
            assert "--model.init_args.dynamic_sampling.enabled=true" in argv
        if name in ("grpo", "dapo_ds"):
            assert not any(a.startswith("--model.init_args.dynamic_sampling.") for a in argv)


def test_train_table_is_mean_sd_of_steps_and_batches():
    seeds = [{"train": {"grpo": {"steps": 60, "batches": 60}, "grpo_ds": {"steps": 50, "batches": 61}}},
             {"train": {"grpo": {"steps": 60, "batches": 60}, "grpo_ds": {"steps": 52, "batches": 60}}}]
    lines = objectives.train_table(seeds).splitlines()
    rows = {l.split("|")[1].strip(): [c.strip() for c in l.strip("|").split("|")] for l in lines[2:]}
    assert rows["grpo"][1:] == ["60.0 ± 0.0", "60.0 ± 0.0", "2"]
    assert rows["grpo + dynamic sampling"][1:] == ["51.0 ± 1.4", "60.5 ± 0.7", "2"]  # sd of 50, 52: sqrt(2)
    assert rows["dapo"][-1] == "0"
