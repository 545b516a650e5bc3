"""The reward-head interface shared by every GRPO reward.

A reward head is a ``LightningModule`` so the policy can hold it as a (frozen, eval-mode)
submodule that follows the policy to its device, and so the CLI can pick and configure heads
with ``class_path`` / ``init_args``. Every head maps a :class:`RewardBatch` of N completions to
a float tensor of shape [N] with values in [0, 1]. Heads never raise on a malformed completion
(``None``, empty, garbage, truncated tags): such a completion simply scores what its content
earns under the head's rule, which is 0 for anything without usable content.

Text-only heads (format, accuracy, visual grounding) subclass :class:`CompletionRewardHead`
and implement ``score_one(completion, sample) -> float``; model-based heads (localizability)
implement ``score`` directly and batch their forward passes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from lightning.pytorch import LightningModule
from PIL import Image

from globe.sample import GeoSample

__all__ = ["RewardBatch", "RewardHead", "CompletionRewardHead", "as_text", "reasoning_of"]


def as_text(completion: Any) -> str:
    """A completion as a string: ``None`` and non-strings (a failed decode) become ``""``.

    >>> as_text(None), as_text(3), as_text("ok")
    ('', '', 'ok')
    """
    return completion if isinstance(completion, str) else ""


_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ANSWER_BLOCK = re.compile(r"<answer>.*?(?:</answer>|$)", re.DOTALL)
_TAG = re.compile(r"</?(?:think|answer)>")


def reasoning_of(completion: Any) -> str:
    """The reasoning part of a completion: the text inside the first ``<think>...</think>``;
    without a closed think block (no tags, or truncated ``<think>...``) the whole completion
    minus any ``<answer>`` block and stray tags. The paper's code uses
    ``content.split("</think>")[0]``, which keeps the answer text when there is no ``</think>``.

    >>> reasoning_of("<think>palm trees</think><answer>country: X</answer>")
    'palm trees'
    >>> reasoning_of("<think>a truncated chain about snow")
    'a truncated chain about snow'
    >>> reasoning_of("no tags at all <answer>country: Peru")
    'no tags at all'
    >>> reasoning_of(None)
    ''
    """
    text = as_text(completion)
    found = _THINK.search(text)
    if found:
        return found.group(1).strip()
    return _TAG.sub(" ", _ANSWER_BLOCK.sub(" ", text)).strip()


@dataclass
class RewardBatch:
    """N completions to score, with what each one was generated from.

    Attributes:
        images: the input image of each completion (a group's image repeated, same object).
        prompts: the prompt text of each completion.
        completions: generated text; ``None`` is allowed (a failed decode) and scores 0.
        samples: ground-truth metadata of each completion (repeated per group like images).
    """

    images: list[Image.Image]
    prompts: list[str]
    completions: list[str | None]
    samples: list[GeoSample]

    def __post_init__(self) -> None:
        n = len(self.completions)
        for field_name in ("images", "prompts", "samples"):
            if len(getattr(self, field_name)) != n:
                raise ValueError(
                    f"RewardBatch: {field_name} has {len(getattr(self, field_name))} entries, "
                    f"completions has {n}; every field needs one entry per completion"
                )

    def __len__(self) -> int:
        return len(self.completions)

    @classmethod
    def from_groups(
        cls,
        samples: Sequence[GeoSample],
        completions: Sequence[str | None],
        prompts: Sequence[str] | str = "",
    ) -> "RewardBatch":
        """Repeat B samples (and their images, prompts) over B x G completions, group-major:
        completion ``b * G + j`` belongs to sample ``b`` (the rollout engines' row order)."""
        b = len(samples)
        if b == 0 or len(completions) % b:
            raise ValueError(f"{len(completions)} completions cannot be split into groups of {b} samples")
        g = len(completions) // b
        prompt_list = [prompts] * b if isinstance(prompts, str) else list(prompts)
        rep = [i for i in range(b) for _ in range(g)]
        return cls(
            images=[samples[i].image for i in rep],
            prompts=[prompt_list[i] for i in rep],
            completions=list(completions),
            samples=[samples[i] for i in rep],
        )


class RewardHead(LightningModule):
    """Base class of every reward: ``score(batch) -> Tensor[N]`` in [0, 1].

    Args:
        name: key of this head in the score dict, the combination weights and the logs
            (defaults to the class attribute ``name``).
    """

    name: str = "reward"

    def __init__(self, name: str | None = None) -> None:
        super().__init__()
        if name is not None:
            self.name = name

    def score(self, batch: RewardBatch) -> torch.Tensor:  # [N] float32 in [0, 1]
        raise NotImplementedError

    def forward(self, batch: RewardBatch) -> torch.Tensor:
        return self.score(batch)

    def shard(self, mesh, mp_policy=None) -> None:
        """Place this frozen head on the policy's FSDP2 ``mesh`` (called by ``GRPOPolicy`` under
        ``ModelParallelStrategy``, as for its reference). Heads without a model do nothing."""

    def _as_scores(self, values: Sequence[float]) -> torch.Tensor:
        """Float32 scores on this head's device; NaN -> 0, clamped to [0, 1]."""
        out = torch.tensor([0.0 if math.isnan(v) else float(v) for v in values], dtype=torch.float32)
        return out.clamp_(0.0, 1.0).to(self.device)


class CompletionRewardHead(RewardHead):
    """A head that scores each completion on its own from its text and sample (no model)."""

    def score_one(self, completion: str, sample: GeoSample) -> float:
        raise NotImplementedError

    @torch.no_grad()
    def score(self, batch: RewardBatch) -> torch.Tensor:  # [N]
        return self._as_scores([self.score_one(as_text(c), s) for c, s in zip(batch.completions, batch.samples)])
