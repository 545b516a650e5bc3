"""Rollout engines side by side: vLLM (in-process ``vllm.LLM``) vs transformers ``generate``.

Same tiny Qwen2.5-VL directory, same prompts (B synthetic images with the paper's prompt), same
sampling (paper: temperature 1.0, top_p 0.9, top_k 50), same n and completion length; the two
engines alternate repeat by repeat so both see the same machine load. Reported per engine:
start time (model / engine construction; ``import vllm`` timed apart), seconds per ``generate``
(median and min of the repeats), completions/s and generated tokens/s, one ``sync_weights`` call,
and the log-prob mismatch against the trainer's forward (``globe.grpo.logprobs.completion_logprobs``)
for a few sampling settings, which shows where vLLM's ``logprobs_mode`` follows the convention.

Runs in the vLLM environment (``.ci/vllm_env``):

    .venv-vllm/bin/python benchmarks/rollout_engines.py [--prompts 8 --n 8 --tokens 64 --repeat 3]
        [--logprobs-mode raw_logprobs|processed_logprobs] [--threads 1] [--json out.json]

Threads: both engines use ``--threads`` OpenMP threads (set before torch starts). vLLM's CPU worker
binds the process's OpenMP threads at start, so the transformers engine runs on the bound threads
too. On a shared machine keep threads below the idle cores: oversubscribed OpenMP threads
spin-wait (here, 2 threads on 2 busy cores made ``generate`` ~8x slower than 1 thread).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="OpenMP / torch threads for both engines")
    parser.add_argument("--logprobs-mode", default="raw_logprobs", choices=["raw_logprobs", "processed_logprobs"])
    parser.add_argument("--model-dir", default=None, help="tiny model directory (built when missing)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    return parser.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
if ARGS is not None:  # before torch starts its OpenMP pool
    os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from globe.grpo.logprobs import completion_logprobs  # noqa: E402
from globe.models.loading import load_vlm  # noqa: E402
from globe.models.tiny import build_tiny_qwen2_5_vl  # noqa: E402
from globe.rollout.base import Completions, PromptBatch, RolloutEngine, SamplingConfig  # noqa: E402
from globe.rollout.hf_engine import HFRolloutEngine  # noqa: E402
from globe.rollout.prompts_batch import build_prompt_batch  # noqa: E402

MISMATCH_SETTINGS = {  # name -> sampling (seeded), for the log-prob comparison
    "T=1.0 top_p=0.9 top_k=50 (paper)": dict(temperature=1.0, top_p=0.9, top_k=50),
    "T=0.7 top_p=0.9 top_k=50": dict(temperature=0.7, top_p=0.9, top_k=50),
    "T=0.7 no top-p/top-k": dict(temperature=0.7, top_p=1.0, top_k=0),
}


def synthetic_images(count: int, seed: int = 0) -> list[Image.Image]:
    """Random RGB images at the tiny model's largest size (112 x 112 -> 16 image tokens)."""
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)) for _ in range(count)]


def timed_generate(engine: RolloutEngine, prompts: PromptBatch, n: int, sampling: SamplingConfig) -> tuple[float, Completions]:
    start = time.perf_counter()
    out = engine.generate(prompts, n=n, sampling=sampling)
    return time.perf_counter() - start, out


def logprob_mismatch(engine: RolloutEngine, model, prompts: PromptBatch, n: int, sampling: SamplingConfig) -> tuple[float, float]:
    """(max, mean) |engine - trainer| log-prob over the generated tokens."""
    out = engine.generate(prompts, n=n, sampling=sampling)
    with torch.no_grad():
        reference = completion_logprobs(model, prompts.inputs, out.ids, out.mask, sampling.temperature)
    diff = (out.logprobs - reference).abs()[out.mask.bool()]
    return diff.max().item(), diff.mean().item()


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    model_dir = build_tiny_qwen2_5_vl(args.model_dir or os.path.join(tempfile.gettempdir(), "globe_bench_tiny_qwen2_5_vl"))
    sampling = SamplingConfig(temperature=1.0, top_p=0.9, top_k=50, max_new_tokens=args.tokens, seed=0)
    results: dict[str, dict] = {}

    start = time.perf_counter()
    model, processor = load_vlm(model_dir, dtype="float32")
    model.eval()
    hf = HFRolloutEngine(model, processor)
    results["transformers"] = {"start_s": time.perf_counter() - start}
    prompts = build_prompt_batch(processor, synthetic_images(args.prompts))

    start = time.perf_counter()
    import vllm  # noqa: F401  (timed apart from the engine start: ~10 s, paid once per process)

    from globe.rollout.vllm_engine import VLLMRolloutEngine

    import_s = time.perf_counter() - start
    start = time.perf_counter()
    vllm_engine = VLLMRolloutEngine(
        model_dir, dtype="float32", max_model_len=1024, logprobs_mode=args.logprobs_mode, seed=0,
        max_num_seqs=max(64, args.prompts * args.n),
    )
    results["vllm"] = {"start_s": time.perf_counter() - start, "import_s": import_s}
    engines = {"transformers": hf, "vllm": vllm_engine}

    for name, engine in engines.items():  # warm-up (first-call compilation, allocator)
        engine.generate(prompts, n=args.n, sampling=sampling)
    times: dict[str, list[float]] = {name: [] for name in engines}
    tokens: dict[str, list[int]] = {name: [] for name in engines}
    for repeat in range(args.repeat):  # alternate, so both engines see the same machine load
        for name, engine in engines.items():
            seconds, out = timed_generate(engine, prompts, args.n, SamplingConfig(**{**sampling.__dict__, "seed": repeat}))
            times[name].append(seconds)
            tokens[name].append(int(out.mask.sum()))
    for name, engine in engines.items():
        start = time.perf_counter()
        engine.sync_weights(model)
        sync_s = time.perf_counter() - start
        median = statistics.median(times[name])
        completions = args.prompts * args.n
        results[name].update(
            generate_median_s=median,
            generate_min_s=min(times[name]),
            completions_per_s=completions / median,
            tokens_per_s=statistics.median(tokens[name]) / median,
            sync_weights_s=sync_s,
            logprob_mismatch={
                setting: logprob_mismatch(engine, model, prompts, 4, SamplingConfig(**kw, max_new_tokens=32, seed=1))
                for setting, kw in MISMATCH_SETTINGS.items()
            },
        )

    print(
        f"\n{args.prompts} prompts x n={args.n} x {args.tokens} tokens, {args.repeat} repeats, "
        f"{args.threads} threads, torch {torch.__version__}, vLLM logprobs_mode={args.logprobs_mode}, "
        f"1-min load average {load_before:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n"
    )
    print("| engine | import s | start s | generate s (median / min) | completions/s | tokens/s | sync_weights s |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        imported = f"{r['import_s']:.1f}" if "import_s" in r else "-"
        print(
            f"| {name} | {imported} | {r['start_s']:.1f} | {r['generate_median_s']:.2f} / {r['generate_min_s']:.2f} | "
            f"{r['completions_per_s']:.1f} | {r['tokens_per_s']:.0f} | {r['sync_weights_s']:.3f} |"
        )
    print("\nmax / mean |engine log-prob - trainer log-prob| per generated token (n=4, 32 tokens):\n")
    print("| sampling | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for setting in MISMATCH_SETTINGS:
        cells = [f"{results[name]['logprob_mismatch'][setting][0]:.2g} / {results[name]['logprob_mismatch'][setting][1]:.2g}" for name in results]
        print(f"| {setting} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)
    vllm_engine.close()


if __name__ == "__main__":
    main(ARGS)
