"""Rehearsal of the whole paper pipeline on the CPU, with the shipped paper configurations.

    python benchmarks/rehearsal.py --ranks 8 --steps 4 [--engine hf|vllm] [--python .venv/bin/python]
    make rehearsal RANKS=2 STEPS=2        # the short variant (CI, a few minutes on 2 cores)

Every stage is a subprocess of the command a user types (README, "The pipeline"), run with the
paper YAMLs unchanged plus the fewest command-line overrides a CPU needs (``OVERRIDES``, one
reason each; ``--print-overrides`` prints them as the table of docs/rehearsal.md):

    data     python -m data_modules.geosynth (twice), moved into the layout configs/data/mp16_reason.yaml
             and configs/test/im2gps3k.yaml name: data/mp16-reason/train-{000000..000033}.tar,
             data/mp16-reason/test-{000000..000003}.tar, data/im2gps3k/{im2gps3k_places365.csv,images/}
    rloc     python cli.py fit --config configs/reward/localizability.yaml
    grpo     python cli.py fit --config configs/grpo/paper_qwen2_5_vl_7b.yaml --config configs/data/mp16_reason.yaml,
             the whole process group killed with SIGKILL once a checkpoint is complete, then
    resume   the same command with --ckpt_path last, to max_steps
    test     python cli.py test --config <paper> --config configs/test/im2gps3k.yaml --ckpt_path last
             (the checkpoint callback's last.ckpt: a distributed checkpoint, read by one device)
    predict  python cli.py predict, the same configurations and checkpoint
    export   the Hugging Face export (policy-final/) tested through cli.py test, re-scored by python -m globe.score

Paths: every stage runs in ``OUT/workdir``, so the configurations' relative paths (data/...,
artifacts/localizability/..., artifacts/grpo-paper/...) land inside the rehearsal folder and no
real run under ./artifacts is touched; ``cli.py`` and the YAMLs are passed by absolute path.

A stage that fails is reported (exit status, the tail of its stderr, its log files) and the later
stages still run when the files they need exist; a stage whose inputs are missing is "skipped".
Each stage has a timeout (the process group is killed). The exit status is 1 unless every stage
passed.

Peak memory per rank: the VmHWM (resident-set high-water mark) in /proc/<pid>/status, polled
every ``POLL_S`` for every process of the stage's session. A rank is the stage's root process
(rank 0) or a process whose LOCAL_RANK differs from its parent's (Lightning's launcher starts
ranks 1..N-1 that way); the other processes (DataLoader workers) are reported apart, under the
rank they descend from. VmHWM counts the copy-on-write pages a forked worker shares with its
rank, so the figures must not be summed.

``OUT/summary.json`` is rewritten atomically after every stage; the stages' stdout / stderr are in
``OUT/logs``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import yaml

REPO = Path(__file__).resolve().parents[1]
PAPER = "configs/grpo/paper_qwen2_5_vl_7b.yaml"
MP16 = "configs/data/mp16_reason.yaml"
IM2GPS3K = "configs/test/im2gps3k.yaml"
RLOC = "configs/reward/localizability.yaml"
STAGES = ("data", "rloc", "grpo", "resume", "test", "predict", "export")
POLL_S = 0.5
TAIL_LINES = 40

# Paths the shipped configurations name (relative to the working directory), checked against the
# YAMLs by tests/test_rehearsal.py so that a change of a config cannot silently move them.
TRAIN_SHARDS = "data/mp16-reason/train-{000000..000033}.tar"
VAL_SHARDS = "data/mp16-reason/test-{000000..000003}.tar"
TEST_CSV = "data/im2gps3k/im2gps3k_places365.csv"
TEST_IMAGES = "data/im2gps3k/images"
RLOC_CKPT = "artifacts/localizability/checkpoints/last.ckpt"
GRPO_CKPT_DIR = "artifacts/grpo-paper/checkpoints"
GRPO_EXPORT = "artifacts/grpo-paper/policy-final"
TEST_PREDICTIONS = "artifacts/im2gps3k_predictions.csv"
TINY_MODEL = "artifacts/tiny-qwen2.5-vl"  # configs/reward/localizability.yaml's model_path
EXPORT_PREDICTIONS = "artifacts/export_predictions.csv"
EXPORT_SCORES = "artifacts/export_scores.json"


class Override(NamedTuple):
    """One command-line setting that differs from the shipped configuration or tool default."""

    stages: tuple[str, ...]  # the stage commands that get it
    flag: str
    value: str  # a str.format template over Plan's fields
    reason: str
    engines: tuple[str, ...] = ("hf", "vllm")


CLI_STAGES = ("grpo", "resume", "test", "predict", "export")
OVERRIDES: tuple[Override, ...] = (
    # stage 1: GeoSynth's own arguments (its defaults are the demo's 2,000 / 200 / 300 images)
    Override(("data",), "--train", "{train_images}", "34 shards x {train_per_shard} images: the 34 names of mp16_reason.yaml, tiny"),
    Override(("data",), "--test", "{test_images}", "the IM2GPS3K-format evaluation set (and 4 x {val_per_shard} validation images in a second call)"),
    Override(("data",), "--min-shards", "34 / 4", "GeoSynth writes max(min_shards, n / shard_size) shards per split"),
    Override(("data",), "--size", "64", "tiny images (the tiny model's processor resizes to <= 112 px anyway)"),
    # stage 2: R_loc
    Override(("rloc",), "--data.init_args.source.init_args.train_size", "{rloc_train}", "CPU budget: GeoSynth images behind the training pairs"),
    Override(("rloc",), "--data.init_args.source.init_args.val_size", "{rloc_val}", "CPU budget: validation images (AUROC)"),
    Override(("rloc",), "--trainer.max_epochs", "{rloc_epochs}", "CPU budget (config: 4 epochs)"),
    # stages 3-7: the paper configuration on CPU ranks
    Override(CLI_STAGES, "--trainer.accelerator", "cpu", "no GPU"),
    Override(("grpo", "resume"), "--trainer.devices", "{ranks}", "the ranks are CPU processes (config: 8 GPUs); test keeps the test config's 1"),
    Override(("grpo", "resume"), "--trainer.strategy.init_args.data_parallel_size", "{ranks}", "the FSDP2 mesh spans the ranks"),
    Override(("grpo", "resume"), "--trainer.strategy.init_args.process_group_backend", "gloo", "NCCL needs GPUs"),
    Override(CLI_STAGES[:-1], "--model.init_args.model_path", TINY_MODEL, "no 7B weights here: the tiny Qwen2.5-VL R_loc was trained on"),
    Override(CLI_STAGES[:-1], "--model.init_args.build_tiny_if_missing", "true", "built from a config when absent"),
    Override(("export",), "--model.init_args.model_path", GRPO_EXPORT, "the stage under test: the exported policy"),
    Override(("export",), "--model.init_args.predictions_csv", EXPORT_PREDICTIONS, "keep the checkpoint test's predictions beside it"),
    Override(CLI_STAGES, "--model.init_args.engine", "hf", "vLLM lives in .venv-vllm (--engine vllm keeps the paper's engine)", ("hf",)),
    Override(("grpo", "resume"), "--trainer.max_steps", "{steps}", "CPU budget (config: 1 epoch)"),
    Override(("grpo", "resume"), "--model.init_args.sampling.max_new_tokens", "{new_tokens}",
             "CPU budget (config: 1024): a random policy never stops early, 64 x 1024 tokens per rank and step take minutes"),
    Override(CLI_STAGES, "--model.init_args.eval_sampling.max_new_tokens", "{new_tokens}", "CPU budget (configs: 512)"),
    Override(("grpo", "resume"), "--trainer.val_check_interval", "{val_every}", "CPU budget (config: 200 steps)"),
    Override(("grpo", "resume"), "--trainer.limit_val_batches", "{val_batches}", "CPU budget (config: 16)"),
    Override(("grpo", "resume"), "--trainer.callbacks", "<the paper's list, ModelCheckpoint every_n_train_steps: {ckpt_every}>",
             "CPU budget (config: 200); a dotted override reaches only a list's last item, so the list is given whole"),
)


@dataclass
class Plan:
    """The numbers a rehearsal runs with, derived from ``--ranks`` and ``--steps``."""

    ranks: int
    steps: int
    engine: str = "hf"
    train_per_shard: int = 2
    val_batches: int = 1
    test_images: int = 32
    rloc_train: int = 96
    rloc_val: int = 48
    rloc_epochs: int = 1
    new_tokens: int = 32  # 0: the configurations' 1024 / 512

    @property
    def ckpt_every(self) -> int:  # the first checkpoint lands mid-run: the kill then has steps left
        return max(1, self.steps // 2)

    @property
    def val_every(self) -> int:  # every checkpoint follows a validation
        return self.ckpt_every

    @property
    def train_images(self) -> int:
        return 34 * self.train_per_shard

    @property
    def val_per_shard(self) -> int:  # 4 shards x 4 x ranks: several batches of 4 per rank
        return 4 * self.ranks

    def fields(self) -> dict:
        names = ("ranks", "steps", "new_tokens", "train_per_shard", "val_batches", "test_images", "rloc_train", "rloc_val",
                 "rloc_epochs", "ckpt_every", "val_every", "train_images", "val_per_shard")
        return {n: getattr(self, n) for n in names}


def callbacks_with_interval(callbacks: list[dict], every: int, source: str = "trainer.callbacks") -> str:
    """``callbacks`` (a config's ``trainer.callbacks``) as JSON with the checkpoint callback's
    ``every_n_train_steps`` set to ``every`` (the one callback with that argument: ModelCheckpoint or a
    subclass). A dotted override reaches only a list's last item, so the list is given whole."""
    callbacks = json.loads(json.dumps(callbacks))  # a copy: the caller's config stays as it was
    checkpoints = [c for c in callbacks if "every_n_train_steps" in (c.get("init_args") or {})]
    if len(checkpoints) != 1:
        raise ValueError(f"{source}: expected one callback with every_n_train_steps in trainer.callbacks, "
                         f"found {len(checkpoints)}")
    checkpoints[0]["init_args"]["every_n_train_steps"] = every
    return json.dumps(callbacks)


def paper_callbacks(ckpt_every: int, config: Path = REPO / PAPER) -> str:
    """The paper configuration's ``trainer.callbacks`` as JSON, the checkpoint interval changed."""
    return callbacks_with_interval(yaml.safe_load(config.read_text())["trainer"]["callbacks"], ckpt_every, str(config))


def overrides_for(stage: str, plan: Plan) -> list[str]:
    """The override arguments of one cli.py stage command (``flag=value`` items)."""
    values = plan.fields()
    args = []
    for o in OVERRIDES:
        if stage not in o.stages or plan.engine not in o.engines or stage == "data":
            continue
        if o.flag.endswith(".max_new_tokens") and not plan.new_tokens:
            continue
        value = paper_callbacks(plan.ckpt_every) if o.flag == "--trainer.callbacks" else o.value.format(**values)
        args.append(f"{o.flag}={value}")
    return args


def overrides_markdown() -> str:
    """``OVERRIDES`` as the markdown table of docs/rehearsal.md."""
    lines = ["| stages | override | value | why |", "|---|---|---|---|"]
    for o in OVERRIDES:
        engines = "" if len(o.engines) == 2 else f" ({', '.join(o.engines)} only)"
        lines.append(f"| {', '.join(o.stages)}{engines} | `{o.flag}` | `{o.value}` | {o.reason} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- memory
def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) of a live process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp session ...
    return int(fields[1]), int(fields[3])


def _vm_hwm_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _local_rank(pid: int) -> str | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in env:
        if item.startswith(b"LOCAL_RANK="):
            return item[len(b"LOCAL_RANK="):].decode(errors="replace")
    return None


@dataclass
class SessionMemory:
    """High-water marks of every process in the session led by ``root`` (see module docstring)."""

    root: int
    seen: dict[int, dict] = field(default_factory=dict)  # pid -> {ppid, local_rank, hwm_kib}

    def sample(self) -> None:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            stat = _proc_stat(pid)
            if stat is None or stat[1] != self.root:
                continue
            hwm = _vm_hwm_kib(pid)
            info = self.seen.setdefault(pid, {"ppid": stat[0], "local_rank": _local_rank(pid), "hwm_kib": 0})
            if hwm is not None:
                info["hwm_kib"] = max(info["hwm_kib"], hwm)

    def _rank_of(self, pid: int) -> int | None:
        if pid == self.root:
            return 0
        info, parent = self.seen[pid], self.seen.get(self.seen[pid]["ppid"])
        parent_rank = None if parent is None or self.seen[pid]["ppid"] == self.root else parent["local_rank"]
        if info["local_rank"] is not None and info["local_rank"] != parent_rank and info["local_rank"].isdigit():
            return int(info["local_rank"])
        return None

    def report(self) -> dict:
        """``{"rank_mib": {rank: MiB}, "workers": {rank: {"count", "max_mib"}}, "processes": n}``."""
        ranks: dict[int, float] = {}
        workers: dict[str, dict] = {}
        for pid in sorted(self.seen):
            mib = round(self.seen[pid]["hwm_kib"] / 1024, 1)
            rank = self._rank_of(pid)
            if rank is not None:
                ranks[rank] = max(ranks.get(rank, 0.0), mib)
                continue
            ancestor, hops = self.seen[pid]["ppid"], 0
            while ancestor in self.seen and self._rank_of(ancestor) is None and hops < 64:
                ancestor, hops = self.seen[ancestor]["ppid"], hops + 1
            owner = str(self._rank_of(ancestor)) if ancestor in self.seen else "?"
            w = workers.setdefault(owner, {"count": 0, "max_mib": 0.0})
            w["count"] += 1
            w["max_mib"] = max(w["max_mib"], mib)
        return {"rank_mib": {str(k): v for k, v in sorted(ranks.items())}, "workers": workers,
                "processes": len(self.seen)}


# ---------------------------------------------------------------------------------------------- running
@dataclass
class CommandResult:
    argv: list[str]
    returncode: int | None
    wall_s: float
    timed_out: bool
    killed: bool
    memory: dict
    stdout_log: str
    stderr_log: str


def _tail(path: str | Path, lines: int = TAIL_LINES) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    # progress bars rewrite one line with carriage returns: keep the last state of each line
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.splitlines()[-lines:])


def _kill_session(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_command(argv: list[str], cwd: Path, env: dict, timeout_s: float, log_stem: Path,
                kill_when: Callable[[], bool] | None = None) -> CommandResult:
    """Run ``argv`` in a new session; poll memory; SIGKILL the session on timeout or ``kill_when()``."""
    log_stem.parent.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_stem.with_suffix(".out"), log_stem.with_suffix(".err")
    with open(out_path, "w") as out, open(err_path, "w") as err:
        err.write("$ " + " ".join(argv) + "\n")
        err.flush()
        start = time.monotonic()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err, start_new_session=True)
        memory = SessionMemory(proc.pid)
        timed_out = killed = False
        while proc.poll() is None:
            memory.sample()
            if time.monotonic() - start > timeout_s:
                timed_out = True
            elif kill_when is not None and kill_when():
                killed = True
            if timed_out or killed:
                memory.sample()
                _kill_session(proc.pid)
                proc.wait()
                break
            time.sleep(POLL_S)
        wall = time.monotonic() - start
        memory.sample()
        _kill_session(proc.pid)  # ranks or workers left behind by a crashed rank 0
    return CommandResult(argv, proc.returncode, round(wall, 1), timed_out, killed, memory.report(),
                         str(out_path), str(err_path))


@dataclass
class StageResult:
    name: str
    status: str = "passed"  # passed | failed | skipped
    commands: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    returncodes: list[int | None] = field(default_factory=list)
    peak_rss_mib: list[dict] = field(default_factory=list)  # one SessionMemory report per command
    figures: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    stderr_tail: str = ""
    logs: list[str] = field(default_factory=list)

    def add(self, result: CommandResult) -> CommandResult:
        self.commands.append(" ".join(result.argv))
        self.wall_s = round(self.wall_s + result.wall_s, 1)
        self.returncodes.append(result.returncode)
        self.peak_rss_mib.append(result.memory)
        self.logs += [result.stdout_log, result.stderr_log]
        if result.timed_out:
            self.fail(f"timed out after {result.wall_s} s")
        elif result.returncode != 0 and not result.killed:
            self.fail(f"exit status {result.returncode}")
        if self.status == "failed" or result.killed:
            self.stderr_tail = _tail(result.stderr_log)
        return result

    def fail(self, problem: str) -> None:
        self.status = "failed"
        self.problems.append(problem)

    def skip(self, why: str) -> None:
        self.status = "skipped"
        self.problems.append(why)


def write_summary(path: Path, summary: dict) -> None:
    """Write JSON atomically: a temporary file in the same folder, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------- figures
_METRIC_ROW = re.compile(r"^[\s│┃|]*((?:test|val|predict)/[\w@./-]+)[\s│┃|]+([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf))")


def printed_metrics(text: str) -> dict[str, float]:
    """Metrics from the table Lightning prints at the end of ``validate`` / ``test``."""
    return {m.group(1): float(m.group(2)) for m in map(_METRIC_ROW.match, text.splitlines()) if m}


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def checkpoint_steps(ckpt_dir: Path) -> list[int]:
    """Steps of the complete step checkpoints (``epoch=E-step=S.ckpt``, distributed or single file)."""
    steps = []
    for p in ckpt_dir.glob("*step=*.ckpt"):
        m = re.search(r"step=(\d+)", p.name)
        if m and (p.is_file() or (p / "meta.pt").is_file()):
            steps.append(int(m.group(1)))
    return sorted(steps)


def rloc_auroc(ckpt_dir: Path) -> float | None:
    """Best validation AUROC, read from the checkpoint names ``loc-{epoch}-{val/auroc:.3f}.ckpt``."""
    values = [float(m.group(1)) for p in ckpt_dir.glob("loc-*.ckpt") if (m := re.search(r"-(\d\.\d+)\.ckpt$", p.name))]
    return max(values) if values else None


# ---------------------------------------------------------------------------------------------- stages
@dataclass
class Rehearsal:
    plan: Plan
    out: Path
    python: str
    timeout_scale: float = 1.0
    stages: tuple[str, ...] = STAGES
    results: list[StageResult] = field(default_factory=list)

    @property
    def work(self) -> Path:
        return self.out / "workdir"

    def env(self) -> dict:
        env = dict(os.environ)
        env.update(OMP_NUM_THREADS="1", WANDB_MODE="offline", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        if self.plan.engine == "vllm":
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        return env

    def cli(self, subcommand: str, *configs: str) -> list[str]:
        argv = [self.python, str(REPO / "cli.py"), subcommand]
        for c in configs:
            argv += ["--config", str(REPO / c)]
        return argv

    def run(self, stage: StageResult, argv: list[str], timeout_s: float, suffix: str = "",
            kill_when: Callable[[], bool] | None = None) -> CommandResult:
        log = self.out / "logs" / f"{STAGES.index(stage.name) + 1}-{stage.name}{suffix}"
        return stage.add(run_command(argv, self.work, self.env(), timeout_s * self.timeout_scale, log, kill_when))

    def summary(self) -> dict:
        return {
            "plan": {**self.plan.fields(), "engine": self.plan.engine, "python": self.python},
            "memory": "VmHWM of /proc/<pid>/status polled every 0.5 s per process; rank_mib per rank, "
                      "workers apart (their shared copy-on-write pages are counted in each)",
            "passed": all(r.status == "passed" for r in self.results) and len(self.results) == len(self.stages),
            "stages": [asdict(r) for r in self.results],
        }

    def main(self) -> int:
        self.work.mkdir(parents=True, exist_ok=True)
        for name in self.stages:
            stage = StageResult(name)
            print(f"=== {name} ===", flush=True)
            try:
                getattr(self, f"stage_{name}")(stage)
            except Exception as exn:  # a bug of this script must not hide the other stages
                stage.fail(f"rehearsal script: {type(exn).__name__}: {exn}")
            self.results.append(stage)
            write_summary(self.out / "summary.json", self.summary())
            print(f"=== {name}: {stage.status} after {stage.wall_s} s {stage.problems or ''}", flush=True)
            if stage.status == "failed" and stage.stderr_tail:
                print("\n".join(stage.stderr_tail.splitlines()[-12:]), flush=True)
        return 0 if self.summary()["passed"] else 1

    # -- 1. data
    def stage_data(self, stage: StageResult) -> None:
        p, w = self.plan, self.work
        train_run, val_run = w / "geosynth-train", w / "geosynth-val"
        for folder in (train_run, val_run, w / "data"):
            shutil.rmtree(folder, ignore_errors=True)
        geosynth = [self.python, "-m", "data_modules.geosynth", "--size", "64", "--val", "0"]
        self.run(stage, geosynth + ["--out", str(train_run), "--train", str(p.train_images), "--test", str(p.test_images),
                                    "--min-shards", "34", "--shard-size", str(p.train_per_shard), "--seed", "0"], 300, "-train")
        self.run(stage, geosynth + ["--out", str(val_run), "--train", "0", "--test", str(4 * p.val_per_shard),
                                    "--min-shards", "4", "--shard-size", str(p.val_per_shard), "--seed", "1"], 300, "-val")
        if stage.status == "failed":
            return
        # GeoSynth writes OUT/{train,val,test}/{split}-NNNNNN.tar; mp16_reason.yaml reads one folder whose
        # validation shards are named test-*: move the shards (and the IM2GPS3K copy) where the configs look
        shards = w / "data" / "mp16-reason"
        shards.mkdir(parents=True)
        for tar in sorted((train_run / "train").glob("train-*.tar")) + sorted((val_run / "test").glob("test-*.tar")):
            os.replace(tar, shards / tar.name)
        (w / TEST_CSV).parent.mkdir(parents=True, exist_ok=True)
        os.replace(train_run / "im2gps3k" / "im2gps3k.csv", w / TEST_CSV)
        os.replace(train_run / "im2gps3k" / "images", w / TEST_IMAGES)
        from webdataset.shardlists import expand_urls

        for spec, split in ((TRAIN_SHARDS, "train"), (VAL_SHARDS, "val")):
            missing = [u for u in expand_urls(spec) if not (w / u).is_file()]
            stage.figures[f"{split}_shards"] = len(expand_urls(spec)) - len(missing)
            if missing:
                stage.fail(f"{split} shards missing: {missing[:3]}")
        stage.figures["test_images"] = len(csv_rows(w / TEST_CSV))
        stage.figures.update(train_images=p.train_images, val_images=4 * p.val_per_shard)

    # -- 2. R_loc
    def stage_rloc(self, stage: StageResult) -> None:
        self.run(stage, self.cli("fit", RLOC) + overrides_for("rloc", self.plan), 900)
        ckpt = self.work / RLOC_CKPT
        stage.figures["val_auroc"] = rloc_auroc(ckpt.parent)
        stage.figures["checkpoint"] = RLOC_CKPT if ckpt.is_file() else None
        if stage.status == "passed" and not ckpt.is_file():
            stage.fail(f"{RLOC_CKPT} was not written")

    def _grpo_argv(self) -> list[str]:
        return self.cli("fit", PAPER, MP16) + overrides_for("grpo", self.plan)

    def _grpo_timeout(self) -> float:
        return 600 + 120 * self.plan.steps * max(1, self.plan.ranks // 2)

    # -- 3. GRPO, killed after its first checkpoint
    def stage_grpo(self, stage: StageResult) -> None:
        ckpt_dir = self.work / GRPO_CKPT_DIR
        shutil.rmtree(self.work / "artifacts" / "grpo-paper", ignore_errors=True)
        if not (self.work / RLOC_CKPT).is_file():
            stage.problems.append(f"{RLOC_CKPT} missing: the loc reward head will fail to load")
        last_meta = ckpt_dir / "last.ckpt" / "meta.pt"
        seen: list[tuple[int, float]] = []

        def checkpoint_complete() -> bool:  # last.ckpt's metadata is written last; wait until it is stable
            if not checkpoint_steps(ckpt_dir) or not last_meta.is_file():
                return False
            st = last_meta.stat()
            seen.append((st.st_size, st.st_mtime))
            return len(seen) >= 3 and seen[-1] == seen[-3]

        result = self.run(stage, self._grpo_argv(), self._grpo_timeout(), kill_when=checkpoint_complete)
        stage.figures["checkpoint_steps"] = checkpoint_steps(ckpt_dir)
        stage.figures["killed"] = result.killed
        if result.killed:
            stage.figures["killed_after_s"] = result.wall_s
        elif stage.status == "passed":
            stage.fail("the run ended before a checkpoint could be killed" if result.returncode == 0 else "no kill")

    # -- 4. resume
    def stage_resume(self, stage: StageResult) -> None:
        ckpt_dir = self.work / GRPO_CKPT_DIR
        before = checkpoint_steps(ckpt_dir)
        if not (ckpt_dir / "last.ckpt").exists():
            return stage.skip(f"no {GRPO_CKPT_DIR}/last.ckpt to resume from")
        result = self.run(stage, self._grpo_argv() + ["--ckpt_path=last"], self._grpo_timeout())
        text = Path(result.stdout_log).read_text(errors="replace") + Path(result.stderr_log).read_text(errors="replace")
        after = checkpoint_steps(ckpt_dir)
        stage.figures.update(resumed_from_step=max(before, default=None), final_step=max(after, default=None),
                             restored=bool(re.search(r"Restor(ing|ed all) states from the checkpoint", text)),
                             exported=(self.work / GRPO_EXPORT / "config.json").is_file())
        if stage.status == "passed":
            if not stage.figures["restored"]:
                stage.fail("--ckpt_path last restored nothing (the run started from scratch)")
            if stage.figures["final_step"] != self.plan.steps:
                stage.fail(f"last checkpoint at step {stage.figures['final_step']}, expected {self.plan.steps}")

    def _checkpoint(self) -> Path:
        return self.work / GRPO_CKPT_DIR / "last.ckpt"

    # -- 5. test on the distributed checkpoint
    def stage_test(self, stage: StageResult) -> None:
        if not self._checkpoint().exists():
            return stage.skip(f"no {GRPO_CKPT_DIR}/last.ckpt")
        (self.work / TEST_PREDICTIONS).unlink(missing_ok=True)
        result = self.run(stage, self.cli("test", PAPER, IM2GPS3K) + overrides_for("test", self.plan)
                          + ["--ckpt_path=last"], 900)
        stage.figures["metrics"] = printed_metrics(Path(result.stdout_log).read_text(errors="replace"))
        predictions = self.work / TEST_PREDICTIONS
        stage.figures["predictions"] = len(csv_rows(predictions)) if predictions.is_file() else None
        if stage.status == "passed" and stage.figures["predictions"] != self.plan.test_images:
            stage.fail(f"{TEST_PREDICTIONS}: {stage.figures['predictions']} rows, expected {self.plan.test_images}")

    # -- 6. predict
    def stage_predict(self, stage: StageResult) -> None:
        if not self._checkpoint().exists():
            return stage.skip(f"no {GRPO_CKPT_DIR}/last.ckpt")
        start = time.time()
        self.run(stage, self.cli("predict", PAPER, IM2GPS3K) + overrides_for("predict", self.plan)
                 + ["--ckpt_path=last"], 900)
        written = [p for p in (self.work / "artifacts").rglob("*") if p.is_file() and p.stat().st_mtime >= start
                   and p.suffix in (".csv", ".jsonl", ".json") and "wandb" not in p.parts]
        stage.figures["files"] = {str(p.relative_to(self.work)): _count_rows(p) for p in sorted(written)}
        stage.figures["predictions"] = sum(n for n in stage.figures["files"].values() if n)
        if stage.status == "passed" and stage.figures["predictions"] != self.plan.test_images:
            stage.fail(f"{stage.figures['predictions']} predictions written, expected {self.plan.test_images}")

    # -- 7. the Hugging Face export, reloaded and re-scored
    def stage_export(self, stage: StageResult) -> None:
        if not (self.work / GRPO_EXPORT / "config.json").is_file():
            return stage.skip(f"no {GRPO_EXPORT}/config.json (HFExport writes it at the end of fit)")
        predictions = self.work / EXPORT_PREDICTIONS
        predictions.unlink(missing_ok=True)
        result = self.run(stage, self.cli("test", PAPER, IM2GPS3K) + overrides_for("export", self.plan), 900, "-test")
        stage.figures["metrics"] = printed_metrics(Path(result.stdout_log).read_text(errors="replace"))
        if not predictions.is_file():
            return stage.fail(f"{EXPORT_PREDICTIONS} was not written")
        self.run(stage, [self.python, "-m", "globe.score", "--predictions", EXPORT_PREDICTIONS, "--ground-truth",
                         TEST_CSV, "--out", EXPORT_SCORES], 300, "-score")
        if (self.work / EXPORT_SCORES).is_file():
            stage.figures["score"] = json.loads((self.work / EXPORT_SCORES).read_text())
        checkpoint_rows = self.work / TEST_PREDICTIONS
        if checkpoint_rows.is_file():  # same weights, seeds and decoding: the same answers
            a = {r["IMG_ID"]: r.get("pred_text") for r in csv_rows(checkpoint_rows)}
            b = {r["IMG_ID"]: r.get("pred_text") for r in csv_rows(predictions)}
            same = sum(a.get(k) == v for k, v in b.items())
            stage.figures["same_answers_as_checkpoint_test"] = f"{same}/{len(b)}"
            if stage.status == "passed" and same != len(b):
                stage.fail(f"exported policy answers differently from the checkpoint on {len(b) - same} of {len(b)} images")


def _count_rows(path: Path) -> int | None:
    try:
        if path.suffix == ".csv":
            return len(csv_rows(path))
        if path.suffix == ".jsonl":
            return sum(1 for line in path.read_text().splitlines() if line.strip())
    except (OSError, csv.Error, UnicodeDecodeError):
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=8, help="CPU ranks of the GRPO stages (the paper: 8 GPUs)")
    parser.add_argument("--steps", type=int, default=4, help="GRPO steps in all (a checkpoint and the kill halfway)")
    parser.add_argument("--new-tokens", type=int, default=32,
                        help="max new tokens of training and evaluation decoding (0: the configurations' 1024 / 512)")
    parser.add_argument("--out", default="artifacts/rehearsal", help="output folder (summary.json, logs/, workdir/)")
    parser.add_argument("--engine", choices=("hf", "vllm"), default="hf",
                        help="rollout engine: hf (overridden) or vllm (the paper's; run it with .venv-vllm's python)")
    parser.add_argument("--python", default=sys.executable, help="interpreter the stages run with")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--timeout-scale", type=float, default=1.0, help="multiply every stage's timeout")
    parser.add_argument("--print-overrides", action="store_true", help="print the override table (markdown) and exit")
    a = parser.parse_args(argv)
    if a.print_overrides:
        print(overrides_markdown())
        return 0
    stages = tuple(s for s in a.stages.split(",") if s)
    unknown = set(stages) - set(STAGES)
    if unknown or a.ranks < 1 or a.steps < 2:
        parser.error(f"unknown stages {sorted(unknown)}" if unknown else "--ranks >= 1 and --steps >= 2 (a kill needs steps left)")
    out = Path(a.out).resolve()
    if stages == STAGES:  # a whole rehearsal starts from nothing (only what this script writes is removed)
        shutil.rmtree(out / "workdir", ignore_errors=True)
        shutil.rmtree(out / "logs", ignore_errors=True)
        (out / "summary.json").unlink(missing_ok=True)
    rehearsal = Rehearsal(Plan(a.ranks, a.steps, a.engine, new_tokens=a.new_tokens), out, a.python, a.timeout_scale, stages)
    return rehearsal.main()


if __name__ == "__main__":
    sys.exit(main())
