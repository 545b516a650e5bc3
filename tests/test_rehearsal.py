"""benchmarks/rehearsal.py: the override table, the paths it relies on, memory polling, summaries."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("rehearsal", REPO / "benchmarks" / "rehearsal.py")
rehearsal = importlib.util.module_from_spec(_spec)
sys.modules["rehearsal"] = rehearsal  # dataclasses resolve their module by name
_spec.loader.exec_module(rehearsal)


def _yaml(path: str) -> dict:
    return yaml.safe_load((REPO / path).read_text())


def test_docs_print_the_override_table():
    assert rehearsal.overrides_markdown() in (REPO / "docs" / "rehearsal.md").read_text()


def test_paths_are_the_ones_the_shipped_configs_name():
    # the rehearsal puts its data and reads its outputs where the configs say; no config path is overridden
    mp16, test, paper, rloc = _yaml(rehearsal.MP16), _yaml(rehearsal.IM2GPS3K), _yaml(rehearsal.PAPER), _yaml(rehearsal.RLOC)
    assert mp16["data"]["init_args"]["train_shards"] == rehearsal.TRAIN_SHARDS
    assert mp16["data"]["init_args"]["val_shards"] == rehearsal.VAL_SHARDS
    assert test["data"]["init_args"]["csv_path"] == rehearsal.TEST_CSV
    assert test["data"]["init_args"]["images"] == rehearsal.TEST_IMAGES
    assert test["model"]["init_args"]["predictions_csv"] == rehearsal.TEST_PREDICTIONS
    assert rloc["model"]["init_args"]["model_path"] == rehearsal.TINY_MODEL
    heads = {h["init_args"]["name"]: h["init_args"] for h in paper["model"]["init_args"]["rewards"]}
    assert heads["loc"]["checkpoint"] == rehearsal.RLOC_CKPT
    dirpaths = {c.get("init_args", {}).get("dirpath") for c in paper["trainer"]["callbacks"]}
    assert {rehearsal.GRPO_CKPT_DIR, rehearsal.GRPO_EXPORT} <= dirpaths


def test_callbacks_override_changes_only_the_checkpoint_interval():
    shipped = _yaml(rehearsal.PAPER)["trainer"]["callbacks"]
    changed = json.loads(rehearsal.paper_callbacks(3))
    assert len(changed) == len(shipped)
    diffs = [(a, b) for a, b in zip(shipped, changed) if a != b]
    assert len(diffs) == 1
    before, after = diffs[0]
    assert after["init_args"]["every_n_train_steps"] == 3
    assert {**after["init_args"], "every_n_train_steps": before["init_args"]["every_n_train_steps"]} == before["init_args"]


def test_plan_and_overrides_per_stage():
    plan = rehearsal.Plan(ranks=8, steps=4)
    assert (plan.ckpt_every, plan.val_every, plan.train_images) == (2, 2, 68)  # checkpoint halfway; 34 shards x 2
    grpo = dict(a.split("=", 1) for a in rehearsal.overrides_for("grpo", plan))
    assert grpo["--trainer.devices"] == "8" and grpo["--trainer.strategy.init_args.data_parallel_size"] == "8"
    assert grpo["--trainer.strategy.init_args.process_group_backend"] == "gloo"
    assert grpo["--model.init_args.engine"] == "hf" and grpo["--trainer.max_steps"] == "4"
    test = dict(a.split("=", 1) for a in rehearsal.overrides_for("test", plan))
    assert "--trainer.devices" not in test  # the test config's one device stays
    vllm = rehearsal.overrides_for("grpo", rehearsal.Plan(ranks=2, steps=2, engine="vllm"))
    assert not any(a.startswith("--model.init_args.engine") for a in vllm)  # the paper's engine stays
    assert not any("max_new_tokens" in a for a in rehearsal.overrides_for("grpo", rehearsal.Plan(2, 2, new_tokens=0)))


@pytest.mark.slow
def test_the_cli_accepts_the_overrides(tmp_path):
    """``--print_config`` resolves the paper configs plus the overrides: no misspelt key, the values land."""
    plan = rehearsal.Plan(ranks=2, steps=4)
    argv = [sys.executable, str(REPO / "cli.py"), "fit", "--config", str(REPO / rehearsal.PAPER), "--config",
            str(REPO / rehearsal.MP16), *rehearsal.overrides_for("grpo", plan), "--print_config"]
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = yaml.safe_load(proc.stdout)
    trainer = config["trainer"]
    assert trainer["accelerator"] == "cpu" and str(trainer["devices"]) == "2" and trainer["max_steps"] == 4
    assert trainer["strategy"]["init_args"]["process_group_backend"] == "gloo"
    assert trainer["strategy"]["init_args"]["data_parallel_size"] == 2
    intervals = [c["init_args"].get("every_n_train_steps") for c in trainer["callbacks"] if c.get("init_args")]
    assert 2 in intervals
    assert config["model"]["init_args"]["sampling"]["max_new_tokens"] == plan.new_tokens


def test_memory_per_rank_and_worker(tmp_path):
    """A rank 0 that starts a 'rank 1' (its own LOCAL_RANK) that forks a worker touching 64 MiB."""
    script = tmp_path / "tree.py"
    script.write_text(textwrap.dedent("""
        import os, subprocess, sys, time
        if os.environ.get("LOCAL_RANK") != "1":
            subprocess.run([sys.executable, __file__], env={**os.environ, "LOCAL_RANK": "1"}, check=True)
        else:
            pid = os.fork()
            if pid == 0:
                block = bytearray(64 * 2**20)
                for i in range(0, len(block), 4096):
                    block[i] = 1
                time.sleep(1.5)
                os._exit(0)
            os.waitpid(pid, 0)
    """))
    result = rehearsal.run_command([sys.executable, str(script)], tmp_path, {"PATH": "/usr/bin:/bin"}, 60,
                                   tmp_path / "logs" / "tree")
    assert result.returncode == 0 and not result.timed_out
    memory = result.memory
    assert set(memory["rank_mib"]) == {"0", "1"}
    assert memory["workers"]["1"]["count"] == 1
    assert memory["workers"]["1"]["max_mib"] >= 64  # the worker's own high-water mark
    assert memory["rank_mib"]["1"] < 64  # and not its rank's


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_kill_and_timeout_end_the_whole_session(tmp_path):
    # a parent and its child (which prints its pid), both sleeping: the kill must reach the child too
    sleeper = [sys.executable, "-c", "import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', "
               "'import time; time.sleep(60)']); print(p.pid, flush=True); time.sleep(60)"]
    env = {"PATH": "/usr/bin:/bin"}
    calls = []
    killed = rehearsal.run_command(sleeper, tmp_path, env, 60, tmp_path / "a",
                                   kill_when=lambda: calls.append(1) or len(calls) > 4)
    assert killed.killed and not killed.timed_out and killed.returncode == -9 and killed.wall_s < 30
    child = int(Path(killed.stdout_log).read_text().split()[0])
    time.sleep(0.5)
    assert not _alive(child)
    timed = rehearsal.run_command(sleeper, tmp_path, env, 2, tmp_path / "b")
    assert timed.timed_out and not timed.killed and timed.returncode == -9
    child = int(Path(timed.stdout_log).read_text().split()[0])
    time.sleep(0.5)
    assert not _alive(child)


def test_summary_is_written_atomically(tmp_path):
    path = tmp_path / "out" / "summary.json"
    rehearsal.write_summary(path, {"passed": False, "stages": [1]})
    rehearsal.write_summary(path, {"passed": True, "stages": [1, 2]})
    assert json.loads(path.read_text()) == {"passed": True, "stages": [1, 2]}
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]  # no temporary file left


def test_figures_from_outputs(tmp_path):
    rich = "┃        Test metric        ┃       DataLoader 0        ┃\n│       test/acc@25km       │    0.1875    │\n" \
           "│      test/median_km       │            inf            │"
    plain = "      test/acc@1km              0.0625\n"
    assert rehearsal.printed_metrics(rich) == {"test/acc@25km": 0.1875, "test/median_km": float("inf")}
    assert rehearsal.printed_metrics(plain) == {"test/acc@1km": 0.0625}
    ckpt = tmp_path / "ckpt"
    (ckpt / "epoch=0-step=2.ckpt").mkdir(parents=True)
    (ckpt / "epoch=0-step=2.ckpt" / "meta.pt").write_bytes(b"x")  # a complete distributed checkpoint
    (ckpt / "epoch=0-step=4.ckpt").mkdir()  # shards without metadata: incomplete
    (ckpt / ".epoch=0-step=6.ckpt.partial").mkdir()  # still being written
    (ckpt / "epoch=0-step=1.ckpt").write_bytes(b"x")  # a single-file checkpoint
    assert rehearsal.checkpoint_steps(ckpt) == [1, 2]
    for name in ("loc-0-0.598.ckpt", "loc-1-0.731.ckpt", "last.ckpt"):
        (ckpt / name).write_bytes(b"x")
    assert rehearsal.rloc_auroc(ckpt) == 0.731


def run_short_rehearsal(out: Path, *extra: str, python: str = sys.executable) -> dict:
    """``benchmarks/rehearsal.py --ranks 2 --steps 2`` (the CI variant); its summary.json."""
    proc = subprocess.run([python, str(REPO / "benchmarks" / "rehearsal.py"), "--ranks", "2", "--steps", "2",
                           "--out", str(out), "--python", python, *extra],
                          capture_output=True, text=True, timeout=1500)
    summary = json.loads((out / "summary.json").read_text())
    failed = {s["name"]: (s["problems"], s["stderr_tail"][-2000:]) for s in summary["stages"] if s["status"] != "passed"}
    assert proc.returncode == 0 and summary["passed"], (failed, proc.stdout[-3000:])
    return {s["name"]: s for s in summary["stages"]}


def check_short_rehearsal(stages: dict) -> None:
    assert list(stages) == list(rehearsal.STAGES)
    assert stages["data"]["figures"]["train_shards"] == 34 and stages["data"]["figures"]["val_shards"] == 4
    assert stages["rloc"]["figures"]["checkpoint"] == rehearsal.RLOC_CKPT
    grpo, resume = stages["grpo"]["figures"], stages["resume"]["figures"]
    assert grpo["killed"] and grpo["checkpoint_steps"] == [1]  # SIGKILL after the step-1 checkpoint
    assert resume["restored"] and resume["resumed_from_step"] == 1 and resume["final_step"] == 2 and resume["exported"]
    assert set(stages["grpo"]["peak_rss_mib"][0]["rank_mib"]) == {"0", "1"}  # both ranks measured
    assert stages["test"]["figures"]["predictions"] == 32 and stages["test"]["figures"]["metrics"]["test/n"] == 32
    assert stages["predict"]["figures"]["predictions"] == 32
    export = stages["export"]["figures"]
    assert export["score"]["n"] == 32 and export["same_answers_as_checkpoint_test"] == "32/32"


@pytest.mark.slow
@pytest.mark.distributed
def test_short_rehearsal_passes_every_stage(tmp_path):
    """The whole pipeline with the shipped paper configs on 2 CPU ranks (about 1.5 min on 2 cores)."""
    check_short_rehearsal(run_short_rehearsal(tmp_path / "rehearsal"))
