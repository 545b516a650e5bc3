"""What one GRPO step carries from the rollout to the update, as typed records with shapes.

B prompts, G completions each, C completion tokens (right-padded). Row ``b * G + j`` of every
per-completion tensor is completion j of prompt b, so group b is rows ``b*G : (b+1)*G``.

    Rollout     one batch rolled out and scored         (policy.rollout + policy.score)
    TrainBatch  what one step optimises on              (the rollout, or dynamic sampling's kept groups)
    Trajectory  the TrainBatch as the update sees it:   (globe.grpo.update)
                masks, sampler / old / reference log-probs on the training device

``Completions`` (``globe.rollout.base``) is the engine's output: ids, mask, sampler log-probs,
truncation flags and texts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from globe.rollout.base import Completions, PromptBatch
from globe.sample import GeoSample

__all__ = ["Rewards", "Rollout", "TrainBatch", "Trajectory"]


@dataclass
class Rewards:
    """Per-head scores and their weighted sum, one value per completion."""

    heads: dict[str, torch.Tensor]  # head name -> [B*G]
    total: torch.Tensor  # [B*G], the weighted sum of the heads


@dataclass
class Rollout:
    """One batch rolled out and scored: B prompts, G completions each."""

    batch: list[GeoSample]  # B samples
    prompts: PromptBatch  # B prompts
    completions: Completions  # ids / mask / logprobs [B*G, C], truncated [B*G]
    rewards: Rewards
    zero_spread: torch.Tensor  # [B] bool, every reward of the group equal (advantage 0)


@dataclass
class TrainBatch:
    """What one step optimises on: the rollout, or (dynamic sampling) its kept and padding groups."""

    prompts: PromptBatch  # K prompts
    completions: Completions  # [K*G, C]
    advantages: torch.Tensor  # [K*G]
    pad_rows: torch.Tensor | None = None  # [K*G] bool, padding rows: no loss, no size in the normalisers


@dataclass
class Trajectory:
    """One step's rollout on the training device, as the update step optimises on it.

    ``old_logp`` and ``ref_logp`` are computed once before the passes (``num_iterations``) and stay
    fixed over them; ``old_logp`` is ``None`` with one pass, where the ratio's denominator is the
    detached current log-prob (ratio exactly 1)."""

    prompts: PromptBatch  # N / G prompts (inputs on the device)
    ids: torch.Tensor  # [N, C] long, completion token ids
    mask: torch.Tensor  # [N, C] long, 1 on generated tokens (EOS included)
    loss_mask: torch.Tensor  # [N, C], ``mask`` without truncated (if masked) and padding rows
    sampler_logp: torch.Tensor  # [N, C], the rollout engine's log-prob of each sampled token
    advantages: torch.Tensor  # [N]
    counted_rows: int | None = None  # completions in the normalisers; None: all N (no padding rows)
    old_logp: torch.Tensor | None = None  # [N, C], the rollout-time policy (num_iterations > 1)
    ref_logp: torch.Tensor | None = None  # [N, C], the reference policy (beta != 0)

    def __len__(self) -> int:
        return self.ids.shape[0]
