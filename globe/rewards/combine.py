"""Total reward: a weighted sum of the heads' scores.

``r = sum_k w_k * s_k`` over the heads named in ``weights`` (the paper's
``lambda_1 R_loc + lambda_2 R_vis + lambda_3 R_geo`` plus the format reward). A head that is
scored but has no weight is logged only (weight 0); a weight without a score is an error,
because silently dropping a configured reward is the failure that is hardest to notice.

Presets from the paper's training scripts (its README swaps loc and vis):
:data:`PAPER_WEIGHTS` (all rewards) and :data:`PAPER_TWO_REWARD_WEIGHTS` (accuracy + visual).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

__all__ = ["combine_rewards", "PAPER_WEIGHTS", "PAPER_TWO_REWARD_WEIGHTS"]

PAPER_WEIGHTS: dict[str, float] = {"geo": 1.0, "loc": 0.5, "vis": 0.2, "format": 1.0}
PAPER_TWO_REWARD_WEIGHTS: dict[str, float] = {"geo": 1.0, "vis": 0.5, "format": 1.0}


def combine_rewards(scores: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """Weighted sum of per-head scores, each of shape [N]; returns float32 [N].

    >>> s = {"geo": torch.tensor([1.0, 0.25]), "format": torch.tensor([1.0, 0.0])}
    >>> combine_rewards(s, {"geo": 1.0, "format": 0.5}).tolist()
    [1.5, 0.25]
    """
    missing = [k for k, w in weights.items() if w != 0 and k not in scores]
    if missing:
        raise KeyError(f"weights name reward heads that produced no score: {missing} (scored: {sorted(scores)})")
    if not scores:
        raise ValueError("combine_rewards needs at least one score tensor")
    shapes = {k: tuple(v.shape) for k, v in scores.items()}
    if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 1:
        raise ValueError(f"every score must be a 1-D tensor of the same length, got {shapes}")
    first = next(iter(scores.values()))
    total = torch.zeros_like(first, dtype=torch.float32)
    for key, weight in weights.items():
        if weight != 0:
            total = total + float(weight) * scores[key].to(torch.float32)
    return total
