"""benchmarks/ablation.py: the table, the variants' commands, and a --quick run end to end."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("ablation", REPO / "benchmarks" / "ablation.py")
ablation = importlib.util.module_from_spec(_spec)
sys.modules["ablation"] = ablation
_spec.loader.exec_module(ablation)


def test_table_is_mean_sd_over_the_seeds_that_have_the_variant():
    keys = ablation.TABLE_KEYS
    seeds = [
        {"seed": 0, "test": {"warm": dict.fromkeys(keys, 0.2), "acc": dict.fromkeys(keys, 0.4)}},
        {"seed": 1, "test": {"warm": dict.fromkeys(keys, 0.4)}},  # its acc variant failed
    ]
    lines = ablation.markdown_table(seeds, (("warm", "warm start"), ("acc", "GRPO: accuracy"), ("full", "full"))).splitlines()
    warm = [c.strip() for c in lines[2].strip("|").split("|")]
    assert warm[0] == "warm start" and warm[-1] == "2"
    assert warm[1] == "0.300 ± 0.141"  # 0.2, 0.4: sd sqrt(0.02) = 0.1414
    acc = [c.strip() for c in lines[3].strip("|").split("|")]
    assert acc[1] == "0.400 (n=1)" and acc[-1] == "1"
    assert lines[4].split("|")[2].strip() == "–"  # no seed has it


def test_a_variant_config_follows_the_demo_config_and_the_warm_start_covers_the_run(tmp_path):
    runner = ablation.Ablation(tmp_path, sys.executable, quick=False, timeout_s=1.0)
    argv = runner.cli("fit", 3, "--config", "V.yaml", "--ckpt_path=x.ckpt")
    configs = [argv[i + 1] for i, a in enumerate(argv) if a == "--config"]
    assert configs == [str(ablation.demo_seeds.DEMO), "V.yaml"]  # later --config overrides the demo's rewards
    assert "--seed_everything=3" in argv and argv[-1] == "--ckpt_path=x.ckpt"
    sft = dict((n, e) for n, _, e in ablation.VARIANTS)["sft"]
    assert [a.format(max_steps=runner.max_steps) for a in sft] == [f"--model.init_args.warm_start.steps={runner.max_steps}"]
    assert runner.max_steps > runner.warm_start_steps > 0


def _columns(csv_path: Path) -> set[str]:
    with open(csv_path, newline="") as f:
        return set(next(csv.reader(f)))


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path):
    out = tmp_path / "ablation"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "ablation.py"), "--quick", "--seeds", "0",
                           "--out", str(out), "--python", sys.executable],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    (seed,) = summary["seeds"]
    assert seed["status"] == "passed", seed["problems"]
    names = [n for n, _, _ in ablation.VARIANTS]
    assert set(seed["test"]) == {"warm", *names}
    for metrics in seed["test"].values():
        assert set(ablation.ACC_KEYS) <= set(metrics)
    work = Path(seed["workdir"])
    max_steps = dict(ablation.demo_seeds.QUICK)["trainer.max_steps"]
    warm_steps = dict(ablation.demo_seeds.QUICK)["model.init_args.warm_start.steps"]
    start = torch.load(work / "warm/artifacts/demo/checkpoints/last.ckpt", weights_only=True, map_location="cpu")
    assert start["global_step"] == warm_steps
    heads = {"sft": set(), "acc": {"geo", "format"}, "acc_loc": {"geo", "loc", "format"}, "full": {"geo", "loc", "vis", "format"}}
    for name in names:
        run = work / name
        end = torch.load(run / "artifacts/demo/checkpoints/last.ckpt", weights_only=True, map_location="cpu")
        assert end["global_step"] == max_steps, name  # resumed from the warm start, ran to the same budget
        assert "Restored all states from the checkpoint at artifacts/demo/checkpoints/start.ckpt" in (run / "logs" / f"{name}.err").read_text()
        (fit_csv,) = [p for p in (run / "artifacts/demo/lightning_logs").rglob("metrics.csv") if "train/lr" in _columns(p) or "warm_start/nll" in _columns(p)]
        logged = {c.removeprefix("train/reward/") for c in _columns(fit_csv) if c.startswith("train/reward/") and not c.endswith("_std")}
        assert logged == heads[name], name
    # R_loc was trained by cli.py fit, and its checkpoint is what the localizability variants read
    assert (work / "acc_loc/artifacts/localizability").resolve() == (work / "rloc/artifacts/localizability").resolve()
    assert (work / "rloc/artifacts/localizability/checkpoints/last.ckpt").is_file()
    text = (out / "ablation.md").read_text()
    assert "| GRPO: accuracy + localizability + grounding |" in text and text in proc.stdout
