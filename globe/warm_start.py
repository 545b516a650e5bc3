"""The supervised warm start: the training steps before GRPO, and the switch to GRPO.

Not in the paper (GLOBE has no SFT cold start). The demo needs it: a tiny random model cannot
produce the answer format by chance, so every reward would be 0 and GRPO would have no signal.

    step < steps:   teacher-forced NLL of each sample's reference reasoning (``reasoning``, the
                    GeoSynth / MP16-Reason chain ending in the answer), closed by the family's
                    end-of-turn token; token mean over the batch; one optimiser step
    step == steps:  GRPO starts (``start_grpo``): the frozen reference copy of the KL term becomes
                    the warm-started model (not the random initialisation; under LoRA the reference
                    is the base model with adapters disabled and needs nothing), and, when asked,
                    the optimiser forgets the warm start's AdamW moments (``reset_optimizer_state``)

The warm start has its own LR phase (``GRPOPolicy.lr_phases``, ``globe.grpo.lr_schedule``); the
gradient clipping is the GRPO phase's ``optim.max_grad_norm``; the settings are ``warm_start``
(``globe.grpo.settings.WarmStartSettings``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from globe.grpo.logprobs import completion_logprobs
from globe.grpo.optimizer_state import reset_optimizer_state
from globe.grpo.reference import ReferencePolicy

__all__ = ["in_warm_start", "starts_grpo", "target_tokens", "nll_step", "start_grpo"]


def in_warm_start(step: int, warm_start_steps: int) -> bool:
    """True for the supervised steps.

    >>> [in_warm_start(s, 2) for s in range(4)], in_warm_start(0, 0)
    ([True, True, False, False], False)
    """
    return step < warm_start_steps


def starts_grpo(step: int, warm_start_steps: int) -> bool:
    """True at the first GRPO step after a warm start (never without one).

    >>> [starts_grpo(s, 2) for s in range(4)], starts_grpo(0, 0)
    ([False, False, True, False], False)
    """
    return step == warm_start_steps > 0


def target_tokens(tokenizer, targets: Sequence[str], end_of_turn_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids [B, T], mask [B, T])``: each target's tokens, then ``end_of_turn_id`` (the target ends
    the assistant turn), right-padded with the pad token."""
    encoded = [tokenizer(t, add_special_tokens=False).input_ids + [end_of_turn_id] for t in targets]
    width = max(len(e) for e in encoded)
    ids = torch.full((len(encoded), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, e in enumerate(encoded):
        ids[i, : len(e)] = torch.tensor(e)
        mask[i, : len(e)] = 1
    return ids, mask


def nll_step(
    model: torch.nn.Module,
    prompt_inputs: Mapping[str, torch.Tensor],
    ids: torch.Tensor,
    mask: torch.Tensor,
    optimizer: Any,
    optimizer_step: Callable[[Any], None],
    backward: Callable[[torch.Tensor], None],
    max_grad_norm: float | None,
) -> torch.Tensor:
    """One optimiser step on the teacher-forced NLL of ``ids`` after the prompts (token mean);
    returns the loss (detached)."""
    logp = completion_logprobs(model, prompt_inputs, ids, mask, 1.0)  # [B, T]
    loss = -(logp * mask).sum() / mask.sum()
    optimizer.zero_grad()
    backward(loss)
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_grad_norm)
    optimizer_step(optimizer)
    return loss.detach()


def start_grpo(reference: ReferencePolicy | None, optimizer: Any, reset_optimizer: bool) -> None:
    """The switch from the warm start to GRPO (see the module doc)."""
    if reference is not None:
        reference.refresh()
    if reset_optimizer:
        reset_optimizer_state(optimizer)
