"""The policy's grouped settings: what the loss is, how it is optimised, the warm start, dynamic sampling.

Each group is one ``GRPOPolicy`` argument and one YAML mapping (``model.init_args.<group>``):

    loss:             {beta: 0.0, epsilon: 0.2, epsilon_high: 0.28, loss_type: dapo}
    optim:            {learning_rate: 2.0e-4, warmup_steps: 5}
    warm_start:       {steps: 300, lr: 2.0e-3, warmup_steps: 10, decay: cosine}
    dynamic_sampling: {enabled: true, max_tries: 3}

and one command-line prefix (``--model.init_args.optim.learning_rate=1e-5``). Keys left out keep
their defaults (the paper's where it has one). Values are checked when a group is built, with the
name of the setting in the error. ``as_settings`` accepts an instance or a plain mapping (what a
Python caller or a stored checkpoint gives); the policy keeps plain dicts in its hyper-parameters
(``dataclasses.asdict``), so a checkpoint loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, TypeVar

from globe.grpo.loss_types import LOSS_TYPES, LossType, ScaleRewards, default_scale_rewards

__all__ = ["LossSettings", "OptimSettings", "WarmStartSettings", "DynamicSamplingSettings", "as_settings"]

Decay = Literal["constant", "cosine", "linear"]
DECAYS = ("constant", "cosine", "linear")
REWARD_AGGREGATIONS = ("sum_then_normalize", "normalize_then_sum")

T = TypeVar("T")


def as_settings(cls: type[T], value: T | Mapping[str, Any] | None) -> T:
    """``value`` as a ``cls`` instance: itself, or built from a mapping (``None``: the defaults).

    >>> as_settings(OptimSettings, {"learning_rate": 1e-5}).learning_rate
    1e-05
    >>> as_settings(OptimSettings, {"lr": 1e-5})
    Traceback (most recent call last):
    ...
    ValueError: OptimSettings has no setting 'lr' (settings: learning_rate, weight_decay, warmup_steps, lr_decay, min_lr_ratio, max_grad_norm, num_iterations, micro_batch_prompts)
    """
    if isinstance(value, cls):
        return value
    if value is None:
        return cls()
    if not isinstance(value, Mapping):
        raise TypeError(f"{cls.__name__} expects a mapping of its settings, got {type(value).__name__}")
    names = [f.name for f in fields(cls)]
    unknown = [k for k in value if k not in names]
    if unknown:
        raise ValueError(f"{cls.__name__} has no setting {unknown[0]!r} (settings: {', '.join(names)})")
    return cls(**value)


def _check_number(owner: str, name: str, value: Any, minimum: float, *, strict: bool = False, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{owner}.{name} must be a finite number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise ValueError(f"{owner}.{name} must be {'>' if strict else '>='} {minimum:g}, got {value!r}")


def _check_int(owner: str, name: str, value: Any, minimum: int, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{owner}.{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{owner}.{name} must be >= {minimum}, got {value}")


def _check_choice(owner: str, name: str, value: Any, choices: tuple[str, ...], *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value not in choices:
        raise ValueError(f"{owner}.{name} must be one of {', '.join(choices)}; got {value!r}")


@dataclass(frozen=True)
class LossSettings:
    """The GRPO objective (``globe.grpo.loss``, ``globe.grpo.loss_types``, ``globe.grpo.advantages``)."""

    beta: float = 0.001
    """KL coefficient (paper 0.001); 0 disables the reference policy."""
    epsilon: float = 0.2
    """Lower clip range of the ratio (paper 0.2)."""
    epsilon_high: float | None = None
    """Upper clip range (DAPO's clip-higher, e.g. 0.28); ``None``: ``epsilon`` (symmetric)."""
    loss_type: LossType = "dapo"
    """The normaliser of the per-token losses: ``dapo`` (token mean over the whole global step),
    ``grpo`` (paper: mean over completions of each one's token mean), ``dr_grpo`` (token sum /
    (completions x max_new_tokens)), ``bnpo`` (token mean over this rank's step), ``gspo``
    (sequence-level ratio, sequence mean; set ``epsilon`` 3e-4 / ``epsilon_high`` 4e-4)."""
    scale_rewards: ScaleRewards | None = None
    """Advantage scaling (TRL's names): ``group`` std, ``batch`` std, ``none``; ``None``: ``none``
    for ``dr_grpo``, else ``group`` (``effective_scale_rewards``)."""
    reward_aggregation: Literal["sum_then_normalize", "normalize_then_sum"] = "sum_then_normalize"
    """``sum_then_normalize`` (paper: normalise the weighted sum of the heads) or
    ``normalize_then_sum`` (GDPO: each head normalised in its group, then the weighted sum scaled)."""
    mask_truncated_completions: bool = False
    """Completions without EOS within ``max_new_tokens`` get no loss (still scored and logged)."""
    is_cap: float | None = 2.0
    """Truncation of the importance-sampling weights against the sampler's log-probs (engines other
    than ``hf``); ``None`` disables the correction."""

    def __post_init__(self) -> None:
        owner = "loss"
        _check_number(owner, "beta", self.beta, 0.0)
        _check_number(owner, "epsilon", self.epsilon, 0.0, strict=True)
        _check_number(owner, "epsilon_high", self.epsilon_high, 0.0, strict=True, optional=True)
        _check_choice(owner, "loss_type", self.loss_type, LOSS_TYPES)
        _check_choice(owner, "scale_rewards", self.scale_rewards, ("group", "batch", "none"), optional=True)
        _check_choice(owner, "reward_aggregation", self.reward_aggregation, REWARD_AGGREGATIONS)
        _check_number(owner, "is_cap", self.is_cap, 0.0, strict=True, optional=True)

    @property
    def effective_scale_rewards(self) -> ScaleRewards:
        """``scale_rewards``, or the loss type's default when unset.

        >>> LossSettings().effective_scale_rewards, LossSettings(loss_type="dr_grpo").effective_scale_rewards
        ('group', 'none')
        """
        return self.scale_rewards or default_scale_rewards(self.loss_type)


@dataclass(frozen=True)
class OptimSettings:
    """AdamW and the GRPO phase's LR schedule (``globe.grpo.lr_schedule``), the passes and micro-batches."""

    learning_rate: float = 1e-6
    """Peak learning rate of the GRPO phase (paper 1e-6)."""
    weight_decay: float = 0.0
    """AdamW's decoupled weight decay."""
    warmup_steps: int = 0
    """Linear warm-up steps at the start of the GRPO phase."""
    lr_decay: Decay = "constant"
    """After the warm-up: ``constant`` (paper), ``cosine`` or ``linear`` decay to
    ``min_lr_ratio x learning_rate`` at ``trainer.max_steps``."""
    min_lr_ratio: float = 0.0
    """Where the decay ends, as a fraction of the peak (the warm start's decay too)."""
    max_grad_norm: float | None = 1.0
    """Gradient-norm clipping (the warm start's too); ``None`` or 0: no clipping."""
    num_iterations: int = 1
    """Optimisation passes per rollout batch (mu); > 1 clips against the rollout's log-probs."""
    micro_batch_prompts: int | None = None
    """Prompts (whole groups) per forward / backward pass; ``None``: all at once."""

    def __post_init__(self) -> None:
        owner = "optim"
        _check_number(owner, "learning_rate", self.learning_rate, 0.0)
        _check_number(owner, "weight_decay", self.weight_decay, 0.0)
        _check_int(owner, "warmup_steps", self.warmup_steps, 0)
        _check_choice(owner, "lr_decay", self.lr_decay, DECAYS)
        _check_number(owner, "min_lr_ratio", self.min_lr_ratio, 0.0)
        if self.min_lr_ratio > 1:
            raise ValueError(f"optim.min_lr_ratio must be <= 1, got {self.min_lr_ratio!r}")
        _check_number(owner, "max_grad_norm", self.max_grad_norm, 0.0, optional=True)
        _check_int(owner, "num_iterations", self.num_iterations, 1)
        _check_int(owner, "micro_batch_prompts", self.micro_batch_prompts, 1, optional=True)


@dataclass(frozen=True)
class WarmStartSettings:
    """Supervised steps before GRPO (not in the paper; the demo's, ``globe.warm_start``)."""

    steps: int = 0
    """Teacher-forced steps on the samples' reference reasoning before GRPO; 0: none (the paper)."""
    lr: float | None = None
    """Peak learning rate of the warm start; ``None``: ``optim.learning_rate``."""
    warmup_steps: int = 0
    """Linear warm-up steps of the warm start's schedule."""
    decay: Decay = "constant"
    """The warm start's decay after its warm-up (to ``optim.min_lr_ratio`` of its peak)."""
    reset_optimizer: bool = False
    """Start GRPO with fresh AdamW moments, as an RL run started from a supervised checkpoint
    does; off, the warm start's moments carry over and damp the first GRPO updates."""

    def __post_init__(self) -> None:
        owner = "warm_start"
        _check_int(owner, "steps", self.steps, 0)
        _check_number(owner, "lr", self.lr, 0.0, strict=True, optional=True)
        _check_int(owner, "warmup_steps", self.warmup_steps, 0)
        _check_choice(owner, "decay", self.decay, DECAYS)


@dataclass(frozen=True)
class DynamicSamplingSettings:
    """DAPO's dynamic sampling (``globe.grpo.dynamic_sampling``, ``globe.grpo.dynamic_step``)."""

    enabled: bool = False
    """Drop the groups of equal rewards and refill the step with groups of further training batches."""
    max_tries: int = 3
    """Extra training batches a step may draw at most; then it goes ahead with what it has (and warns)."""
    min_std: float = 0.0
    """A kept group also needs an unbiased reward std of at least this; 0: any spread."""

    def __post_init__(self) -> None:
        owner = "dynamic_sampling"
        _check_int(owner, "max_tries", self.max_tries, 0)
        _check_number(owner, "min_std", self.min_std, 0.0)
