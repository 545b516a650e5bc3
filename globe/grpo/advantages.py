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
- ``scale="none"`` drops the division by the standard deviation (Dr. GRPO, Liu et al. 2025), which
  removes the question-difficulty bias of std normalisation.
"""

from __future__ import annotations

from typing import Literal

import torch

AdvantageScale = Literal["std", "none"]


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
        scale: ``"std"`` (GRPO) divides by ``std + eps``; ``"none"`` (Dr. GRPO) only centres.

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
    if scale not in ("std", "none"):
        raise ValueError(f"scale must be 'std' or 'none', got {scale!r}")
    grouped = rewards.float().view(-1, group_size)  # [B, G]
    mean = grouped.mean(dim=1, keepdim=True)  # [B, 1]
    zero_spread = (grouped.amax(dim=1) == grouped.amin(dim=1))  # [B]
    centred = grouped - mean  # [B, G]
    if scale == "std" and group_size > 1:
        std = grouped.std(dim=1, keepdim=True)  # [B, 1], unbiased (divisor G - 1)
        centred = centred / (std + eps)
    advantages = centred.masked_fill(zero_spread.unsqueeze(1), 0.0)  # [B, G]
    return advantages.reshape(-1), zero_spread
