"""The GRPO update: ``num_iterations`` optimiser steps over one step's rollout, micro-batched.

    traj = update.trajectory(prompts, completions, advantages, pad_rows)   # masks, sizes on the device
    (old, ref) log-probs, once, micro-batch by micro-batch, without gradient
    for each pass (optim.num_iterations):
        zero the gradients
        for each micro-batch of whole groups (micro_batch_prompts):
            logp = trainer log-probs; IS weights against the sampler (is_cap, not for the HF engine)
            loss = grpo_loss(..., step=StepSize of the WHOLE step); backward
        clip the gradient norm (max_grad_norm); optimiser step (and the LR schedule)
    stats = micro-batches combined per kind (sums, real min / max, token-weighted means),
            then the passes averaged (``globe.grpo.step_stats``)

Every micro-batch is normalised by the sizes of the whole step (``StepSize``: completions, this
rank's tokens, every rank's tokens, ranks, ``max_new_tokens``), so the micro-batch losses add up to
the loss of the step in one piece, whatever ``loss_type``; the token count of every rank is one
all-reduce (``globe.grpo.collectives.global_token_count``), before any forward pass.

Dynamic sampling's padding rows (``pad_rows``) only make up the micro-batch count of the fullest
rank: their loss mask is zeroed and they do not count as completions in the normalisers.

``GRPOUpdate`` holds no state across steps: the LightningModule builds one per step from its model,
reference, optimiser and the callables that step the optimiser (with its LR schedule) and run the
backward pass (Lightning's ``manual_backward``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from globe.grpo.collectives import global_token_count
from globe.grpo.logprobs import completion_logprobs
from globe.grpo.loss import grpo_loss, truncated_is_weights
from globe.grpo.loss_types import StepSize
from globe.grpo.microbatch import group_chunks, slice_prompt_inputs
from globe.grpo.reference import ReferencePolicy
from globe.grpo.settings import LossSettings, OptimSettings
from globe.grpo.step_stats import combine_chunks, combine_passes
from globe.grpo.trajectory import Trajectory
from globe.models.sharding import full_tensor
from globe.rollout.base import Completions, PromptBatch

__all__ = ["GRPOUpdate", "loss_mask", "step_size"]


def loss_mask(completions: Completions, mask_truncated: bool) -> torch.Tensor:
    """``[N, C]``: the completion mask, with the rows of truncated completions zeroed when
    ``mask_truncated`` (they then give no loss and no token to the normalisers).

    >>> c = Completions(torch.zeros(2, 2), torch.ones(2, 2, dtype=torch.long), torch.zeros(2, 2), torch.tensor([True, False]), ["", ""])
    >>> loss_mask(c, True).tolist(), loss_mask(c, False).tolist()
    ([[0, 0], [1, 1]], [[1, 1], [1, 1]])
    """
    if not mask_truncated:
        return completions.mask
    return completions.mask * (~completions.truncated.bool()).unsqueeze(1).to(completions.mask.dtype)


def step_size(mask: torch.Tensor, rows: int | None, max_completion_length: int, world_size: int = 1) -> StepSize:
    """The sizes of one optimiser step that the ``loss_type`` normalisers divide by (``rows``: the
    completions that count when padding rows make up the rest, at least 1; ``None``: every row).
    One all-reduce under several ranks (``global_token_count``)."""
    global_tokens, world = global_token_count(mask, world_size)
    return StepSize(
        rows=mask.shape[0] if rows is None else max(rows, 1), local_tokens=mask.sum().to(torch.float32).clamp(min=1),
        global_tokens=global_tokens, world_size=world, max_completion_length=max_completion_length,
    )


@dataclass
class GRPOUpdate:
    """One step's GRPO update of ``model`` (see the module doc).

    ``optimizer`` is the torch optimiser (or Lightning's wrapper of it); ``optimizer_step`` steps it
    and the LR schedule; ``backward`` runs the backward pass of a loss. ``loss`` and ``optim`` are
    the policy's settings (``globe.grpo.settings``).
    """

    model: torch.nn.Module
    reference: ReferencePolicy | None
    optimizer: Any
    optimizer_step: Callable[[Any], None]
    backward: Callable[[torch.Tensor], None]
    group_size: int
    temperature: float  # the training sampling's: log-probs of log_softmax(logits / T)
    max_completion_length: int  # max_new_tokens, Dr. GRPO's constant
    loss: LossSettings = LossSettings()
    optim: OptimSettings = OptimSettings()
    correct_sampler: bool = True  # truncated IS against the sampler's log-probs (loss.is_cap); off for the HF engine
    world_size: int = 1
    device: torch.device | str = "cpu"

    def trajectory(
        self, prompts: PromptBatch, completions: Completions, advantages: torch.Tensor, pad_rows: torch.Tensor | None = None
    ) -> Trajectory:
        """The rollout on the device with its loss mask (truncated and padding rows zeroed)."""
        mask = loss_mask(completions, self.loss.mask_truncated_completions).to(self.device)  # [N, C]
        counted = None  # completions in the normalisers: all rows, or those that are not padding
        if pad_rows is not None:
            mask = mask * (~pad_rows.to(self.device)).unsqueeze(1).to(mask.dtype)
            counted = int((~pad_rows).sum())
        return Trajectory(
            prompts=prompts, ids=completions.ids.to(self.device), mask=completions.mask.to(self.device), loss_mask=mask,
            sampler_logp=completions.logprobs.to(self.device), advantages=advantages.to(self.device), counted_rows=counted,
        )

    def chunks(self, traj: Trajectory) -> list[tuple[int, int]]:
        """``[(first prompt, end prompt), ...]``: the micro-batches, whole groups each."""
        return group_chunks(len(traj.prompts), self.optim.micro_batch_prompts)

    @torch.no_grad()
    def fixed_logprobs(self, traj: Trajectory, chunks: list[tuple[int, int]]) -> None:
        """Fill ``traj.old_logp`` (``optim.num_iterations > 1``) and ``traj.ref_logp`` (a reference is set):
        the log-probs that stay fixed over the passes, micro-batch by micro-batch."""
        n = self.group_size
        old, ref = [], []
        for s, e in chunks:
            rows = slice(s * n, e * n)
            inputs = slice_prompt_inputs(traj.prompts.inputs, s, e)
            if self.optim.num_iterations > 1:
                old.append(completion_logprobs(self.model, inputs, traj.ids[rows], traj.mask[rows], self.temperature))
            if self.reference is not None:
                ref.append(self.reference.logprobs(inputs, traj.ids[rows], traj.mask[rows], self.temperature))
        traj.old_logp = torch.cat(old) if old else None
        traj.ref_logp = torch.cat(ref) if ref else None

    def optimize(
        self, prompts: PromptBatch, completions: Completions, advantages: torch.Tensor, pad_rows: torch.Tensor | None = None
    ) -> dict[str, float]:
        """``optim.num_iterations`` optimiser steps over the rollout; the step's statistics and ``lr``."""
        loss_settings, optim = self.loss, self.optim
        is_cap = loss_settings.is_cap if self.correct_sampler else None
        lr = self.optimizer.param_groups[0]["lr"]
        n = self.group_size
        traj = self.trajectory(prompts, completions, advantages, pad_rows)
        chunks = self.chunks(traj)
        step = step_size(traj.loss_mask, traj.counted_rows, self.max_completion_length, self.world_size)
        self.fixed_logprobs(traj, chunks)

        passes: list[dict[str, float]] = []
        for _ in range(optim.num_iterations):
            self.optimizer.zero_grad()
            chunk_stats = []
            for s, e in chunks:
                rows = slice(s * n, e * n)
                inputs = slice_prompt_inputs(traj.prompts.inputs, s, e)
                logp = completion_logprobs(self.model, inputs, traj.ids[rows], traj.mask[rows], self.temperature)
                old = traj.old_logp[rows] if traj.old_logp is not None else logp.detach()
                is_weights, is_stats = None, {}
                if is_cap is not None:
                    is_weights, is_stats = truncated_is_weights(old, traj.sampler_logp[rows], traj.loss_mask[rows], cap=is_cap)
                loss, stats = grpo_loss(
                    logp, old, traj.ref_logp[rows] if traj.ref_logp is not None else None, traj.advantages[rows],
                    traj.loss_mask[rows], beta=loss_settings.beta, eps_low=loss_settings.epsilon,
                    eps_high=loss_settings.epsilon_high, is_weights=is_weights, loss_type=loss_settings.loss_type, step=step,
                )
                self.backward(loss)
                chunk_stats.append(({**stats, **is_stats, "loss": loss.detach()}, float(traj.loss_mask[rows].sum()), float(e - s) * n))
            step_stats = combine_chunks(chunk_stats, token_mean=True)  # every loss_type's chunk losses are partial sums
            if optim.max_grad_norm:
                norm = torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], optim.max_grad_norm)
                step_stats["grad_norm"] = float(full_tensor(norm))
            self.optimizer_step(self.optimizer)
            passes.append(step_stats)
        out = combine_passes(passes)
        out["lr"] = lr
        return out

    def step_without_gradient(self) -> dict[str, float]:
        """``optim.num_iterations`` optimiser steps with every gradient ``None``: AdamW skips every parameter
        (no update, no moment decay, no weight decay); the LR schedule and ``global_step`` advance as
        after any step, so every rank keeps counting the same steps."""
        lr = self.optimizer.param_groups[0]["lr"]
        for _ in range(self.optim.num_iterations):
            self.optimizer.zero_grad(set_to_none=True)
            self.optimizer_step(self.optimizer)
        return {"loss": 0.0, "lr": lr}
