"""benchmarks/demo_seeds.py: the reward-rise criterion, the series, the table, and a --quick run end to end."""

from __future__ import annotations

import doctest
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("demo_seeds", REPO / "benchmarks" / "demo_seeds.py")
demo_seeds = importlib.util.module_from_spec(_spec)
sys.modules["demo_seeds"] = demo_seeds
_spec.loader.exec_module(demo_seeds)


def test_docstring_examples():
    assert doctest.testmod(demo_seeds).failed == 0


def test_window_rise_passing_by_hand():
    # 10 steps: windows of ceil(0.1 x 10) = 1 step; first 0.0, last 9.0, rise 9.0
    # mean 4.5; squared deviations sum to 82.5; sample variance 82.5 / 9 = 9.1667, sd 3.0277
    r = demo_seeds.window_rise([float(i) for i in range(10)])
    assert r["window"] == 1 and r["steps"] == 10
    assert (r["first_mean"], r["last_mean"], r["rise"]) == (0.0, 9.0, 9.0)
    assert r["step_sd"] == pytest.approx(math.sqrt(82.5 / 9))
    assert r["passed"]  # 9.0 > 2 x 3.0277 = 6.055


def test_window_rise_failing_by_hand():
    # noise around a flat line: first 1.0, last 1.0, rise 0 -> fails whatever the sd
    r = demo_seeds.window_rise([1.0, 0.0, 2.0, 1.0])
    assert (r["first_mean"], r["last_mean"], r["rise"]) == (1.0, 1.0, 0.0)
    assert r["step_sd"] == pytest.approx(math.sqrt(2 / 3))  # deviations 0, 1, 1, 0 -> 2 / 3
    assert not r["passed"]
    # a rise that is real but below 2 sd: [0, 2, 0, 2, 1]: first 0, last 1, rise 1;
    # mean 1, deviations^2 1 + 1 + 1 + 1 + 0 = 4, sd sqrt(4 / 4) = 1 -> 1 > 2 is false
    r = demo_seeds.window_rise([0.0, 2.0, 0.0, 2.0, 1.0])
    assert (r["rise"], r["step_sd"], r["passed"]) == (1.0, 1.0, False)


def test_window_rounds_up_and_is_at_least_one_step():
    # 11 steps x 0.1 = 1.1 -> 2-step windows: first (0 + 1) / 2, last (9 + 10) / 2
    r = demo_seeds.window_rise([float(i) for i in range(11)])
    assert (r["window"], r["first_mean"], r["last_mean"]) == (2, 0.5, 9.5)
    assert demo_seeds.window_rise([3.0, 5.0], fraction=0.1)["window"] == 1  # 0.2 -> 1
    assert demo_seeds.window_rise([1.0] * 20, fraction=0.25)["window"] == 5
    one = demo_seeds.window_rise([2.0])  # one step: no sd, cannot pass
    assert one["first_mean"] == one["last_mean"] == 2.0 and math.isnan(one["step_sd"]) and not one["passed"]
    assert not demo_seeds.window_rise([])["passed"]


def test_step_series_keeps_the_rows_with_the_column_one_per_step():
    rows = [  # CSVLogger rows: a warm-start step, validation, two GRPO steps (the second logged twice)
        {"step": "3", "warm_start/nll": "2.0", "train/reward": ""},
        {"step": "4", "val/acc@25km": "0.1", "train/reward": ""},
        {"step": "5", "train/reward": "0.7"},
        {"step": "4", "train/reward": "0.5"},
        {"step": "5", "train/reward": "0.8"},
    ]
    assert demo_seeds.step_series(rows, "train/reward") == [(4, 0.5), (5, 0.8)]


def test_beats_warm_start_is_strict_on_both_distances():
    warm = {"acc@25km": 0.1, "acc@2500km": 0.5}
    assert demo_seeds.beats_warm_start(warm, {"acc@25km": 0.2, "acc@2500km": 0.6})
    assert not demo_seeds.beats_warm_start(warm, {"acc@25km": 0.2, "acc@2500km": 0.5})  # equal is not above
    assert not demo_seeds.beats_warm_start(warm, {"acc@25km": 0.2})  # missing metric


def test_mean_sd_formatting():
    assert demo_seeds.mean_sd([0.1, 0.2, 0.3]) == "0.200 ± 0.100"  # sample sd: sqrt((0.01 + 0 + 0.01) / 2)
    assert demo_seeds.mean_sd([4.0, 6.0], digits=1) == "5.0 ± 1.4"  # sd sqrt(2) = 1.414
    assert demo_seeds.mean_sd([0.25]) == "0.250 (n=1)"
    assert demo_seeds.mean_sd([]) == "–"
    assert demo_seeds.mean_sd([float("nan"), 1.0, 3.0]) == "2.000 ± 1.414"


def _seed(seed, first, last, sd, warm25, grpo25, wall):
    rise = last - first
    window = {"first_mean": first, "last_mean": last, "rise": rise, "step_sd": sd, "passed": rise > 2 * sd}
    return {"seed": seed, "status": "passed", "problems": [], "reward": window, "geo": window, "wall_s": wall,
            "test": {"warm_start": {"acc@25km": warm25, "acc@2500km": 0.5}, "grpo": {"acc@25km": grpo25, "acc@2500km": 0.6}},
            "test_passed": grpo25 > warm25}


def test_table_rows_and_mean_sd_row():
    seeds = [_seed(0, 0.2, 0.8, 0.1, 0.1, 0.3, 100.0), _seed(1, 0.4, 0.6, 0.2, 0.2, 0.1, 120.0)]
    seeds.append({"seed": 2, "status": "failed", "problems": ["fit: exit status 1"], "wall_s": 5.0})
    lines = demo_seeds.markdown_table(seeds).splitlines()
    assert len(lines) == 2 + 3 + 1
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[:6] == ["0", "0.200", "0.800", "0.600", "0.100", "yes"]
    assert cells[11:] == ["0.100", "0.300", "0.500", "0.600", "yes", "100.0"]
    assert lines[3].split("|")[6].strip() == "no"  # rise 0.2 < 2 x 0.2
    assert lines[4].startswith("| 2 (failed: fit: exit status 1) | –")
    mean = [c.strip() for c in lines[5].strip("|").split("|")]
    assert mean[0] == "mean ± sd"
    assert mean[1] == "0.300 ± 0.141"  # first means 0.2, 0.4: sd sqrt(0.02) = 0.1414
    assert mean[5] == "1/3"  # passes counted over all seeds, the failed one included
    assert mean[-1] == "75.0 ± 61.4"  # walls 100, 120, 5 (the failed seed's time is reported too)


def test_quick_overrides_reach_the_checkpoint_callback_and_keep_the_csv_logger():
    config = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    resolved, args = demo_seeds.plan(config, quick=True)
    warm = resolved["model"]["init_args"]["warm_start"]["steps"]
    callbacks = json.loads(next(a for a in args if a.startswith("--trainer.callbacks=")).split("=", 1)[1])
    assert len(callbacks) == len(config["trainer"]["callbacks"])  # the whole list, not only its last item
    assert [c["init_args"]["every_n_train_steps"] for c in callbacks if "every_n_train_steps" in c.get("init_args", {})] == [warm]
    assert not any(a.startswith("--trainer.logger") for a in args)
    assert any("CSVLogger" in lg["class_path"] for lg in resolved["trainer"]["logger"])
    assert demo_seeds.plan(config, quick=False)[1] == []  # the full run is the demo as shipped


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path):
    out = tmp_path / "seeds"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "demo_seeds.py"), "--quick", "--seeds", "0",
                           "--out", str(out), "--python", sys.executable],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    (seed,) = summary["seeds"]
    assert seed["status"] == "passed", seed["problems"]
    quick = dict(demo_seeds.QUICK)
    grpo_steps = quick["trainer.max_steps"] - quick["model.init_args.warm_start.steps"]
    assert seed["warm_start_steps"] == quick["model.init_args.warm_start.steps"]
    assert len(seed["reward"]["series"]) == len(seed["geo"]["series"]) == grpo_steps
    for name in ("warm_start", "grpo"):
        assert {"acc@25km", "acc@2500km", "median_km"} <= set(seed["test"][name])
    # one model and one data set for every seed
    work = Path(seed["workdir"])
    assert (work / "artifacts" / "tiny-qwen2.5-vl").resolve() == (out / "shared" / "artifacts" / "tiny-qwen2.5-vl").resolve()
    assert (work / "artifacts" / "geosynth").is_symlink()
    text = (out / "demo_seeds.md").read_text()
    assert "| mean ± sd |" in text and "os.cpu_count()" in text and text in proc.stdout
