"""``callbacks.data_budget.DataBudget`` through ``cli.py``: a run under dynamic sampling stops after
the step that consumed its budget of training batches (refills included; the count equals the data
position's), ``last.ckpt`` holds that step, and a resumed run keeps counting from the checkpoint."""

from __future__ import annotations

import csv

import pytest
import torch

from test_cli_dynamic_sampling import DS, _fit, _steps

BUDGET = ("--trainer.callbacks+=callbacks.data_budget.DataBudget",)


def _budget_rows(run) -> list[dict[str, float]]:
    rows = list(csv.DictReader(open(next(run.rglob("metrics.csv")))))
    return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in rows if r.get("train/data_budget/batches")]


def test_refuses_an_empty_budget():
    from callbacks.data_budget import DataBudget

    with pytest.raises(ValueError, match="max_batches must be >= 1"):
        DataBudget(max_batches=0)


@pytest.mark.slow
def test_dynamic_sampling_run_stops_on_its_batch_budget(tmp_path, tiny_model_dir, geosynth_root):
    run = tmp_path / "ds"
    _fit(run, tiny_model_dir, geosynth_root, "--trainer.max_steps=40", *BUDGET, "--trainer.callbacks.max_batches=7")
    steps = _steps(run)
    consumed = [s[DS + "tries"] for s in steps]  # batches per step: its own + its refills
    # it stopped after the first step whose running total reached 7, well before max_steps
    totals = [sum(consumed[: i + 1]) for i in range(len(consumed))]
    assert totals[-1] >= 7 and all(t < 7 for t in totals[:-1]), totals
    assert len(steps) < 40
    assert [r["train/data_budget/batches"] for r in _budget_rows(run)] == totals
    ckpt = torch.load(run / "ckpt" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == len(steps)
    assert ckpt["callbacks"]["DataBudget"] == {"batches": totals[-1]}
    (position,) = ckpt["GeoSynth"]["positions"]
    assert sum(position["consumed"]) == totals[-1]


@pytest.mark.slow
def test_resumed_run_counts_from_the_checkpoint(tmp_path, tiny_model_dir, geosynth_root):
    """3 steps of one batch (no dynamic sampling), then a resume to a budget of 5: 2 more steps."""
    run = tmp_path / "plain"
    plain = ("--model.init_args.dynamic_sampling.enabled=false",)
    _fit(run, tiny_model_dir, geosynth_root, *plain, "--trainer.max_steps=3", *BUDGET, "--trainer.callbacks.max_batches=5")
    first = torch.load(run / "ckpt" / "last.ckpt", map_location="cpu", weights_only=False)
    assert (first["global_step"], first["callbacks"]["DataBudget"]) == (3, {"batches": 3})
    _fit(run, tiny_model_dir, geosynth_root, *plain, "--trainer.max_steps=40", *BUDGET, "--trainer.callbacks.max_batches=5",
         f"--ckpt_path={run / 'ckpt' / 'last.ckpt'}")
    last = torch.load(run / "ckpt" / "last.ckpt", map_location="cpu", weights_only=False)
    assert (last["global_step"], last["callbacks"]["DataBudget"]) == (5, {"batches": 5})
