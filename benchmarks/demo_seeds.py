"""The demo (``make demo``) once per seed: reward rise during GRPO and test accuracy, mean ± sd over seeds.

    python benchmarks/demo_seeds.py --seeds 0 1 2 [--jobs 2] [--out artifacts/demo_seeds] [--python .venv/bin/python] [--quick]

Per seed S, in ``OUT/seed-S`` (the demo configuration's relative paths land there; ``cli.py`` and
``configs/demo.yaml`` are passed by absolute path):

    fit    python cli.py fit  --config configs/demo.yaml --seed_everything S
    warm   python cli.py test ... --ckpt_path artifacts/demo/checkpoints/step=<warm_start.steps>.ckpt
           --model.init_args.predictions_csv artifacts/demo/predictions_warm_start.csv
    grpo   python cli.py test ... --ckpt_path artifacts/demo/checkpoints/last.ckpt
           --model.init_args.predictions_csv artifacts/demo/predictions_grpo.csv

The tiny model and the GeoSynth data do not depend on S: they are built once in ``OUT/shared``
(``build_tiny_qwen2_5_vl`` with its defaults, as the policy builds it; the ``GeoSynth`` data module
of the configuration's ``data.init_args``, so its manifest matches what every seed asks for) and
``OUT/seed-S/<model_path>`` and ``OUT/seed-S/<data root>`` are symbolic links to them. Seeds differ
only by ``--seed_everything``: initialisation of the warm start, data order, sampling. A seed's
folder is emptied before it runs; ``OUT/shared`` is reused.

Criteria, per seed:

* reward rise: over the GRPO phase (the fit's CSVLogger rows with ``train/reward``, one value per
  step), the mean of the last 10 % of steps must exceed the mean of the first 10 % by more than
  twice ``step_sd``, where ``step_sd`` is the sample standard deviation (ddof=1) of the per-step
  values over the WHOLE GRPO phase (a trend inflates it, so the test is conservative). Windows are
  ``ceil(fraction x steps)`` steps, at least 1. Reported for ``train/reward`` (the weighted total,
  the criterion) and ``train/reward/geo`` (the accuracy head alone);
* test: after GRPO, ``test/acc@25km`` and ``test/acc@2500km`` strictly above the warm-start
  checkpoint's.

``OUT/summary.json`` (rewritten atomically after every seed) holds per-seed figures, the GRPO
series and both test runs' metrics; ``OUT/demo_seeds.md`` the table (one row per seed, then
mean ± sd with the sample sd over seeds), printed at the end. Stage logs: ``OUT/seed-S/logs``.
The exit status is 1 when a seed's pipeline failed (a stage's exit status, a missing checkpoint or
metric); criteria that are not met are reported in the table, not in the exit status.

``--quick`` runs the same pipeline on a tiny budget (``QUICK``): 4 warm-start + 4 GRPO steps, a
checkpoint every 4 steps, 48 / 8 / 8 GeoSynth images of 64 px, 16 new tokens.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "demo.yaml"

_spec = importlib.util.spec_from_file_location("rehearsal", REPO / "benchmarks" / "rehearsal.py")
rehearsal = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("rehearsal", rehearsal)  # dataclasses resolve their module by name
_spec.loader.exec_module(rehearsal)

REWARD, GEO = "train/reward", "train/reward/geo"
TEST_KEYS = ("acc@1km", "acc@25km", "acc@200km", "acc@750km", "acc@2500km", "median_km", "country_acc")
CRITERION_KEYS = ("acc@25km", "acc@2500km")
STAGE_TIMEOUT_S = 4 * 3600.0

# --quick: (dotted key of the resolved config, value); the checkpoint interval is set apart (callbacks list)
QUICK: tuple[tuple[str, object], ...] = (
    ("trainer.max_steps", 8),
    ("model.init_args.warm_start.steps", 4),
    ("trainer.val_check_interval", 4),
    ("trainer.limit_val_batches", 1),
    ("data.init_args.train_size", 48),
    ("data.init_args.val_size", 8),
    ("data.init_args.test_size", 8),
    ("data.init_args.image_size", 64),
    ("model.init_args.sampling.max_new_tokens", 16),
    ("model.init_args.eval_sampling.max_new_tokens", 16),
)


# ---------------------------------------------------------------------------------------------- figures
def window_rise(values: list[float], fraction: float = 0.1) -> dict:
    """Last-window mean minus first-window mean, against twice the sd of the whole series.

    >>> r = window_rise([0.0, 1.0, 2.0, 3.0])   # windows of ceil(0.4) = 1 step
    >>> r["rise"], round(r["step_sd"], 4), r["passed"]
    (3.0, 1.291, True)
    """
    values = [float(v) for v in values]
    n = len(values)
    nan = float("nan")
    if n == 0:
        return {"steps": 0, "window": 0, "first_mean": nan, "last_mean": nan, "rise": nan, "step_sd": nan, "passed": False}
    k = min(n, max(1, math.ceil(fraction * n)))
    first, last = statistics.fmean(values[:k]), statistics.fmean(values[-k:])
    sd = statistics.stdev(values) if n >= 2 else nan
    rise = last - first
    return {"steps": n, "window": k, "first_mean": first, "last_mean": last, "rise": rise, "step_sd": sd,
            "passed": bool(not math.isnan(sd) and rise > 2 * sd)}


def step_series(rows: list[dict[str, str]], column: str) -> list[tuple[int, float]]:
    """``(step, value)`` of the CSVLogger rows that have ``column``, one per step (the last), by step."""
    by_step: dict[int, float] = {}
    for row in rows:
        value = row.get(column, "")
        if value not in ("", None):
            by_step[int(float(row["step"]))] = float(value)
    return sorted(by_step.items())


def beats_warm_start(warm: dict[str, float], grpo: dict[str, float], keys: tuple[str, ...] = CRITERION_KEYS) -> bool:
    """After GRPO strictly above the warm start on every key (a missing metric fails)."""
    return all(k in warm and k in grpo and grpo[k] > warm[k] for k in keys)


def mean_sd(values: list[float], digits: int = 3) -> str:
    """``mean ± sd`` with the sample sd (ddof=1); one value: ``mean (n=1)``; none: ``–``.

    >>> mean_sd([1.0, 2.0, 3.0])
    '2.000 ± 1.000'
    """
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (n=1)"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _num(value, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _yes(flag) -> str:
    return "–" if flag is None else ("yes" if flag else "no")


COLUMNS = ("seed", "reward first 10%", "reward last 10%", "rise", "sd", "pass",
           "geo first 10%", "geo last 10%", "geo rise", "geo sd", "geo pass",
           "acc@25km warm", "acc@25km GRPO", "acc@2500km warm", "acc@2500km GRPO", "test pass", "wall (s)")
PASS_COLUMNS, WALL_COLUMN = (4, 9, 14), 15  # indices into _row_values (COLUMNS without "seed")


def _row_values(seed: dict) -> list:
    """The numbers of one seed's row, in ``COLUMNS`` order after the seed (booleans for the passes)."""
    r, g = seed.get("reward") or {}, seed.get("geo") or {}
    warm, grpo = (seed.get("test") or {}).get("warm_start") or {}, (seed.get("test") or {}).get("grpo") or {}
    return [r.get("first_mean"), r.get("last_mean"), r.get("rise"), r.get("step_sd"), r.get("passed"),
            g.get("first_mean"), g.get("last_mean"), g.get("rise"), g.get("step_sd"), g.get("passed"),
            warm.get("acc@25km"), grpo.get("acc@25km"), warm.get("acc@2500km"), grpo.get("acc@2500km"),
            seed.get("test_passed"), seed.get("wall_s")]


def markdown_table(seeds: list[dict]) -> str:
    """One row per seed and a mean ± sd row (sample sd over the seeds that have the figure)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    rows = [_row_values(s) for s in seeds]
    for seed, values in zip(seeds, rows):
        cells = [_yes(v) if i in PASS_COLUMNS else _num(v, 1 if i == WALL_COLUMN else 3) for i, v in enumerate(values)]
        label = str(seed["seed"]) + ("" if seed.get("status") == "passed" else f" (failed: {'; '.join(seed.get('problems', []))})")
        lines.append("| " + " | ".join([label] + cells) + " |")
    agg = []
    for i in range(len(COLUMNS) - 1):
        column = [row[i] for row in rows]
        if i in PASS_COLUMNS:
            agg.append(f"{sum(v is True for v in column)}/{len(column)}")
        else:
            agg.append(mean_sd([v for v in column if v is not None], 1 if i == WALL_COLUMN else 3))
    lines.append("| mean ± sd | " + " | ".join(agg) + " |")
    return "\n".join(lines)


def report_markdown(summary: dict) -> str:
    seeds = summary["seeds"]
    return "\n".join([
        f"# Demo over seeds {', '.join(str(s['seed']) for s in seeds)}" + (" (--quick)" if summary["quick"] else ""),
        "",
        markdown_table(seeds),
        "",
        "Notes: reward = `train/reward` (weighted total), geo = `train/reward/geo`, over the GRPO steps only; "
        "first / last 10% = mean over ceil(0.1 x GRPO steps) steps (at least 1); sd = sample standard deviation "
        "(ddof=1) of the per-step values over the whole GRPO phase; pass = rise > 2 x sd. "
        "Test: `test/acc@25km` and `test/acc@2500km` of the warm-start checkpoint "
        f"(step={summary['warm_start_steps']}) and of last.ckpt; test pass = GRPO strictly above on both. "
        "mean ± sd: sample sd over seeds; pass columns count the seeds that pass.",
        "",
        f"Machine: {summary['machine']['cpu_count']} CPUs (os.cpu_count()), {summary['machine']['platform']}, "
        f"Python {summary['machine']['python']}.",
        "",
        f"Command: `{summary['command']}`",
        "",
    ])


# ---------------------------------------------------------------------------------------------- configuration
def _get(config: dict, dotted: str):
    node = config
    for key in dotted.split("."):
        node = node[key]
    return node


def _set(config: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


def plan(config: dict, quick: bool) -> tuple[dict, list[str]]:
    """(the configuration as the runs resolve it, the override arguments of every cli.py command)."""
    config = json.loads(json.dumps(config))
    args: list[str] = []
    if quick:
        for key, value in QUICK:
            _set(config, key, value)
            args.append(f"--{key}={value}")
        # the warm start's last step must have its own checkpoint: step=<warm_start.steps>.ckpt
        callbacks = rehearsal.callbacks_with_interval(_get(config, "trainer.callbacks"),
                                                      _get(config, "model.init_args.warm_start.steps"))
        args.append(f"--trainer.callbacks={callbacks}")
    return config, args


# ---------------------------------------------------------------------------------------------- running
class Runner:
    def __init__(self, out: Path, python: str, quick: bool, timeout_s: float = STAGE_TIMEOUT_S) -> None:
        self.out, self.python, self.quick, self.timeout_s = out, python, quick, timeout_s
        self.config, self.overrides = plan(yaml.safe_load(DEMO.read_text()), quick)
        self.model_path = _get(self.config, "model.init_args.model_path")
        self.data_root = _get(self.config, "data.init_args.root")
        self.log_root = Path(_get(self.config, "trainer.default_root_dir"))
        self.warm_start_steps = int(_get(self.config, "model.init_args.warm_start.steps"))

    def env(self) -> dict:
        env = dict(os.environ)
        env.update(OMP_NUM_THREADS="1", WANDB_MODE="offline", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        return env

    def build_shared(self) -> None:
        """The tiny model and the GeoSynth data, once, in OUT/shared (seed-independent)."""
        shared = self.out / "shared"
        shared.mkdir(parents=True, exist_ok=True)
        data_args = dict(_get(self.config, "data.init_args"))
        data_args["root"] = str((shared / self.data_root).resolve())
        script = (
            "import json, sys\n"
            "from globe.models.tiny import build_tiny_qwen2_5_vl\n"
            "from data_modules.geosynth import GeoSynth\n"
            "build_tiny_qwen2_5_vl(sys.argv[1])\n"
            "GeoSynth(**json.loads(sys.argv[2])).prepare_data()\n"
        )
        argv = [self.python, "-c", script, str((shared / self.model_path).resolve()), json.dumps(data_args)]
        result = rehearsal.run_command(argv, REPO, self.env(), self.timeout_s, self.out / "logs" / "shared")
        if result.returncode != 0:
            raise RuntimeError(f"building OUT/shared failed (exit status {result.returncode}):\n"
                               + rehearsal._tail(result.stderr_log))

    def cli(self, subcommand: str, seed: int, *extra: str) -> list[str]:
        return [self.python, str(REPO / "cli.py"), subcommand, "--config", str(DEMO), f"--seed_everything={seed}",
                *self.overrides, *extra]

    def metrics_files(self, work: Path) -> set[Path]:
        return set((work / self.log_root).rglob("metrics.csv"))

    def run_seed(self, seed: int) -> dict:
        work = self.out / f"seed-{seed}"
        record: dict = {"seed": seed, "status": "passed", "problems": [], "stages": {}, "workdir": str(work)}
        start = time.monotonic()
        try:
            self._run_seed(seed, work, record)
        except Exception as exn:  # reported in the table and the summary, never hidden
            record["status"] = "failed"
            record["problems"].append(f"{type(exn).__name__}: {exn}")
        record["wall_s"] = round(time.monotonic() - start, 1)
        return record

    def _stage(self, record: dict, work: Path, name: str, argv: list[str]):
        result = rehearsal.run_command(argv, work, self.env(), self.timeout_s, work / "logs" / name)
        record["stages"][name] = {"command": " ".join(argv), "returncode": result.returncode, "wall_s": result.wall_s,
                                  "peak_rss_mib": result.memory.get("rank_mib", {}).get("0"),
                                  "logs": [result.stdout_log, result.stderr_log]}
        if result.timed_out or result.returncode != 0:
            why = f"timed out after {result.wall_s} s" if result.timed_out else f"exit status {result.returncode}"
            record["stages"][name]["stderr_tail"] = rehearsal._tail(result.stderr_log)
            raise RuntimeError(f"{name}: {why} (see {result.stderr_log})")
        return result

    def _run_seed(self, seed: int, work: Path, record: dict) -> None:
        if work.exists():
            shutil.rmtree(work)
        for rel in (self.model_path, self.data_root):
            link = work / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to((self.out / "shared" / rel).resolve(), target_is_directory=True)

        self._stage(record, work, "fit", self.cli("fit", seed))
        fit_csvs = [p for p in self.metrics_files(work) if REWARD in (rehearsal.csv_rows(p)[:1] or [{}])[0]]
        if not fit_csvs:
            raise RuntimeError(f"fit: no metrics.csv with a {REWARD} column under {work / self.log_root}")
        rows = rehearsal.csv_rows(min(fit_csvs))
        record["metrics_csv"] = str(min(fit_csvs))
        warm_start_steps = self._resolved_warm_start_steps(work)
        record["warm_start_steps"] = warm_start_steps
        for key, column in (("reward", REWARD), ("geo", GEO)):
            series = step_series(rows, column)  # GRPO steps only: the warm start logs under warm_start/
            record[key] = {"column": column, **window_rise([v for _, v in series]), "series": series}

        ckpts = work / self.log_root / "checkpoints"
        record["test"] = {}
        for name, ckpt in (("warm_start", ckpts / f"step={warm_start_steps}.ckpt"), ("grpo", ckpts / "last.ckpt")):
            if not ckpt.exists():
                raise RuntimeError(f"test {name}: no checkpoint {ckpt}")
            before = self.metrics_files(work)
            predictions = self.log_root / f"predictions_{name}.csv"
            result = self._stage(record, work, f"test_{name}", self.cli(
                "test", seed, f"--ckpt_path={ckpt.relative_to(work)}", f"--model.init_args.predictions_csv={predictions}"))
            record["test"][name] = self._test_metrics(result, self.metrics_files(work) - before)
        missing = [f"{n}: {k}" for n, m in record["test"].items() for k in CRITERION_KEYS if k not in m]
        if missing:
            raise RuntimeError(f"test metrics missing ({', '.join(missing)})")
        record["test_passed"] = beats_warm_start(record["test"]["warm_start"], record["test"]["grpo"])

    def _resolved_warm_start_steps(self, work: Path) -> int:
        """``warm_start_steps`` of the configuration the fit saved (LightningCLI's config.yaml), else the plan's."""
        for path in sorted((work / self.log_root).rglob("config.yaml")):
            try:
                return int(_get(yaml.safe_load(path.read_text()), "model.init_args.warm_start.steps"))
            except (KeyError, TypeError, ValueError, yaml.YAMLError):
                continue
        return self.warm_start_steps

    @staticmethod
    def _test_metrics(result, new_csvs: set[Path]) -> dict[str, float]:
        """``test/*`` metrics (prefix dropped) from the run's own metrics.csv, else from the printed table."""
        metrics: dict[str, float] = {}
        for path in sorted(new_csvs):
            for row in rehearsal.csv_rows(path):
                metrics.update({k: float(v) for k, v in row.items() if k.startswith("test/") and v not in ("", None)})
        if not metrics:
            metrics = rehearsal.printed_metrics(Path(result.stdout_log).read_text(errors="replace"))
        return {k.removeprefix("test/"): v for k, v in metrics.items() if k.startswith("test/")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at once")
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "demo_seeds")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the cli.py commands")
    parser.add_argument("--quick", action="store_true", help="tiny budget (QUICK): the pipeline in a minute or two")
    parser.add_argument("--timeout", type=float, default=STAGE_TIMEOUT_S, help="seconds per stage")
    args = parser.parse_args(argv)

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    runner = Runner(out, args.python, args.quick, args.timeout)
    command = shlex.join([sys.executable, *sys.argv] if argv is None else ["benchmarks/demo_seeds.py", *argv])
    summary = {
        "command": command,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "quick": args.quick,
        "overrides": runner.overrides,
        "warm_start_steps": runner.warm_start_steps,
        "criteria": {
            "reward": "mean of the last ceil(10%) GRPO steps - mean of the first ceil(10%) > 2 x step_sd, "
                      "step_sd = sample sd (ddof=1) of the per-step values over the whole GRPO phase",
            "test": "after GRPO, test acc@25km and acc@2500km strictly above the warm-start checkpoint's",
        },
        "seeds": [],
    }
    lock = threading.Lock()

    def done(record: dict) -> dict:
        with lock:
            summary["seeds"] = sorted(summary["seeds"] + [record], key=lambda s: args.seeds.index(s["seed"]))
            rehearsal.write_summary(out / "summary.json", summary)
            print(f"=== seed {record['seed']}: {record['status']} after {record['wall_s']} s {record['problems'] or ''}",
                  flush=True)
        return record

    try:
        runner.build_shared()
    except RuntimeError as exn:
        for seed in args.seeds:
            done({"seed": seed, "status": "failed", "problems": [str(exn).splitlines()[0]], "wall_s": 0.0})
    else:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            list(pool.map(lambda s: done(runner.run_seed(s)), args.seeds))

    summary["passed"] = all(s["status"] == "passed" for s in summary["seeds"])
    rehearsal.write_summary(out / "summary.json", summary)
    text = report_markdown(summary)
    (out / "demo_seeds.md").write_text(text)
    print(text)
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
