"""GRPO training steps side by side: TRL's ``GRPOTrainer`` vs GLOBE's ``GRPOPolicy`` (Lightning).

Both systems train the same tiny random Qwen2.5-VL (``build_tiny_qwen2_5_vl``) on the same GeoSynth
images with the paper's prompt, score with the same reward heads (``GeoAccuracyReward``,
``VisualGroundingReward``, ``FormatReward``; weights 1.0 / 0.2 / 1.0; on the TRL side each head is
wrapped as a TRL reward function that calls the same ``head.score``), and use the same GRPO
settings: G completions per prompt, P prompts per step (one optimiser step per generation batch of
P x G), max completion length, temperature 1.0 / top_p 1.0 / top_k 0, beta 0 (no reference model),
epsilon 0.2, token-mean loss over the batch (TRL ``loss_type="dapo"``), rewards scaled by the group
std, one iteration, AdamW at a constant learning rate, gradient clipping at 1.0, fp32 on the CPU,
no gradient checkpointing, no logger and no checkpoints. Prompts are consumed in the same order
(TRL ``shuffle_dataset=False``; GLOBE reads a ``DataLoader`` over the same sample list).

Each side runs its full training loop (TRL ``trainer.train()``; GLOBE ``lightning.Trainer.fit``
with ``max_steps``) in its own child process, one after the other, so that peak memory (max RSS of
the child, from ``os.wait4``) belongs to one system. A callback on each side stamps the end of
every optimiser step; a step's time is the wall time between two consecutive step ends (data
loading, rollout, scoring, loss, backward and optimiser step included). The first ``--warmup``
steps are excluded; the next ``--steps`` are reported (median, mean, completions per second).

    bash benchmarks/setup_trl_env.sh        # once: .venv-bench with trl (never in .venv)
    .venv-bench/bin/python benchmarks/trl_vs_globe.py --steps 10 --warmup 2 [--write-docs]

Threads: both children set ``OMP_NUM_THREADS`` and ``torch.set_num_threads(--threads)`` before
anything runs and report the count they trained with. The machine load (1-minute load average)
is recorded before and after each side, because on a shared machine it moves the figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmark_trl.md"
FIGURES_START, FIGURES_END = "<!-- figures:start -->", "<!-- figures:end -->"
REWARD_WEIGHTS = {"geo": 1.0, "vis": 0.2, "format": 1.0}


@dataclass(frozen=True)
class BenchConfig:
    """What both systems are given (identical on both sides)."""

    prompts: int = 4  # prompts (images) per optimiser step
    group: int = 8  # completions per prompt (GRPO group size, TRL num_generations)
    tokens: int = 64  # max completion length
    steps: int = 10  # timed steps
    warmup: int = 2  # untimed steps before them
    lr: float = 1e-5
    threads: int = 2
    seed: int = 0
    image_size: int = 128

    @property
    def total_steps(self) -> int:
        return self.warmup + self.steps

    @property
    def num_samples(self) -> int:
        return self.prompts * self.total_steps


# ---------------------------------------------------------------- shared inputs
def prepare(workdir: Path, cfg: BenchConfig) -> tuple[Path, Path]:
    """Build the tiny model and generate the GeoSynth images (parent process, before any timing)."""
    from globe.geo.gazetteer import Gazetteer
    from globe.models.tiny import build_tiny_qwen2_5_vl

    model_dir = build_tiny_qwen2_5_vl(workdir / "tiny-qwen2.5-vl", seed=cfg.seed)
    data = geosynth(workdir, cfg)
    data.prepare_data()
    Gazetteer.load()  # build the index cache once, so neither side pays for it
    return model_dir, data.root


def geosynth(workdir: Path, cfg: BenchConfig):
    from data_modules.geosynth import GeoSynth

    return GeoSynth(root=str(workdir / "geosynth"), train_size=cfg.num_samples, val_size=0, test_size=0,
                    seed=cfg.seed, image_size=cfg.image_size, min_shards=1)


def load_samples(workdir: Path, cfg: BenchConfig) -> list:
    """The training samples in shard order (no shuffling): prompt b of step s is sample s * P + b."""
    from data_modules.shard_stream import ShardStream

    data = geosynth(workdir, cfg)
    data.setup("fit")
    stream = ShardStream(data.train_shards, batch_size=cfg.num_samples, stats=data.stats["train"], shuffle=False)
    samples = [s for batch in stream for s in batch]
    if len(samples) != cfg.num_samples:
        raise RuntimeError(f"expected {cfg.num_samples} GeoSynth samples, read {len(samples)}")
    return samples


def reward_heads() -> list:
    """The reward heads both sides score with (the demo's: accuracy, visual grounding, format)."""
    from globe.rewards.format import FormatReward
    from globe.rewards.geo_accuracy import GeoAccuracyReward
    from globe.rewards.visual_grounding import VisualGroundingReward

    return [GeoAccuracyReward(name="geo", alpha=0.8), VisualGroundingReward(name="vis"), FormatReward(name="format")]


def time_generate(model, record: list[float]) -> None:
    """Record the wall time of every ``model.generate`` call (both systems roll out through it)."""
    original = model.generate

    def generate(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            record.append(time.perf_counter() - start)

    model.generate = generate


def peak_rss_mib() -> float:
    """This process's high-water resident set size (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------- GLOBE side
def run_globe(cfg: BenchConfig, model_dir: Path, workdir: Path) -> dict:
    import lightning as L
    from torch.utils.data import DataLoader

    from globe.grpo.settings import LossSettings, OptimSettings
    from globe.policy import GRPOPolicy
    from globe.rollout.base import SamplingConfig

    class StepClock(L.Callback):
        def __init__(self) -> None:
            self.stamps: list[float] = []
            self.lengths: list[float] = []
            self.rewards: list[float] = []
            self.generate_s: list[float] = []

        def on_train_start(self, trainer, pl_module) -> None:
            time_generate(pl_module.model, self.generate_s)
            self.stamps.append(time.perf_counter())

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.stamps.append(time.perf_counter())
            metrics = trainer.callback_metrics
            self.lengths.append(float(metrics["train/completion_length"]))
            self.rewards.append(float(metrics["train/reward"]))

    samples = load_samples(workdir, cfg)
    L.seed_everything(cfg.seed, verbose=False)
    policy = GRPOPolicy(
        model_path=str(model_dir),
        dtype="float32",
        rewards=reward_heads(),
        reward_weights=REWARD_WEIGHTS,
        engine="hf",
        group_size=cfg.group,
        sampling=SamplingConfig(temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=cfg.tokens),
        loss=LossSettings(beta=0.0, epsilon=0.2, loss_type="dapo", scale_rewards="group"),  # the token mean, group std
        optim=OptimSettings(learning_rate=cfg.lr, weight_decay=0.0, max_grad_norm=1.0, num_iterations=1),
    )
    clock = StepClock()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, precision="32-true", max_steps=cfg.total_steps, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, callbacks=[clock], default_root_dir=str(workdir / "globe-out"),
    )
    loader = DataLoader(samples, batch_size=cfg.prompts, shuffle=False, collate_fn=list)
    trainer.fit(policy, train_dataloaders=loader)
    return {"stamps": clock.stamps, "completion_length": clock.lengths, "reward": clock.rewards,
            "generate_s": clock.generate_s, "steps_done": trainer.global_step}


# ---------------------------------------------------------------- TRL side
def trl_reward_function(head, samples_by_key: dict):
    """A TRL reward function (``(completions, **columns) -> list[float]``) that scores with ``head``.

    TRL passes conversational completions (``[{"role": "assistant", "content": text}]``) and the
    dataset's extra columns; the ``key`` column finds each completion's ``GeoSample``, so the head
    sees exactly what GLOBE's policy gives it (a ``RewardBatch`` of text + sample + image).
    """
    from globe.rewards.base import RewardBatch

    def reward(completions, key, **kwargs) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        group = [samples_by_key[k] for k in key]
        batch = RewardBatch(images=[s.image for s in group], prompts=[""] * len(group), completions=texts, samples=group)
        return head.score(batch).tolist()

    reward.__name__ = head.name
    return reward


def run_trl(cfg: BenchConfig, model_dir: Path, workdir: Path) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from globe.models.loading import load_vlm
    from globe.prompts import build_messages

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.stamps: list[float] = []
            self.logs: list[dict] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.stamps.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            self.stamps.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.logs.append(dict(logs or {}))

    samples = load_samples(workdir, cfg)
    by_key = {s.key: s for s in samples}
    # TRL's VLM format: a conversational "prompt" whose user turn holds {"type": "image"} and an
    # "image" column; the trainer puts the image into the message and runs the processor.
    dataset = Dataset.from_dict({
        "prompt": [build_messages() for _ in samples],
        "image": [s.image for s in samples],
        "key": [s.key for s in samples],
    })
    model, processor = load_vlm(model_dir, dtype="float32")
    generate_s: list[float] = []
    time_generate(model, generate_s)
    heads = reward_heads()
    args = GRPOConfig(
        output_dir=str(workdir / "trl-out"),
        per_device_train_batch_size=cfg.prompts * cfg.group,  # completions per optimiser step
        gradient_accumulation_steps=1,
        num_generations=cfg.group,
        max_completion_length=cfg.tokens,
        temperature=1.0, top_p=1.0, top_k=0, repetition_penalty=1.0,
        beta=0.0, epsilon=0.2, num_iterations=1, loss_type="dapo", scale_rewards="group",
        reward_weights=[REWARD_WEIGHTS[h.name] for h in heads],
        learning_rate=cfg.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        optim="adamw_torch",
        max_steps=cfg.total_steps,
        shuffle_dataset=False,
        use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
        logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True, log_completions=False,
        dataloader_num_workers=0, seed=cfg.seed,
    )
    clock = StepClock()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[trl_reward_function(h, by_key) for h in heads],
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        callbacks=[clock],
    )
    trainer.train()
    step_logs = [log for log in clock.logs if "completions/mean_length" in log]
    return {"stamps": clock.stamps, "completion_length": [log["completions/mean_length"] for log in step_logs],
            "reward": [log.get("reward", float("nan")) for log in step_logs], "generate_s": generate_s,
            "steps_done": trainer.state.global_step}


# ---------------------------------------------------------------- child / parent
def child(side: str, cfg: BenchConfig, workdir: Path, model_dir: Path, out: Path) -> None:
    import torch

    torch.set_num_threads(cfg.threads)
    run = {"globe": run_globe, "trl": run_trl}[side]
    result = run(cfg, model_dir, workdir)
    result["threads"] = torch.get_num_threads()
    result["peak_rss_mib_self"] = peak_rss_mib()
    out.write_text(json.dumps(result))


def summarize(side: str, cfg: BenchConfig, result: dict, max_rss_kib: int, wall_s: float, load: tuple) -> dict:
    stamps = result["stamps"]
    durations = [b - a for a, b in zip(stamps, stamps[1:])]
    if len(durations) != cfg.total_steps:
        raise RuntimeError(f"{side}: {len(durations)} step times for {cfg.total_steps} steps")
    timed = durations[cfg.warmup:]
    lengths = result["completion_length"][cfg.warmup:]
    if len(result["generate_s"]) != cfg.total_steps:
        raise RuntimeError(f"{side}: {len(result['generate_s'])} generate calls for {cfg.total_steps} steps")
    generate = result["generate_s"][cfg.warmup:]
    median = statistics.median(timed)
    completions = cfg.prompts * cfg.group
    return {
        "system": side,
        "s_per_step_median": median,
        "s_per_step_mean": statistics.fmean(timed),
        "s_per_step_min": min(timed),
        "completions_per_s": completions / median,
        "tokens_per_s": completions * statistics.fmean(lengths) / median,
        "generate_s_median": statistics.median(generate),
        "rest_s_median": statistics.median(t - g for t, g in zip(timed, generate)),
        "mean_completion_length": statistics.fmean(lengths),
        "first_step_completion_length": result["completion_length"][0],
        "mean_reward": statistics.fmean(result["reward"][cfg.warmup:]),
        "peak_rss_mib": max_rss_kib / 1024,
        "warmup_s": sum(durations[: cfg.warmup]),
        "process_wall_s": wall_s,
        "threads": result["threads"],
        "load_before": load[0],
        "load_after": load[1],
        "step_times_s": timed,
    }


def run_side(side: str, cfg: BenchConfig, workdir: Path, model_dir: Path) -> dict:
    out = workdir / f"{side}.json"
    env = dict(os.environ, OMP_NUM_THREADS=str(cfg.threads), MKL_NUM_THREADS=str(cfg.threads),
               TOKENIZERS_PARALLELISM="false", WANDB_MODE="disabled", PYTHONPATH=str(REPO))
    cmd = [sys.executable, __file__, "--child", side, "--workdir", str(workdir), "--model-dir", str(model_dir),
           "--config-json", json.dumps(asdict(cfg)), "--child-out", str(out)]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own resource usage (max RSS)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    load_after = os.getloadavg()[0]
    if proc.returncode != 0:
        raise RuntimeError(f"{side} side failed (exit {proc.returncode})")
    return summarize(side, cfg, json.loads(out.read_text()), usage.ru_maxrss, wall, (load_before, load_after))


def versions() -> dict:
    import lightning
    import torch
    import transformers
    import trl

    return {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
            "lightning": lightning.__version__, "python": sys.version.split()[0]}


def markdown(cfg: BenchConfig, rows: list[dict], meta: dict) -> str:
    by = {r["system"]: r for r in rows}
    lines = [
        f"Measured {meta['date']} on `{meta['host']}` ({os.cpu_count()} cores), "
        f"{', '.join(f'{k} {v}' for k, v in meta['versions'].items())}. "
        f"{cfg.prompts} prompts x {cfg.group} completions = {cfg.prompts * cfg.group} completions per step, "
        f"max {cfg.tokens} tokens, {cfg.steps} timed steps after {cfg.warmup} warm-up steps, torch threads: {cfg.threads}.",
        "",
        "| system | s/step (median) | s/step (mean) | s/step (min) | of which `generate` | rest of the step | completions/s | tokens/s | mean completion length | peak RSS (MiB) | load avg before -> after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = {"trl": f"TRL GRPOTrainer {meta['versions']['trl']}", "globe": "GLOBE GRPOPolicy"}[r["system"]]
        lines.append(
            f"| {name} | {r['s_per_step_median']:.3f} | {r['s_per_step_mean']:.3f} | {r['s_per_step_min']:.3f} | "
            f"{r['generate_s_median']:.3f} | {r['rest_s_median']:.3f} | {r['completions_per_s']:.1f} | {r['tokens_per_s']:.0f} | {r['mean_completion_length']:.1f} | "
            f"{r['peak_rss_mib']:.0f} | {r['load_before']:.2f} -> {r['load_after']:.2f} |"
        )
    if "trl" in by and "globe" in by:
        speedup = by["trl"]["s_per_step_median"] / by["globe"]["s_per_step_median"]
        memory = by["trl"]["peak_rss_mib"] / by["globe"]["peak_rss_mib"]
        lines += ["", f"Median step time TRL / GLOBE: **{speedup:.2f}x**; peak RSS TRL / GLOBE: **{memory:.2f}x**."]
    lines += ["", f"Machine load: `uptime` before: `{meta['uptime_before']}`; after: `{meta['uptime_after']}`."]
    return "\n".join(lines)


def write_doc_figures(text: str) -> None:
    doc = DOC.read_text() if DOC.exists() else f"# TRL vs GLOBE\n\n{FIGURES_START}\n{FIGURES_END}\n"
    if FIGURES_START not in doc or FIGURES_END not in doc:
        raise RuntimeError(f"{DOC} has no {FIGURES_START} ... {FIGURES_END} block")
    head, rest = doc.split(FIGURES_START, 1)
    _, tail = rest.split(FIGURES_END, 1)
    DOC.write_text(f"{head}{FIGURES_START}\n{text}\n{FIGURES_END}{tail}")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    defaults = BenchConfig()
    p.add_argument("--prompts", type=int, default=defaults.prompts, help="prompts per optimiser step")
    p.add_argument("--group", type=int, default=defaults.group, help="completions per prompt")
    p.add_argument("--tokens", type=int, default=defaults.tokens, help="max completion length")
    p.add_argument("--steps", type=int, default=defaults.steps, help="timed steps")
    p.add_argument("--warmup", type=int, default=defaults.warmup, help="untimed steps first")
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--threads", type=int, default=defaults.threads, help="torch threads on both sides")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--order", default="trl,globe", help="which side runs first (comma-separated)")
    p.add_argument("--workdir", default=None, help="model + data directory (default: a temporary one)")
    p.add_argument("--json", default=str(REPO / "artifacts" / "benchmarks" / "trl_vs_globe.json"))
    p.add_argument("--write-docs", action="store_true", help=f"replace the figures block of {DOC.relative_to(REPO)}")
    p.add_argument("--child", choices=["trl", "globe"], help=argparse.SUPPRESS)
    p.add_argument("--model-dir", help=argparse.SUPPRESS)
    p.add_argument("--config-json", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    if a.child:
        cfg = BenchConfig(**json.loads(a.config_json))
        child(a.child, cfg, Path(a.workdir), Path(a.model_dir), Path(a.child_out))
        return
    if importlib.util.find_spec("trl") is None:
        sys.exit("trl is not installed here: run `bash benchmarks/setup_trl_env.sh`, then use .venv-bench/bin/python")
    cfg = BenchConfig(prompts=a.prompts, group=a.group, tokens=a.tokens, steps=a.steps, warmup=a.warmup, lr=a.lr,
                      threads=a.threads, seed=a.seed)
    with tempfile.TemporaryDirectory(prefix="trl-vs-globe-") as tmp:
        workdir = Path(a.workdir or tmp)
        model_dir, _ = prepare(workdir, cfg)
        meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "host": os.uname().nodename, "versions": versions(),
                "uptime_before": uptime()}
        rows = []
        for side in a.order.split(","):
            print(f"--- {side}: {cfg.total_steps} steps", flush=True)
            rows.append(run_side(side.strip(), cfg, workdir, model_dir))
        meta["uptime_after"] = uptime()
    text = markdown(cfg, rows, meta)
    print(text)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps({"config": asdict(cfg), "meta": meta, "results": rows}, indent=2))
    print(f"figures: {a.json}")
    if a.write_docs:
        write_doc_figures(text)
        print(f"figures written to {DOC}")


if __name__ == "__main__":
    main()
