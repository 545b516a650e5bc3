"""The rollout-engine interface: the policy asks for n completions per (image, prompt) and never
cares which engine (transformers ``generate`` or vLLM) produced them.

Shapes: B prompts, n samples each, P prompt tokens (left-padded), C completion tokens
(right-padded). Row ``b * n + j`` of every completion tensor is sample j of prompt b.

Log-prob convention, shared by every engine and by the trainer: the log-probability of the
sampled token under ``log_softmax(logits / temperature)`` over the full vocabulary (top-k / top-p
only restrict which tokens can be drawn; they do not renormalise the reported log-prob). The
trainer recomputes exactly this quantity, so the two can be compared token by token.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import NamedTuple

import torch
from PIL import Image


@dataclass(frozen=True)
class SamplingConfig:
    """How completions are drawn. Paper (training): temperature 1.0, top_p 0.9, top_k 50, 1024 tokens."""

    temperature: float = 1.0
    top_p: float = 0.9
    top_k: int = 50
    max_new_tokens: int = 1024
    seed: int | None = None


@dataclass
class PromptBatch:
    """B prompts. ``texts`` are chat-templated with ONE un-expanded image placeholder each (what vLLM
    wants); ``inputs`` is the HF processor's output for the same prompts (expanded image tokens,
    left padding): ``input_ids`` [B, P], ``attention_mask`` [B, P], ``pixel_values`` and the model
    family's extra inputs (``globe.models.backbones``: image grids or tile counts, token types)."""

    images: list[Image.Image]
    texts: list[str]
    inputs: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return len(self.texts)


class Completions(NamedTuple):
    """n completions for each of B prompts, as produced by a rollout engine."""

    ids: torch.Tensor  # [B*n, C] long, right-padded with the pad token id
    mask: torch.Tensor  # [B*n, C] long, 1 on generated tokens (EOS included), 0 on padding
    logprobs: torch.Tensor  # [B*n, C] float, the sampler's log-prob of each sampled token, 0 on padding
    truncated: torch.Tensor  # [B*n] bool, True when no EOS came within max_new_tokens
    texts: list[str]  # B*n decoded completions, special tokens removed


class RolloutEngine(ABC):
    """Generates grouped completions and follows the trained weights."""

    @abstractmethod
    def generate(self, prompts: PromptBatch, n: int, sampling: SamplingConfig) -> Completions:
        """Draw ``n`` completions for every prompt."""

    @abstractmethod
    def sync_weights(self, model: torch.nn.Module) -> None:
        """Make the engine sample from ``model``'s current weights (called after optimiser steps)."""

    @property
    def needs_sync(self) -> bool:
        """True when the engine lost its weights (e.g. vLLM's level-2 sleep): sync before sampling."""
        return False

    def sleep(self) -> None:  # noqa: B027 - optional hook
        """Release memory while the trainer runs (engines that hold their own copy)."""

    def wake(self) -> None:  # noqa: B027 - optional hook
        """Re-acquire memory before the next rollout."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free every resource the engine holds."""
