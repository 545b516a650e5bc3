"""GRPO on one fixed batch: does the update raise the reward of the prompts it was computed on?

    python benchmarks/grpo_fixed_batch.py --ckpt artifacts/demo/checkpoints/step=150.ckpt \
        [--model artifacts/tiny-qwen2.5-vl] [--data artifacts/geosynth] [--lr 1e-4 3e-4] [--group 8] [--prompts 8] [--updates 16]

The demo's policy is loaded from a checkpoint (its warm start, typically) and one training batch
of GeoSynth is drawn. For each learning rate, starting again from the checkpoint: ``updates``
times, roll out ``group`` samples per prompt with the demo's training sampling, score them with
the demo's reward heads, compute group advantages and take one GRPO optimiser step (AdamW, the
policy's own ``optimize``). The printed rewards are those of the rollout before each update, so
a correct update direction shows as a rise over the rows; the first row also checks that the
policy's log-probs equal the sampler's.

It isolates the update from the data: a flat or falling series here cannot come from prompts that
differ between steps. It prints a table and writes ``--out`` (JSON) when given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_modules.geosynth import GeoSynth  # noqa: E402
from globe.grpo.logprobs import completion_logprobs  # noqa: E402
from globe.grpo.settings import LossSettings, OptimSettings, WarmStartSettings  # noqa: E402
from globe.policy import GRPOPolicy  # noqa: E402
from globe.rewards.format import FormatReward  # noqa: E402
from globe.rewards.geo_accuracy import GeoAccuracyReward  # noqa: E402
from globe.rewards.visual_grounding import VisualGroundingReward  # noqa: E402
from globe.rollout.base import SamplingConfig  # noqa: E402


def demo_policy(model: str, lr: float, group: int) -> GRPOPolicy:
    demo = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())["model"]["init_args"]
    policy = GRPOPolicy(
        model_path=model, group_size=group, loss=LossSettings(beta=0.0), optim=OptimSettings(learning_rate=lr), dtype="float32",
        sampling=SamplingConfig(**demo["sampling"]), warm_start=WarmStartSettings(steps=0),
        rewards=[GeoAccuracyReward(name="geo", alpha=0.8), VisualGroundingReward(name="vis"), FormatReward(name="format")],
        reward_weights=demo["reward_weights"],
    )
    policy.configure_model()
    # what Lightning gives ``optimize``: the optimiser, no scheduler (constant rate), plain backward
    optimizer = policy.configure_optimizers()["optimizer"]
    policy.optimizers = lambda: optimizer
    policy.lr_schedulers = lambda: None
    policy.manual_backward = lambda loss: loss.backward()
    return policy


def run(ckpt: Path, model: str, data: str, lr: float, group: int, updates: int, seed: int, prompts_per_batch: int = 8,
        data_args: dict | None = None) -> list[dict]:
    torch.manual_seed(seed)
    policy = demo_policy(model, lr, group)
    state = torch.load(ckpt, weights_only=True, map_location="cpu")["state_dict"]
    policy.load_state_dict(state, strict=False)
    demo_data = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())["data"]["init_args"]
    datamodule = GeoSynth(**{**demo_data, **(data_args or {}), "root": data, "batch_size": prompts_per_batch})
    datamodule.prepare_data()
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    prompts = policy.build_prompts(batch)
    rows = []
    for update in range(updates):
        completions = policy.rollout(prompts, seed=1000 * (seed + 1) + update)
        row = {"update": update}
        if update == 0:
            with torch.no_grad():
                logp = completion_logprobs(policy.model, prompts.inputs, completions.ids, completions.mask,
                                           policy.sampling.temperature)
            mask = completions.mask.bool()
            row["max_abs_logprob_diff"] = float((logp - completions.logprobs)[mask].abs().max())
        rewards = policy.score(batch, prompts, completions)
        advantages, zero_spread = policy.advantages(rewards.total)
        policy.optimize(prompts, completions, advantages)
        row.update(reward=float(rewards.total.mean()), **{k: float(v.mean()) for k, v in rewards.heads.items()},
                   zero_spread=float(zero_spread.float().mean()), length=float(completions.mask.sum(1).float().mean()))
        rows.append(row)
        print(f"lr {lr:g} update {update:2d}: " + " ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "update"), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--model", default="artifacts/tiny-qwen2.5-vl")
    parser.add_argument("--data", default="artifacts/geosynth")
    parser.add_argument("--lr", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3])
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--updates", type=int, default=16)
    parser.add_argument("--prompts", type=int, default=8, help="images in the fixed batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    results = {str(lr): run(args.ckpt, args.model, args.data, lr, args.group, args.updates, args.seed, args.prompts) for lr in args.lr}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=1))
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
