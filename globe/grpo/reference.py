"""``ReferencePolicy``: pi_ref of the GRPO KL term, built the cheapest correct way.

A LoRA policy's reference is the same model with its adapters disabled (no copy); a fully
fine-tuned policy's is a frozen deep copy taken before the first optimiser step, which
``refresh`` makes equal to the trained weights (``GRPOPolicy`` does so after a warm start). With
``beta == 0`` there is no reference at all.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch

from globe.grpo.logprobs import completion_logprobs
from globe.models.loading import LoraConfigSpec

__all__ = ["ReferencePolicy"]


class ReferencePolicy:
    """The frozen reference policy pi_ref of the KL term, built the cheapest correct way.

    - LoRA policy (a ``peft.PeftModel``): the reference is the same model with its adapters
      disabled (``with model.disable_adapter():``), i.e. the base weights; no copy.
    - Full fine-tuning: a frozen deep copy of the policy taken at construction (build it before
      the first optimiser step). The copy has no gradient and is never given to the optimiser; it
      moves to the inputs' device on first use (or ``.to``). ``GRPOPolicy`` registers it as its
      ``reference_model`` submodule so that a reference refreshed from trained weights (after a
      warm start) is saved in checkpoints and restored exactly on resume.
    - ``beta == 0``: no reference at all (the caller keeps ``None``).
    """

    def __init__(self, policy: torch.nn.Module, frozen_copy: torch.nn.Module | None = None) -> None:
        self.policy = policy
        self.frozen_copy = frozen_copy

    @classmethod
    def create(cls, policy: torch.nn.Module, lora: LoraConfigSpec | None = None) -> ReferencePolicy:
        """The reference for ``policy``: adapters disabled for a LoRA (peft) policy, else a frozen copy.

        Call it only when the KL term is on (beta != 0): with beta = 0 there is no reference.
        """
        if callable(getattr(policy, "disable_adapter", None)):
            return cls(policy)
        if lora is not None:
            raise ValueError("lora is set but the policy has no adapters (not a peft model)")
        frozen = copy.deepcopy(policy).eval()
        frozen.requires_grad_(False)
        return cls(policy, frozen)

    @torch.no_grad()
    def refresh(self) -> None:
        """Make the frozen copy equal the policy's current weights, in place (same structure, so
        FSDP2-sharded copies stay sharded). The adapter-disabled reference needs nothing."""
        if self.frozen_copy is None:
            return
        for ref, cur in zip(self.frozen_copy.parameters(), self.policy.parameters(), strict=True):
            ref.copy_(cur)
        for ref, cur in zip(self.frozen_copy.buffers(), self.policy.buffers(), strict=True):
            ref.copy_(cur)

    @property
    def uses_adapters(self) -> bool:
        """True when the reference is the policy with adapters disabled."""
        return self.frozen_copy is None

    def to(self, device: torch.device | str) -> ReferencePolicy:
        """Move the frozen copy (the adapter-disabled reference follows the policy by itself)."""
        if self.frozen_copy is not None:
            self.frozen_copy.to(device)
        return self

    @torch.no_grad()
    def logprobs(
        self,
        prompt_inputs: Mapping[str, torch.Tensor],
        completion_ids: torch.Tensor,
        completion_mask: torch.Tensor,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """``completion_logprobs`` under the reference, ``[N, C]``, without gradient."""
        if self.frozen_copy is not None:
            device = prompt_inputs["input_ids"].device
            if next(self.frozen_copy.parameters()).device != device:
                self.frozen_copy.to(device)  # follows the policy's inputs (Lightning moves only the policy)
            self.frozen_copy.eval()  # a parent's .train() (Lightning's, at fit start) must not enable dropout here
            return completion_logprobs(self.frozen_copy, prompt_inputs, completion_ids, completion_mask, temperature)
        was_training = self.policy.training
        self.policy.eval()  # the reference is deterministic: no dropout
        try:
            with self.policy.disable_adapter():
                return completion_logprobs(self.policy, prompt_inputs, completion_ids, completion_mask, temperature)
        finally:
            self.policy.train(was_training)
