"""GRPO objectives by name (``loss_type``): how the per-token losses of a step become one scalar.

Every variant shares the per-token term ``L_it`` of ``globe.grpo.loss`` (clipped surrogate, plus
``beta`` times the k3 KL). They differ in the normaliser, i.e. in how much each token weighs, and
GSPO also in its importance ratio. With ``m_it`` the completion mask, ``|o_i| = sum_t m_it``, ``N``
the completions of this rank's step, ``T`` the completion tokens of this rank's step, ``T_all``
those of every rank and ``W`` the data-parallel ranks (whose gradients are averaged):

=========  =====================================================  ==========================================
loss_type  loss of one rank (the gradient is averaged over ranks)  paper
=========  =====================================================  ==========================================
grpo       ``(1/N) sum_i (1/|o_i|) sum_t L_it m_it``              Shao et al. 2024 (DeepSeekMath), eq. 3
dr_grpo    ``sum_it L_it m_it / (N * L_max)``                     Liu et al. 2025 (Dr. GRPO)
dapo       ``sum_it L_it m_it * W / T_all``                       Yu et al. 2025 (DAPO), token-level loss
bnpo       ``sum_it L_it m_it / T``                               TRL's ``bnpo`` (batch-normalised tokens)
gspo       as ``grpo``, with the sequence-level ratio ``s_i``     Zheng et al. 2025 (GSPO)
=========  =====================================================  ==========================================

``L_max`` is the maximum completion length (``max_new_tokens``), a constant, so Dr. GRPO's loss does
not depend on how long the completions happen to be. Dr. GRPO also drops the division of the
advantages by the group standard deviation (``default_scale_rewards``).

dapo against bnpo: averaged over the W ranks, ``dapo`` is the token mean of the whole global step,
``sum_all / T_all``; ``bnpo`` is the mean over ranks of each rank's own token mean, so a token of a
rank with few tokens weighs more. They agree on one rank, or when every rank has the same token
count. Micro-batches (``micro_batch_prompts``) change neither: every chunk is divided by the sizes of
its rank's whole step (``StepSize``), so the chunk losses add up to the step's loss. (TRL's ``bnpo``
divides by the tokens of each ``per_device_train_batch_size`` micro-batch, so there it also varies
with gradient accumulation; here the "local batch" is the rank's whole rollout batch.)

``grpo_loss``'s older ``aggregation="token_mean"`` is ``dapo`` (bit for bit); ``"sequence_mean"``
is ``grpo``. Where several ranks hold the same number of completions, averaging ``grpo`` /
``dr_grpo`` over ranks gives the global sequence mean / global constant.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch

__all__ = ["LossType", "LOSS_TYPES", "ScaleRewards", "StepSize", "normalise", "default_scale_rewards"]

LossType = Literal["grpo", "dr_grpo", "dapo", "bnpo", "gspo"]
LOSS_TYPES: tuple[str, ...] = ("grpo", "dr_grpo", "dapo", "bnpo", "gspo")
ScaleRewards = Literal["group", "batch", "none"]


class StepSize(NamedTuple):
    """The sizes of one whole optimiser step that the normalisers divide by.

    A micro-batch is normalised by the sizes of the step it belongs to, not by its own, so the
    micro-batch losses add up to the loss of the step in one piece.
    """

    rows: int  # N: completions of this rank's step
    local_tokens: torch.Tensor | float  # T: completion tokens of this rank's step (>= 1)
    global_tokens: torch.Tensor | float  # T_all: completion tokens of every rank's step (>= 1)
    world_size: float  # W: ranks whose gradients are averaged
    max_completion_length: int  # L_max: Dr. GRPO's constant

    @classmethod
    def of(cls, mask: torch.Tensor, max_completion_length: int | None = None) -> "StepSize":
        """One rank, the whole step in one piece; ``L_max`` defaults to the mask's width."""
        tokens = mask.sum().to(torch.float32).clamp(min=1)
        width = mask.shape[1] if max_completion_length is None else max_completion_length
        return cls(rows=mask.shape[0], local_tokens=tokens, global_tokens=tokens, world_size=1.0, max_completion_length=width)


def normalise(per_token: torch.Tensor, mask: torch.Tensor, loss_type: LossType, step: StepSize) -> torch.Tensor:
    """``[N, C]`` per-token losses of (a micro-batch of) a step -> this chunk's share of the loss.

    See the module table for each normaliser. Padding (``mask`` 0) never counts.

    >>> x, m = torch.tensor([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]]), torch.tensor([[1, 1, 1], [1, 0, 0]])
    >>> s = StepSize.of(m)  # N 2, T 4, L_max 3
    >>> [round(normalise(x, m, t, s).item(), 4) for t in ("grpo", "dr_grpo", "dapo", "bnpo")]
    [3.0, 1.6667, 2.5, 2.5]
    """
    mask = mask.to(per_token.dtype)
    masked = per_token * mask  # [N, C]
    if loss_type in ("grpo", "gspo"):
        per_sequence = masked.sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # [N]
        return per_sequence.sum() / step.rows
    if loss_type == "dr_grpo":
        return masked.sum() / (step.rows * step.max_completion_length)
    if loss_type == "dapo":  # the order of today's token mean (sum / T_all, then * W): bit for bit
        return masked.sum() / step.global_tokens * step.world_size
    if loss_type == "bnpo":
        return masked.sum() / step.local_tokens
    raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")


def default_scale_rewards(loss_type: str) -> ScaleRewards:
    """Dr. GRPO drops the standard-deviation scaling of the advantages; the others keep the group's.

    >>> default_scale_rewards("dapo"), default_scale_rewards("dr_grpo")
    ('group', 'none')
    """
    return "none" if loss_type == "dr_grpo" else "group"
