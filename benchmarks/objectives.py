"""GRPO objectives on the same sample budget: ``grpo`` and ``dapo``, with and without dynamic
sampling, from the demo's warm-start checkpoint; held-out test accuracy, mean ± sd over seeds.

    python benchmarks/objectives.py --seeds 0 1 2 [--jobs 2] [--out artifacts/objectives] [--python .venv/bin/python] [--quick]

Per seed S, in ``OUT/seed-S`` (every ``cli.py`` command runs with ``--seed_everything S``):

    warm     python cli.py fit --config configs/demo.yaml --trainer.max_steps W   (W = warm_start.steps)
    VARIANT  python cli.py fit --config configs/demo.yaml [VARIANT's arguments] --ckpt_path <warm last.ckpt>
             --trainer.callbacks+=callbacks.data_budget.DataBudget --trainer.callbacks.max_batches=B
    test     python cli.py test ... --data.init_args.test_format=shards, for the warm start and each variant

The variants (``VARIANTS``):

* ``grpo``: ``loss.loss_type: grpo``, the paper's per-sequence mean (each completion's token mean, then
  the mean over completions), clip 0.2, the demo otherwise;
* ``dapo``: ``configs/grpo/dapo.yaml`` with ``dynamic_sampling.enabled: false``: the token mean over the
  whole step, clip-higher (0.2 / 0.28), truncated completions masked;
* ``grpo_ds``: ``grpo`` with dynamic sampling (at most 3 extra batches a step, as in the dapo config);
* ``dapo_ds``: ``configs/grpo/dapo.yaml`` as shipped (dynamic sampling on).

The same sample budget: every variant resumes from the same warm-start checkpoint (weights,
optimiser, data position) and stops after B = ``max_steps - warm_start.steps`` training batches of
``batch_size`` prompts (``DataBudget``; dynamic sampling's extra batches count), so every variant
rolls out the same prompts, ``group_size`` completions each, in the same order. Without dynamic
sampling that is B optimiser steps; with it, fewer steps (only informative groups are trained on)
and the last step may go over B by the extra batches it drew (``batches`` in the table). Every
variant has the demo's learning rate and schedule, so a dynamic-sampling variant also takes fewer
steps of the same size.

``OUT/summary.json`` (rewritten after every seed) holds every stage's command, exit status, wall
time and test metrics; ``OUT/objectives.md`` the table: one row per variant and the warm start,
acc@1/25/200/750/2500 km and country accuracy as mean ± sd over seeds (sample sd), the steps and
batches each variant took, then each seed's figures. The exit status is 1 when a stage failed.
``--quick`` runs the same pipeline on demo_seeds' tiny ``QUICK`` budget.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shlex
import shutil
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return sys.modules[name]


ablation = _load("ablation")
demo_seeds, rehearsal = ablation.demo_seeds, ablation.rehearsal

DAPO = str(REPO / "configs" / "grpo" / "dapo.yaml")
DS_ON = ("--model.init_args.dynamic_sampling.enabled=true", "--model.init_args.dynamic_sampling.max_tries=3")
# (name, row label, extra cli.py fit arguments)
VARIANTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("grpo", "grpo", ("--model.init_args.loss.loss_type=grpo",)),
    ("dapo", "dapo", ("--config", DAPO, "--model.init_args.dynamic_sampling.enabled=false")),
    ("grpo_ds", "grpo + dynamic sampling", ("--model.init_args.loss.loss_type=grpo", *DS_ON)),
    ("dapo_ds", "dapo + dynamic sampling", ("--config", DAPO)),
)
WARM = ("warm", "warm start (the starting checkpoint)")
TRAIN_KEYS = ("steps", "batches")


def budget_args(batches: int) -> tuple[str, ...]:
    return ("--trainer.callbacks+=callbacks.data_budget.DataBudget", f"--trainer.callbacks.max_batches={batches}")


def run_figures(ckpt: dict, warm_start_steps: int) -> dict[str, int]:
    """Optimiser steps after the warm start, and training batches consumed, from a variant's last
    checkpoint.

    >>> run_figures({"global_step": 340, "callbacks": {"DataBudget": {"batches": 61}}}, 300)
    {'steps': 40, 'batches': 61}
    """
    return {"steps": int(ckpt["global_step"]) - warm_start_steps, "batches": int(ckpt["callbacks"]["DataBudget"]["batches"])}


def train_table(seeds: list[dict]) -> str:
    """Steps and batches per variant, mean ± sd over seeds."""
    lines = ["| variant | GRPO steps | batches consumed | seeds |", "|---|---|---|---|"]
    for name, label, _ in VARIANTS:
        per_seed = [s.get("train", {}).get(name) for s in seeds]
        per_seed = [t for t in per_seed if t]
        cells = [demo_seeds.mean_sd([t[k] for t in per_seed], digits=1) for k in TRAIN_KEYS]
        lines.append("| " + " | ".join([label, *cells, str(len(per_seed))]) + " |")
    return "\n".join(lines)


def report_markdown(summary: dict) -> str:
    rows = (WARM, *((n, label) for n, label, _ in VARIANTS))
    failed = [f"seed {s['seed']}: {'; '.join(s['problems'])}" for s in summary["seeds"] if s.get("problems")]
    return "\n".join([
        f"# GRPO objectives over seeds {', '.join(str(s['seed']) for s in summary['seeds'])}"
        + (" (--quick)" if summary["quick"] else ""),
        "",
        ablation.markdown_table(summary["seeds"], rows),
        "",
        "Held-out GeoSynth test set (`cli.py test` on its test shards, with true names), decoding at T 0.1. mean ± sd: "
        f"sample sd over seeds. Every variant starts from its seed's warm-start checkpoint and rolls out the same "
        f"{summary['budget_batches']} training batches.",
        "",
        train_table(summary["seeds"]),
        "",
        *(["Failed: " + " | ".join(failed), ""] if failed else []),
        "Per seed:",
        "",
        ablation.per_seed_table(summary["seeds"], rows),
        "",
        f"Wall time: {summary.get('wall_s', '–')} s in all. Machine: {summary['machine']['cpu_count']} CPUs, "
        f"{summary['machine']['platform']}, Python {summary['machine']['python']}.",
        "",
        f"Command: `{summary['command']}`",
        "",
    ])


class Objectives(ablation.Ablation):
    """The ablation's runner (shared model and data, warm start, test on the shards) with these variants
    and no R_loc."""

    def __init__(self, out: Path, python: str, quick: bool, timeout_s: float) -> None:
        super().__init__(out, python, quick, timeout_s)
        self.budget = self.max_steps - self.warm_start_steps

    def build_shared(self) -> None:
        demo_seeds.Runner.build_shared(self)

    def _links(self, work: Path, extra: dict[Path, Path] | None = None) -> None:
        for rel in (Path(self.model_path), Path(self.data_root)):
            link = work / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to((self.out / "shared" / rel).resolve(), target_is_directory=True)

    def _run_seed(self, seed: int, work: Path, record: dict) -> None:
        if work.exists():
            shutil.rmtree(work)
        ckpts = self.log_root / "checkpoints"
        record["test"], record["train"] = {}, {}

        warm = work / "warm"
        self._links(warm)
        self._stage(record, warm, "warm", self.cli("fit", seed, f"--trainer.max_steps={self.warm_start_steps}"))
        start_ckpt = warm / ckpts / "last.ckpt"
        if not start_ckpt.exists():
            raise RuntimeError(f"warm: no checkpoint {start_ckpt}")
        record["test"]["warm"] = self._test(record, warm, seed, "warm", start_ckpt)

        for name, _, extra in VARIANTS:
            run = work / name
            self._links(run)
            (run / ckpts).mkdir(parents=True, exist_ok=True)
            shutil.copy2(start_ckpt, run / ckpts / "start.ckpt")
            try:
                self._stage(record, run, name, self.cli("fit", seed, *extra, *budget_args(self.budget),
                                                        f"--ckpt_path={ckpts / 'start.ckpt'}"))
                last = run / ckpts / "last.ckpt"
                record["train"][name] = run_figures(torch.load(last, map_location="cpu", weights_only=True),
                                                    self.warm_start_steps)
                record["test"][name] = self._test(record, run, seed, name, last, list(extra))
            except (RuntimeError, OSError, KeyError) as exn:  # one variant's failure does not hide the others
                record["status"] = "failed"
                record["problems"].append(f"{name}: {exn}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at once")
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "objectives")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the cli.py commands")
    parser.add_argument("--quick", action="store_true", help="tiny budget: the pipeline in a few minutes")
    parser.add_argument("--timeout", type=float, default=demo_seeds.STAGE_TIMEOUT_S, help="seconds per stage")
    args = parser.parse_args(argv)

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    runner = Objectives(out, args.python, args.quick, args.timeout)
    command = shlex.join([sys.executable, *sys.argv] if argv is None else ["benchmarks/objectives.py", *argv])
    summary = {
        "command": command,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "quick": args.quick,
        "overrides": runner.overrides,
        "warm_start_steps": runner.warm_start_steps,
        "budget_batches": runner.budget,
        "variants": {name: list(extra) for name, _, extra in VARIANTS},
        "seeds": [],
    }
    return ablation.run_seeds(runner, args.seeds, args.jobs, out, summary, report_markdown, "objectives.md")


if __name__ == "__main__":
    sys.exit(main())
