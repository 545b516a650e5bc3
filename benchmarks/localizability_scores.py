"""What a trained R_loc says once it is loaded frozen into GRPO, and how fast it scores.

    python benchmarks/localizability_scores.py --checkpoint artifacts/localizability/checkpoints/last.ckpt \
        [--root artifacts/geosynth] [--images 64] [--batch-size 16]

Loads ``LocalizabilityReward.from_checkpoint`` (frozen, eval mode: what ``GRPOPolicy`` holds), takes
the first ``images`` samples of the GeoSynth *test* split (never seen in training or validation)
and scores three kinds of (image, reasoning) pairs through the head's ``score``:

* ``own``: a localizable image with its own reasoning (should score high);
* ``swapped``: a localizable image with the reasoning of the next localizable image from another
  country (the reasoning does not fit the image: should score low);
* ``close-up``: a non-localizable image with its own reasoning (should score low).

Prints the mean score of each kind and the time of the ``score`` calls (one call per kind, batched
by ``score_batch_size``).
"""

from __future__ import annotations

import argparse
import time

import torch

from data_modules.geosynth import GeoSynth
from globe.rewards.base import RewardBatch
from globe.rewards.localizability import LocalizabilityReward


def _pairs(samples: list) -> dict[str, tuple[list, list[str]]]:
    localizable = [s for s in samples if s.localizable]
    swapped = []
    for i, sample in enumerate(localizable):
        other = next((o for o in localizable[i + 1 :] + localizable[:i] if o.country != sample.country), None)
        if other is not None:
            swapped.append((sample, other.reasoning))
    close_ups = [s for s in samples if not s.localizable]
    return {
        "own": (localizable, [s.reasoning for s in localizable]),
        "swapped": ([s for s, _ in swapped], [r for _, r in swapped]),
        "close-up": (close_ups, [s.reasoning for s in close_ups]),
    }


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a LocalizabilityTrainer .ckpt or export directory")
    parser.add_argument("--root", default="artifacts/geosynth", help="GeoSynth root (generated if missing)")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)

    data = GeoSynth(root=args.root, batch_size=args.images)
    data.prepare_data()
    data.setup("test")
    samples = next(iter(data.test_dataloader()))[: args.images]
    head = LocalizabilityReward.from_checkpoint(args.checkpoint, score_batch_size=args.batch_size)

    results = {}
    for kind, (chosen, reasonings) in _pairs(samples).items():
        batch = RewardBatch(images=[s.image for s in chosen], prompts=[""] * len(chosen), completions=reasonings,
                            samples=chosen)
        start = time.perf_counter()
        with torch.no_grad():
            scores = head.score(batch)
        seconds = time.perf_counter() - start
        results[kind] = {"pairs": len(chosen), "mean_score": float(scores.mean()), "seconds": seconds}
        print(f"{kind:10s} {len(chosen):4d} pairs  mean score {scores.mean():.3f}  scored in {seconds:.2f} s")
    return results


if __name__ == "__main__":
    main()
