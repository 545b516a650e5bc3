"""The paper's reward ablation at toy scale: from one warm-start checkpoint, the same extra budget
of training images for each variant, held-out test accuracy, mean ± sd over seeds.

    python benchmarks/ablation.py --seeds 0 1 2 [--jobs 2] [--out artifacts/ablation] [--python .venv/bin/python] [--quick]

Per seed S, in ``OUT/seed-S`` (every ``cli.py`` command runs with ``--seed_everything S``):

    warm     python cli.py fit --config configs/demo.yaml --trainer.max_steps W     (W = warm_start.steps)
             the supervised warm start alone; its last.ckpt is every variant's starting point
    rloc     python cli.py fit --config configs/reward/localizability.yaml          (R_loc on GeoSynth)
    VARIANT  python cli.py fit --config configs/demo.yaml [--config configs/ablation/V.yaml]
             --ckpt_path <the warm start's last.ckpt>, to the demo's max_steps, in OUT/seed-S/VARIANT
    test     python cli.py test --config configs/demo.yaml --data.init_args.test_format=shards
             --ckpt_path ...last.ckpt, for the warm start and for each variant (the test shards
             carry the true country and city, so country accuracy is measured)

The variants (``VARIANTS``), the rows of the paper's ablation table:

* ``sft``: more supervised steps (the paper's "CoT SFT" row): ``warm_start.steps`` set to
  ``max_steps``, so the run after the checkpoint is supervised too;
* ``acc``: GRPO with the accuracy reward (``configs/ablation/acc.yaml``);
* ``acc_loc``: accuracy + localizability (``configs/ablation/acc_loc.yaml``);
* ``full``: accuracy + localizability + visual grounding (``configs/ablation/full.yaml``).

Every GRPO variant also keeps the format reward (1.0), as the demo does. Equal budget: every
variant resumes from the same checkpoint (weights, optimiser, data position) and runs the same
number of steps with the same batch of ``batch_size`` images per step, so every variant sees the
same images in the same order; a GRPO step draws ``group_size`` completions per image, a supervised
step learns from the image's one reference reasoning. The demo configuration's GRPO settings apply
to the GRPO variants unchanged. The supervised variant continues the warm start's schedule: with
``warm_start.steps = max_steps`` its cosine spans the whole run, so after the checkpoint it decays
from where that longer cosine is at step W, which is higher than the warm start's final rate.

R_loc is trained once per seed by ``cli.py fit`` with the shipped configuration on its own GeoSynth
set (``configs/reward/localizability.yaml``: ``artifacts/geosynth-loc``, built once in OUT/shared);
the two variants that use it read ``artifacts/localizability/checkpoints/last.ckpt``, a link to the
seed's R_loc run.

``OUT/summary.json`` (rewritten atomically after every seed) holds every stage's command, exit
status, wall time and test metrics; ``OUT/ablation.md`` the table: one row per variant (and the
warm start), acc@1/25/200/750/2500 km and country accuracy as mean ± sd over seeds (sample sd),
then each seed's figures. The exit status is 1 when a stage failed.

``--quick`` runs the same pipeline on a tiny budget (demo_seeds' ``QUICK`` plus R_loc on 16 / 8
images for one epoch).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return sys.modules[name]


demo_seeds = _load("demo_seeds")
rehearsal = demo_seeds.rehearsal

RLOC = REPO / "configs" / "reward" / "localizability.yaml"
RLOC_CKPT = Path("artifacts/localizability/checkpoints/last.ckpt")
ACC_KEYS = ("acc@1km", "acc@25km", "acc@200km", "acc@750km", "acc@2500km")
TABLE_KEYS = (*ACC_KEYS, "country_acc", "city_acc")
# the test runs on GeoSynth's test shards, which carry the true country and city (the demo's
# IM2GPS3K-format copy of the same images has coordinates only, so no country accuracy)
TEST_ARGS = ("--data.init_args.test_format=shards",)

# (name, row label, extra cli.py fit arguments; "{max_steps}" is filled in)
VARIANTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("sft", "more supervised steps (CoT SFT)", ("--model.init_args.warm_start.steps={max_steps}",)),
    ("acc", "GRPO: accuracy", ("--config", str(REPO / "configs/ablation/acc.yaml"))),
    ("acc_loc", "GRPO: accuracy + localizability", ("--config", str(REPO / "configs/ablation/acc_loc.yaml"))),
    ("full", "GRPO: accuracy + localizability + grounding", ("--config", str(REPO / "configs/ablation/full.yaml"))),
)
WARM = ("warm", "warm start (the starting checkpoint)")
RLOC_QUICK_DATA = {"train_size": 16, "val_size": 8, "image_size": 64}  # R_loc's GeoSynth under --quick
RLOC_QUICK_EPOCHS = 1


def markdown_table(seeds: list[dict], rows: tuple[tuple[str, str], ...]) -> str:
    """Mean ± sd over the seeds that have the figure, one row per variant."""
    header = ["variant", *TABLE_KEYS, "seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, label in rows:
        per_seed = [s.get("test", {}).get(name) for s in seeds]
        per_seed = [m for m in per_seed if m]
        cells = [demo_seeds.mean_sd([m[k] for m in per_seed if k in m]) for k in TABLE_KEYS]
        lines.append("| " + " | ".join([label, *cells, str(len(per_seed))]) + " |")
    return "\n".join(lines)


def per_seed_table(seeds: list[dict], rows: tuple[tuple[str, str], ...]) -> str:
    header = ["seed", "variant", *TABLE_KEYS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in seeds:
        for name, label in rows:
            m = s.get("test", {}).get(name)
            cells = [demo_seeds._num(m.get(k)) for k in TABLE_KEYS] if m else ["–"] * len(TABLE_KEYS)
            lines.append("| " + " | ".join([str(s["seed"]), label, *cells]) + " |")
    return "\n".join(lines)


def report_markdown(summary: dict) -> str:
    rows = (WARM, *((n, label) for n, label, _ in VARIANTS))
    failed = [f"seed {s['seed']}: {'; '.join(s['problems'])}" for s in summary["seeds"] if s.get("problems")]
    return "\n".join([
        f"# Reward ablation over seeds {', '.join(str(s['seed']) for s in summary['seeds'])}"
        + (" (--quick)" if summary["quick"] else ""),
        "",
        markdown_table(summary["seeds"], rows),
        "",
        "Held-out GeoSynth test set (`cli.py test` on its test shards, with true names), decoding at T 0.1. mean ± sd: "
        "sample sd over seeds. Every variant starts from the warm-start checkpoint of its seed and trains "
        f"{summary['extra_steps']} more steps on the same images.",
        "",
        *(["Failed: " + " | ".join(failed), ""] if failed else []),
        "Per seed:",
        "",
        per_seed_table(summary["seeds"], rows),
        "",
        f"Wall time: {summary.get('wall_s', '–')} s in all. Machine: {summary['machine']['cpu_count']} CPUs, "
        f"{summary['machine']['platform']}, Python {summary['machine']['python']}.",
        "",
        f"Command: `{summary['command']}`",
        "",
    ])


class Ablation(demo_seeds.Runner):
    """demo_seeds' runner (shared model and data, stages, test metrics) with the ablation's stages."""

    def __init__(self, out: Path, python: str, quick: bool, timeout_s: float) -> None:
        super().__init__(out, python, quick, timeout_s)
        self.max_steps = int(demo_seeds._get(self.config, "trainer.max_steps"))
        rloc = yaml.safe_load(RLOC.read_text())
        self.rloc_data = Path(demo_seeds._get(rloc, "data.init_args.source.init_args.root"))
        self.rloc_data_args = dict(demo_seeds._get(rloc, "data.init_args.source.init_args"))
        self.rloc_overrides: list[str] = []
        if quick:
            self.rloc_data_args.update(RLOC_QUICK_DATA)
            self.rloc_overrides = [f"--data.init_args.source.init_args.{k}={v}" for k, v in RLOC_QUICK_DATA.items()]
            self.rloc_overrides.append(f"--trainer.max_epochs={RLOC_QUICK_EPOCHS}")

    def build_shared(self) -> None:
        super().build_shared()
        # R_loc's GeoSynth set, once (every seed's R_loc run links to it)
        args = dict(self.rloc_data_args)
        args["root"] = str((self.out / "shared" / self.rloc_data).resolve())
        script = "import json, sys\nfrom data_modules.geosynth import GeoSynth\nGeoSynth(**json.loads(sys.argv[1])).prepare_data()\n"
        result = rehearsal.run_command([self.python, "-c", script, json.dumps(args)], REPO, self.env(), self.timeout_s,
                                       self.out / "logs" / "shared_rloc")
        if result.returncode != 0:
            raise RuntimeError("building R_loc's GeoSynth set failed:\n" + rehearsal._tail(result.stderr_log))

    def _links(self, work: Path, extra: dict[Path, Path] | None = None) -> None:
        links = {rel: self.out / "shared" / rel for rel in (Path(self.model_path), Path(self.data_root), self.rloc_data)}
        links.update(extra or {})
        for rel, target in links.items():
            link = work / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target.resolve(), target_is_directory=True)

    def _run_seed(self, seed: int, work: Path, record: dict) -> None:
        if work.exists():
            shutil.rmtree(work)
        ckpts = self.log_root / "checkpoints"
        record["test"] = {}

        warm = work / "warm"
        self._links(warm)
        self._stage(record, warm, "warm", self.cli("fit", seed, f"--trainer.max_steps={self.warm_start_steps}"))
        start_ckpt = warm / ckpts / "last.ckpt"
        if not start_ckpt.exists():
            raise RuntimeError(f"warm: no checkpoint {start_ckpt}")
        record["test"]["warm"] = self._test(record, warm, seed, "warm", start_ckpt)

        rloc = work / "rloc"
        self._links(rloc)
        self._stage(record, rloc, "rloc", [self.python, str(REPO / "cli.py"), "fit", "--config", str(RLOC),
                                           f"--seed_everything={seed}", *self.rloc_overrides])
        rloc_dir = rloc / RLOC_CKPT.parent.parent
        if not (rloc / RLOC_CKPT).exists():
            raise RuntimeError(f"rloc: no checkpoint {rloc / RLOC_CKPT}")
        record["rloc_val_auroc"] = rehearsal.rloc_auroc(rloc / RLOC_CKPT.parent)

        for name, _, extra in VARIANTS:
            run = work / name
            self._links(run, {RLOC_CKPT.parent.parent: rloc_dir})
            (run / ckpts).mkdir(parents=True, exist_ok=True)
            shutil.copy2(start_ckpt, run / ckpts / "start.ckpt")
            args = [a.format(max_steps=self.max_steps) for a in extra]
            try:
                self._stage(record, run, name, self.cli("fit", seed, *args, f"--ckpt_path={ckpts / 'start.ckpt'}"))
                record["test"][name] = self._test(record, run, seed, name, run / ckpts / "last.ckpt", args)
            except RuntimeError as exn:  # one variant's failure does not hide the others
                record["status"] = "failed"
                record["problems"].append(str(exn))

    def cli(self, subcommand: str, seed: int, *extra: str) -> list[str]:
        # a variant's --config comes after the demo's, so it overrides the demo's rewards
        configs = [a for i, a in enumerate(extra) if a == "--config" or (i and extra[i - 1] == "--config")]
        rest = [a for a in extra if a not in configs]
        return [self.python, str(REPO / "cli.py"), subcommand, "--config", str(demo_seeds.DEMO), *configs,
                f"--seed_everything={seed}", *self.overrides, *rest]

    def _test(self, record: dict, work: Path, seed: int, name: str, ckpt: Path, extra: list[str] = ()) -> dict:
        if not ckpt.exists():
            raise RuntimeError(f"{name}: no checkpoint {ckpt}")
        before = self.metrics_files(work)
        result = self._stage(record, work, f"test_{name}", self.cli(
            "test", seed, *extra, *TEST_ARGS, f"--ckpt_path={ckpt.relative_to(work)}",
            f"--model.init_args.predictions_csv={self.log_root / 'predictions_test.csv'}"))
        metrics = self._test_metrics(result, self.metrics_files(work) - before)
        missing = [k for k in ACC_KEYS if k not in metrics]  # country / city accuracy: none when no answer resolves
        if missing:
            raise RuntimeError(f"test_{name}: metrics missing ({', '.join(missing)})")
        return metrics


def run_seeds(runner, seeds: list[int], jobs: int, out: Path, summary: dict, report, report_name: str) -> int:
    """Build the shared model and data, run every seed (``jobs`` at once), keep ``OUT/summary.json``
    up to date after each, then write ``report(summary)`` to ``OUT/report_name`` and print it. The
    exit status: 0 when every seed passed, else 1."""
    lock = threading.Lock()
    start = time.monotonic()

    def done(record: dict) -> dict:
        with lock:
            summary["seeds"] = sorted(summary["seeds"] + [record], key=lambda s: seeds.index(s["seed"]))
            rehearsal.write_summary(out / "summary.json", summary)
            print(f"=== seed {record['seed']}: {record['status']} after {record['wall_s']} s {record['problems'] or ''}",
                  flush=True)
        return record

    try:
        runner.build_shared()
    except RuntimeError as exn:
        for seed in seeds:
            done({"seed": seed, "status": "failed", "problems": [str(exn).splitlines()[0]], "wall_s": 0.0})
    else:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            list(pool.map(lambda s: done(runner.run_seed(s)), seeds))

    summary["wall_s"] = round(time.monotonic() - start, 1)
    summary["passed"] = all(s["status"] == "passed" for s in summary["seeds"])
    rehearsal.write_summary(out / "summary.json", summary)
    text = report(summary)
    (out / report_name).write_text(text)
    print(text)
    return 0 if summary["passed"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at once")
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "ablation")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the cli.py commands")
    parser.add_argument("--quick", action="store_true", help="tiny budget: the pipeline in a few minutes")
    parser.add_argument("--timeout", type=float, default=demo_seeds.STAGE_TIMEOUT_S, help="seconds per stage")
    args = parser.parse_args(argv)

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    runner = Ablation(out, args.python, args.quick, args.timeout)
    command = shlex.join([sys.executable, *sys.argv] if argv is None else ["benchmarks/ablation.py", *argv])
    summary = {
        "command": command,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "quick": args.quick,
        "overrides": runner.overrides,
        "warm_start_steps": runner.warm_start_steps,
        "extra_steps": runner.max_steps - runner.warm_start_steps,
        "variants": {name: list(extra) for name, _, extra in VARIANTS},
        "seeds": [],
    }
    return run_seeds(runner, args.seeds, args.jobs, out, summary, report_markdown, "ablation.md")


if __name__ == "__main__":
    sys.exit(main())
