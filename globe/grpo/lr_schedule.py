"""Learning rate over a run made of consecutive phases (e.g. a supervised warm start, then GRPO).

Each :class:`LRPhase` covers ``steps`` optimiser steps and has its own peak. Within a phase, at
local step ``s`` (0-based) with ``W = warmup_steps``, ``D = steps - W`` decay steps and
``min = min_lr_ratio * peak_lr``:

* warm-up, ``s < W``: ``lr = peak * (s + 1) / W`` — linear, the first step is ``peak / W``
  (not 0) and step ``W - 1`` is the peak;
* after it, ``p = (s - W) / (D - 1)`` runs from 0 at step ``W`` to 1 at the phase's last step
  (``p = 1`` when ``D = 1``: the single decay step is already the last one), and
  ``lr = f * peak + (1 - f) * min`` with ``f = (1 + cos(pi p)) / 2`` (``"cosine"``),
  ``f = 1 - p`` (``"linear"``) or ``f = 1`` (``"constant"``). The weighted form gives exactly
  ``peak`` at ``p = 0`` and exactly ``min`` at ``p = 1``; a phase with decay therefore starts its
  decay at the peak (so after a warm-up the peak lasts two steps, ``W - 1`` and ``W``; without
  one the first step is the peak) and ends on ``min`` at its last step. With
  ``warmup_steps == steps`` there are no decay steps and the phase ends at its peak.

Across phases: the global step (0-based, counted over all phases) picks the phase; a phase with
``steps=0`` is skipped, which is how a configuration switches a phase off. Past the end of the
last phase the learning rate holds the final value of the last phase that has steps.

:func:`build_scheduler` wraps this in a ``torch.optim.lr_scheduler.LambdaLR`` whose base learning
rate is 1.0 in every parameter group, so the factor it multiplies is the absolute learning rate
and ``param_groups[i]["lr"] == lr_at(step, phases)`` holds exactly, not up to rounding of a
division and a product. Its state dict holds only numbers (the lambda is a plain function, which
``LambdaLR.state_dict`` leaves out, so a checkpoint loads with ``torch.load(weights_only=True)``);
loading it into a scheduler rebuilt from the same phases resumes the sequence where it stopped.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["LRPhase", "lr_at", "total_steps", "build_scheduler", "PhasedLR"]

_DECAYS = ("cosine", "linear", "constant")


@dataclass(frozen=True)
class LRPhase:
    """One phase of the schedule; see the module docstring for the formulas.

    Args:
        steps: optimiser steps in this phase (0 switches the phase off).
        peak_lr: learning rate at the end of the warm-up (and throughout when ``decay="constant"``).
        warmup_steps: linear warm-up steps at the start of the phase, at most ``steps``.
        decay: shape of the decay after the warm-up.
        min_lr_ratio: the phase's last learning rate as a fraction of ``peak_lr`` (0 to 1);
            only meaningful with a decay.
    """

    steps: int
    peak_lr: float
    warmup_steps: int = 0
    decay: Literal["cosine", "linear", "constant"] = "constant"
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        for name in ("steps", "warmup_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"LRPhase.{name} must be an integer, got {value!r}")
            if value < 0:
                raise ValueError(f"LRPhase.{name} must be >= 0, got {value}")
        if self.warmup_steps > self.steps:
            raise ValueError(f"LRPhase.warmup_steps ({self.warmup_steps}) exceeds the phase's steps ({self.steps})")
        for name in ("peak_lr", "min_lr_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"LRPhase.{name} must be a finite number, got {value!r}")
        if self.peak_lr < 0:
            raise ValueError(f"LRPhase.peak_lr must be >= 0, got {self.peak_lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"LRPhase.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.decay not in _DECAYS:
            raise ValueError(f"LRPhase.decay must be one of {_DECAYS}, got {self.decay!r}")
        if self.decay == "constant" and self.min_lr_ratio != 0.0:
            raise ValueError("LRPhase.min_lr_ratio has no effect with decay='constant'; pick 'cosine' or 'linear'")

    @property
    def min_lr(self) -> float:
        return self.min_lr_ratio * self.peak_lr

    def lr(self, s: int) -> float:
        """Learning rate at local step ``s`` (clamped to the phase's last step)."""
        s = min(s, self.steps - 1)
        w, d = self.warmup_steps, self.steps - self.warmup_steps
        if s < w:
            return self.peak_lr * (s + 1) / w
        if self.decay == "constant":
            return self.peak_lr
        p = 1.0 if d == 1 else (s - w) / (d - 1)
        f = 0.5 * (1.0 + math.cos(math.pi * p)) if self.decay == "cosine" else 1.0 - p
        return f * self.peak_lr + (1.0 - f) * self.min_lr


def _checked(phases: Sequence[LRPhase]) -> Sequence[LRPhase]:
    if isinstance(phases, LRPhase):
        raise ValueError("phases must be a sequence of LRPhase, got a single LRPhase (wrap it in a list)")
    if not phases:
        raise ValueError("the schedule needs at least one LRPhase")
    for i, phase in enumerate(phases):
        if not isinstance(phase, LRPhase):
            raise ValueError(f"phases[{i}] must be an LRPhase, got {type(phase).__name__}")
    if not any(phase.steps for phase in phases):
        raise ValueError("every LRPhase has steps=0: the schedule is empty")
    return phases


def total_steps(phases: Sequence[LRPhase]) -> int:
    """Optimiser steps over all phases."""
    return sum(phase.steps for phase in _checked(phases))


def lr_at(step: int, phases: Sequence[LRPhase]) -> float:
    """Absolute learning rate at global optimiser step ``step`` (0-based); see the module doc.

    A warm-start phase of 4 steps (peak 1e-3, warm-up 4), then 5 GRPO steps at peak 1e-6 with a
    linear decay to 0.2 x peak:

    >>> phases = [LRPhase(4, 1e-3, warmup_steps=4), LRPhase(5, 1e-6, decay="linear", min_lr_ratio=0.2)]
    >>> [lr_at(s, phases) for s in range(4)]
    [0.00025, 0.0005, 0.00075, 0.001]
    >>> [round(lr_at(s, phases), 12) for s in range(4, 10)]
    [1e-06, 8e-07, 6e-07, 4e-07, 2e-07, 2e-07]
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an integer >= 0, got {step!r}")
    last = None
    for phase in _checked(phases):
        if phase.steps == 0:
            continue
        if step < phase.steps:
            return phase.lr(step)
        step -= phase.steps
        last = phase
    return last.lr(last.steps - 1)  # past the end: the last phase's final value


def _signature(phases: Sequence[LRPhase]) -> list[dict]:
    return [asdict(phase) for phase in phases]


class PhasedLR(LambdaLR):
    """``LambdaLR`` over :func:`lr_at` with base learning rate 1.0 (built by :func:`build_scheduler`).

    Loading a state dict also writes ``lr_at(last_epoch)`` into the optimiser's parameter groups,
    so the resumed learning rate is right whether or not the optimiser's own state was loaded
    first. The phases are kept in the state (as plain numbers and strings): loading a state saved
    under different phases warns and continues at the saved step of the new schedule.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, phases: Sequence[LRPhase], last_epoch: int = -1) -> None:
        phases = tuple(_checked(phases))
        self.phases = _signature(phases)
        self._phases = phases  # not in the state dict (LRScheduler.state_dict skips nothing else)

        def lr_lambda(step: int) -> float:  # a plain function: LambdaLR.state_dict leaves it out
            return lr_at(step, phases)

        for group in optimizer.param_groups:
            group["initial_lr"] = 1.0  # the base learning rate LambdaLR multiplies
            if last_epoch == -1:
                group["lr"] = 1.0
        super().__init__(optimizer, lr_lambda, last_epoch=last_epoch)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state.pop("_phases", None)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        saved = state_dict.get("phases")
        state = {k: v for k, v in state_dict.items() if k != "phases"}
        super().load_state_dict(state)
        if saved is not None and saved != self.phases:
            warnings.warn(
                f"the learning-rate schedule changed since this state was saved ({saved} -> {self.phases}); "
                f"continuing at step {self.last_epoch} of the new one",
                stacklevel=2,
            )
        self.base_lrs = [1.0] * len(self.optimizer.param_groups)
        lr = lr_at(max(self.last_epoch, 0), self._phases)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
            group["initial_lr"] = 1.0
        self._last_lr = [lr] * len(self.optimizer.param_groups)


def build_scheduler(optimizer: torch.optim.Optimizer, phases: Sequence[LRPhase]) -> PhasedLR:
    """A ``LambdaLR`` (:class:`PhasedLR`) that sets every group's learning rate to ``lr_at(step)``.

    The optimiser's configured learning rates are replaced (each group's base becomes 1.0); after
    construction the groups hold ``lr_at(0)`` and every ``scheduler.step()`` moves them one step on.
    Step the scheduler once per optimiser step (Lightning: ``interval="step"``).

    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    >>> sched = build_scheduler(opt, [LRPhase(4, 1e-3, warmup_steps=4)])
    >>> lrs = []
    >>> for _ in range(5):
    ...     lrs.append(opt.param_groups[0]["lr"]); opt.step(); sched.step()
    >>> lrs
    [0.00025, 0.0005, 0.00075, 0.001, 0.001]
    """
    return PhasedLR(optimizer, phases)
