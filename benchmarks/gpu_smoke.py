"""GPU smoke test at the paper's model size: GRPO steps of ``GRPOPolicy`` on Qwen2.5-VL-7B shapes.

    python benchmarks/gpu_smoke.py [--steps 3] [--group 16] [--prompts 4] [--new-tokens 256] [--out smoke.json]
    python benchmarks/gpu_smoke.py --dry-run      # the same code path on the CPU, tiny model (tested)

Nothing is downloaded: a Qwen2.5-VL with the 7B sizes (text 28 layers x 3584, 28 heads, 4 KV
heads, MLP 18944, vocabulary 152,064; vision 32 blocks x 1280 -> 3584) and random weights is built
from a config on the GPU, in bf16, and saved as a Hugging Face directory with the processor of the
project's tiny model (its tokenizer knows 4,096 tokens: ids above that decode to nothing, so the
random policy writes empty text and every completion runs to ``--new-tokens``, which is what a
throughput figure wants). GeoSynth images (128 px) are the prompts.

Two phases, each a real ``lightning.Trainer`` fitting ``globe.policy.GRPOPolicy`` for ``--steps``
steps with the transformers engine (rollout -> rewards -> group advantages -> clipped loss + k3 KL,
micro-batched by prompt, gradient checkpointing), the paper's sampling (T 1.0, top-p 0.9,
top-k 50), group 16:

1. ``lora``: LoRA r 64 / alpha 128 on the language model (configs/grpo/lora.yaml), bf16, one GPU;
2. ``full_fsdp2``: full fine-tuning under ``ModelParallelStrategy`` (FSDP2) on one rank, with the
   frozen reference copy for the KL term. Weights bf16 by default; ``--master-dtype float32`` is the
   paper configuration's fp32 masters with bf16 compute (about 16 bytes per parameter with AdamW:
   more than one 141 GB GPU holds at 7B, so it is for several GPUs or smaller shapes).

Rewards: accuracy, visual grounding and format (the paper's weights); R_loc is left out (it needs a
trained reward-model checkpoint and would be a second 7B model).

Printed (and written to ``--out``) as JSON, per phase: seconds per step, examples/s (prompts) and
tokens/s (generated tokens) over all steps and over the steps after the first (warm-up: CUDA
kernels, allocator), the rollout / scoring / optimisation split of the last step, and the peak GPU
memory (``torch.cuda.max_memory_allocated`` and ``max_memory_reserved``; the process's peak RSS on
the CPU). Without CUDA it exits with status 2 and says so, unless ``--dry-run``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

NO_CUDA_EXIT = 2


@dataclass(frozen=True)
class VLMSizes:
    """The shape of a Qwen2.5-VL (text decoder + vision tower)."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int | None  # None: the tokenizer's size
    mrope_section: tuple[int, int, int]  # sums to head_dim / 2
    vision_depth: int
    vision_hidden: int
    vision_intermediate: int
    vision_heads: int
    vision_full_attention: tuple[int, ...]
    rope_theta: float
    tie_embeddings: bool


# Qwen2.5-VL-7B-Instruct's published config.json values
QWEN2_5_VL_7B = VLMSizes(hidden=3584, intermediate=18944, layers=28, heads=28, kv_heads=4, vocab=152064,
                         mrope_section=(16, 24, 24), vision_depth=32, vision_hidden=1280, vision_intermediate=3420,
                         vision_heads=16, vision_full_attention=(7, 15, 23, 31), rope_theta=1_000_000.0,
                         tie_embeddings=False)
# the project's tiny model (globe/models/tiny.py): head size 32 everywhere
TINY = VLMSizes(hidden=128, intermediate=256, layers=2, heads=4, kv_heads=2, vocab=None, mrope_section=(4, 6, 6),
                vision_depth=2, vision_hidden=64, vision_intermediate=128, vision_heads=2, vision_full_attention=(1,),
                rope_theta=10000.0, tie_embeddings=True)


def qwen2_5_vl_config(tokenizer, s: VLMSizes):
    """A ``Qwen2_5_VLConfig`` of shape ``s`` whose special-token ids are ``tokenizer``'s."""
    from transformers import Qwen2_5_VLConfig

    from globe.models.tiny import SPECIAL_TOKENS

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab = s.vocab or len(tokenizer)
    if vocab < len(tokenizer):
        raise ValueError(f"vocabulary {vocab} is smaller than the tokenizer's {len(tokenizer)}")
    text = dict(
        vocab_size=vocab, hidden_size=s.hidden, intermediate_size=s.intermediate, num_hidden_layers=s.layers,
        num_attention_heads=s.heads, num_key_value_heads=s.kv_heads, max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": s.rope_theta, "mrope_section": list(s.mrope_section)},
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=s.tie_embeddings,
    )
    vision = dict(depth=s.vision_depth, hidden_size=s.vision_hidden, intermediate_size=s.vision_intermediate,
                  num_heads=s.vision_heads, out_hidden_size=s.hidden, fullatt_block_indexes=list(s.vision_full_attention),
                  window_size=112, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                            video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                            vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=s.tie_embeddings)


def build_random_vlm(out: Path, sizes: VLMSizes, processor_dir: Path, device: str) -> Path:
    """Random-weight Qwen2.5-VL of ``sizes``, built on ``device`` in bf16, saved with ``processor_dir``'s processor."""
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    from globe.models.loading import load_processor
    from globe.models.processor import save_processor

    tokenizer = AutoTokenizer.from_pretrained(str(processor_dir))
    config = qwen2_5_vl_config(tokenizer, sizes)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16)
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.save_pretrained(out)
    save_processor(load_processor(processor_dir), out)
    params = sum(p.numel() for p in model.parameters())
    del model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    (out / "smoke_params.json").write_text(json.dumps({"parameters": params, "sizes": asdict(sizes)}))
    return out


def geosynth_batches(n: int):
    """``n`` GeoSynth samples as ``GeoSample`` (the records the shards would hold)."""
    from data_modules.geosynth.generate import generate_record
    from data_modules.sample import GeoSample

    samples = []
    for i in range(n):
        rec = generate_record(seed=0, split="train", index=i, size=128)
        m = rec.meta
        samples.append(GeoSample(rec.key, rec.image, m["lat"], m["lon"], m["country"], m["city"], m["localizable"],
                                 m["reasoning"], list(m["entities"])))
    return samples


def step_timer():
    """A callback recording each training step's wall time and the policy's logged figures."""
    from lightning.pytorch import Callback

    class StepTimer(Callback):
        def __init__(self) -> None:
            self.steps: list[dict] = []
            self._t0 = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self._t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            m = trainer.callback_metrics
            get = lambda k: float(m[k]) if k in m else None  # noqa: E731
            self.steps.append({
                "seconds": time.perf_counter() - self._t0, "prompts": len(batch),
                "completion_length": get("train/completion_length"), "truncated_fraction": get("train/truncated_fraction"),
                "rollout_s": get("time/rollout_s"), "score_s": get("time/score_s"), "optimize_s": get("time/optimize_s"),
                "reward": get("train/reward"), "kl": get("train/kl"),
            })

    return StepTimer()


def throughput(steps: list[dict], group: int) -> dict:
    """examples/s (prompts) and tokens/s (generated tokens, ``completion_length x prompts x group``)."""
    if not steps:
        return {"examples_per_s": None, "tokens_per_s": None, "s_per_step": None}
    seconds = sum(s["seconds"] for s in steps)
    examples = sum(s["prompts"] for s in steps)
    tokens = sum((s["completion_length"] or 0.0) * s["prompts"] * group for s in steps)
    return {"examples_per_s": round(examples / seconds, 4), "tokens_per_s": round(tokens / seconds, 1),
            "s_per_step": round(seconds / len(steps), 3)}


PHASES = ("lora", "full_fsdp2")


def run_phase(phase: str, model_dir: Path, a: argparse.Namespace, cuda: bool) -> dict:
    """``a.steps`` GRPO steps of one phase through ``lightning.Trainer``; returns its figures."""
    from lightning.pytorch import Trainer, seed_everything
    from lightning.pytorch.strategies import ModelParallelStrategy
    from torch.utils.data import DataLoader

    from globe.grpo.settings import LossSettings, OptimSettings
    from globe.models.loading import LoraConfigSpec
    from globe.policy import GRPOPolicy
    from globe.rewards.format import FormatReward
    from globe.rewards.geo_accuracy import GeoAccuracyReward
    from globe.rewards.visual_grounding import VisualGroundingReward
    from globe.rollout.base import SamplingConfig

    seed_everything(0)
    full = phase == "full_fsdp2"
    fp32_masters = full and a.master_dtype == "float32"
    policy = GRPOPolicy(
        model_path=str(model_dir),
        dtype="float32" if fp32_masters else "bfloat16",
        fsdp_compute_dtype="bfloat16" if fp32_masters else None,
        lora=None if full else LoraConfigSpec(r=64, alpha=128, dropout=0.0),
        gradient_checkpointing=True,
        rewards=[GeoAccuracyReward(name="geo", alpha=0.8), VisualGroundingReward(name="vis"), FormatReward(name="format")],
        reward_weights={"geo": 1.0, "vis": 0.2, "format": 1.0},
        engine="hf",
        group_size=a.group,
        sampling=SamplingConfig(temperature=1.0, top_p=0.9, top_k=50, max_new_tokens=a.new_tokens),
        loss=LossSettings(beta=0.001),
        optim=OptimSettings(learning_rate=1e-6 if full else 1e-5, micro_batch_prompts=1),
    )
    if full:
        strategy = ModelParallelStrategy(data_parallel_size=1, tensor_parallel_size=1,
                                         process_group_backend="nccl" if cuda else "gloo")
    else:
        strategy = "auto"
    timer = step_timer()
    trainer = Trainer(accelerator="gpu" if cuda else "cpu", devices=1, strategy=strategy,
                      precision="32-true" if fp32_masters else "bf16-true", max_steps=a.steps, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0, limit_val_batches=0, callbacks=[timer])
    loader = DataLoader(geosynth_batches(a.steps * a.prompts), batch_size=a.prompts, collate_fn=list)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.fit(policy, train_dataloaders=loader)
    wall = time.perf_counter() - start
    result = {
        "phase": phase, "strategy": type(trainer.strategy).__name__, "precision": trainer.precision,
        "weights_dtype": "float32" if fp32_masters else "bfloat16", "lora": None if full else {"r": 64, "alpha": 128},
        "steps": len(timer.steps), "group": a.group, "prompts_per_step": a.prompts, "max_new_tokens": a.new_tokens,
        "trainable_parameters": sum(p.numel() for p in policy.model.parameters() if p.requires_grad),
        "fit_wall_s": round(wall, 1),
        "all_steps": throughput(timer.steps, a.group),
        "after_first_step": throughput(timer.steps[1:], a.group),
        "per_step": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()} for s in timer.steps],
    }
    if cuda:
        result["peak_gpu_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
        result["peak_gpu_reserved_mib"] = round(torch.cuda.max_memory_reserved() / 2**20)
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # KiB on Linux
    del trainer, policy, loader
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    if full and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return result


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny model: the same code path, for tests")
    parser.add_argument("--steps", type=int, default=3, help="GRPO steps per phase")
    parser.add_argument("--group", type=int, default=None, help="completions per prompt (default 16; dry run 4)")
    parser.add_argument("--prompts", type=int, default=None, help="prompts per step (default 4; dry run 2)")
    parser.add_argument("--new-tokens", type=int, default=None, help="max new tokens (default 256; dry run 16)")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)}")
    parser.add_argument("--master-dtype", choices=("bfloat16", "float32"), default="bfloat16",
                        help="full_fsdp2 weights: bf16, or the paper's fp32 masters with bf16 compute")
    parser.add_argument("--workdir", help="where the model directories go (default: a temporary folder)")
    parser.add_argument("--out", help="also write the JSON here (atomically)")
    a = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and not a.dry_run
    if not cuda and not a.dry_run:
        print("gpu_smoke: no CUDA device is visible (torch.cuda.is_available() is False); this benchmark needs a "
              "GPU. Run with --dry-run for the same code path on the CPU with the tiny model.", file=sys.stderr)
        return NO_CUDA_EXIT
    a.group = a.group or (4 if a.dry_run else 16)
    a.prompts = a.prompts or (2 if a.dry_run else 4)
    a.new_tokens = a.new_tokens or (16 if a.dry_run else 256)
    phases = [p for p in a.phases.split(",") if p]
    if set(phases) - set(PHASES) or a.steps < 1 or a.group < 2:
        parser.error(f"phases among {PHASES}, --steps >= 1, --group >= 2")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from globe.models.tiny import build_tiny_qwen2_5_vl

    with tempfile.TemporaryDirectory(prefix="gpu-smoke-", dir=a.workdir) as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        tiny = build_tiny_qwen2_5_vl(work / "tiny")  # its tokenizer and processor serve both sizes
        sizes = TINY if a.dry_run else QWEN2_5_VL_7B
        model_dir = build_random_vlm(work / "model", sizes, tiny, "cuda" if cuda else "cpu")
        report = {
            "device": torch.cuda.get_device_name(0) if cuda else "cpu (dry run)",
            "torch": torch.__version__, "model": "tiny" if a.dry_run else "qwen2.5-vl-7b shapes, random weights",
            "parameters": json.loads((model_dir / "smoke_params.json").read_text())["parameters"],
            "build_s": round(time.perf_counter() - t0, 1), "phases": [],
        }
        for phase in phases:
            report["phases"].append(run_phase(phase, model_dir, a, cuda))
            if a.out:
                write_json(Path(a.out), report)
    print(json.dumps(report, indent=2))
    if a.out:
        write_json(Path(a.out), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
