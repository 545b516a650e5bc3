"""Group-relative advantages (GRPO, DeepSeekMath eq. 3; GLOBE paper sec. 3.3).

For each prompt the policy draws G completions; their rewards are normalised within the group:

    A_i = (r_i - mean_g(r)) / (std_g(r) + eps)

and the same advantage is given to every token of completion i (outcome supervision).

Choices and deviations:
- ``std_g`` is the *unbiased* sample standard deviation (``torch.std``, Bessel's correction, divisor
  G - 1), as in TRL's ``GRPOTrainer``, which the paper's code builds on. A group of one has no
  spread by definition.
- ``eps = 1e-4`` (TRL's value) only guards the division; it is not a smoothing term.
- Zero-spread groups (every reward in the group exactly equal, e.g. all 0 or all 1) carry no learning
  signal. Their advantages are set to exactly 0 (not ~1e-8 from floating-point noise) and they are
  reported so the trainer can log their fraction (a silent-failure indicator) or resample them.
- ``scale`` takes TRL's ``scale_rewards`` names: ``"group"`` (GRPO; ``"std"`` is the older name)
  divides by the group's standard deviation; ``"batch"`` keeps the group mean but divides by the
  standard deviation of the whole batch (all ``B*G`` rewards of this rank's step; Liu et al. 2025,
  "Tricks or Traps?"; TRL gathers the rewards of every rank first, so the two agree on one rank);
  ``"none"`` only centres (Dr. GRPO, Liu et al. 2025), which removes the question-difficulty bias
  of std normalisation.
- Several reward heads: ``decoupled_advantages`` normalises each head within its group before the
  weighted sum (GDPO, Liu et al. 2026), instead of normalising the sum.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch

AdvantageScale = Literal["group", "batch", "none", "std"]
RewardAggregation = Literal["sum_then_normalize", "normalize_then_sum"]
SCALES = ("group", "batch", "none", "std")


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    eps: float = 1e-4,
    scale: AdvantageScale = "std",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalise rewards within consecutive groups of ``group_size`` completions.

    Args:
        rewards: ``[B*G]`` rewards; row ``b * G + j`` is completion j of prompt b.
        group_size: G, completions per prompt.
        eps: added to the group standard deviation before dividing.
        scale: ``"group"`` / ``"std"`` (GRPO) divides by the group's ``std + eps``; ``"batch"`` by the
            whole batch's ``std + eps``; ``"none"`` (Dr. GRPO) only centres.

    Returns:
        ``(advantages [B*G], zero_spread [B] bool)``.

    >>> a, z = group_advantages(torch.tensor([1.0, 0.0, 0.5, 0.5]), group_size=2)
    >>> [round(x, 3) for x in a.tolist()], z.tolist()
    ([0.707, -0.707, 0.0, 0.0], [False, True])
    """
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if rewards.ndim != 1 or rewards.numel() % group_size != 0:
        raise ValueError(f"rewards must be 1-D with a multiple of group_size={group_size} entries, got {tuple(rewards.shape)}")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    grouped = rewards.float().view(-1, group_size)  # [B, G]
    mean = grouped.mean(dim=1, keepdim=True)  # [B, 1]
    zero_spread = (grouped.amax(dim=1) == grouped.amin(dim=1))  # [B]
    centred = grouped - mean  # [B, G]
    if scale in ("std", "group") and group_size > 1:
        std = grouped.std(dim=1, keepdim=True)  # [B, 1], unbiased (divisor G - 1)
        centred = centred / (std + eps)
    elif scale == "batch" and grouped.numel() > 1:
        centred = centred / (grouped.std() + eps)  # one unbiased std over all B*G rewards
    advantages = centred.masked_fill(zero_spread.unsqueeze(1), 0.0)  # [B, G]
    return advantages.reshape(-1), zero_spread


def decoupled_advantages(
    heads: Mapping[str, torch.Tensor],
    weights: Mapping[str, float],
    group_size: int,
    eps: float = 1e-4,
    scale: AdvantageScale = "batch",
) -> tuple[torch.Tensor, torch.Tensor]:
    """GDPO's ``normalize_then_sum`` (Liu et al. 2026, "GDPO: Group reward-Decoupled Normalization").

    Normalising the weighted sum lets different head combinations collapse onto the same advantage
    (e.g. format 1 / accuracy 0 and format 0 / accuracy 1); normalising each head first keeps them
    apart. Exactly:

    1. per head k: ``a_k = group_advantages(r_k, G, eps, "group")``: ``(r_k - mean_g) / (std_g + eps)``
       (unbiased std), exactly 0 in a group where head k is constant;
    2. ``a = sum_k w_k a_k`` over the heads with a non-zero weight;
    3. ``A = group_advantages(a, G, eps, scale)``: ``a`` already has zero group mean, so this only
       divides by the standard deviation of the batch (``"batch"``: GDPO and TRL's
       ``multi_objective_aggregation="normalize_then_sum"``), of the group (``"group"``), or leaves
       ``a`` as it is (``"none"``).

    Returns ``(advantages [B*G], zero_spread [B])``; a group is zero-spread when every weighted head
    is constant in it (no head carries a signal there).

    >>> heads = {"geo": torch.tensor([1.0, 0.0, 0.0, 0.0]), "format": torch.tensor([0.0, 1.0, 0.0, 0.0])}
    >>> a, z = decoupled_advantages(heads, {"geo": 1.0, "format": 1.0}, group_size=4, scale="none")
    >>> [round(x, 3) for x in a.tolist()], z.tolist()
    ([1.0, 1.0, -1.0, -1.0], [False])
    """
    used = [k for k, w in weights.items() if w != 0]
    missing = [k for k in used if k not in heads]
    if missing or not used:
        raise ValueError(f"decoupled_advantages needs a score for every weighted head: missing {missing}, weights {dict(weights)}")
    total, zero_spread = None, None
    for key in used:
        a_k, z_k = group_advantages(heads[key], group_size, eps, "group")
        total = float(weights[key]) * a_k if total is None else total + float(weights[key]) * a_k
        zero_spread = z_k if zero_spread is None else zero_spread & z_k
    advantages, _ = group_advantages(total, group_size, eps, scale)
    return advantages, zero_spread
