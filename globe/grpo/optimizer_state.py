"""Starting a training phase with fresh optimiser moments.

``reset_optimizer_state`` empties the per-parameter state of a ``torch.optim`` optimiser (for
AdamW: ``step``, ``exp_avg``, ``exp_avg_sq``). The optimiser re-creates it lazily at its next
``step``, so the next update is exactly the first update of a new AdamW (bias correction from step
1), while the parameter groups (learning rate, betas, weight decay) stay as they are.

Why at the switch from a supervised warm start to GRPO: AdamW divides by the running root mean
square of past gradients (beta2 = 0.999, a memory of about 1000 steps). The warm start's
cross-entropy gradients are several times larger than the policy gradient, so kept moments shrink
the first GRPO updates far below the configured learning rate. An RL run started from a
supervised checkpoint (the usual pipeline, and the paper's) begins with fresh moments.
"""

from __future__ import annotations

import torch

__all__ = ["reset_optimizer_state"]


def reset_optimizer_state(optimizer) -> int:
    """Drop every parameter's optimiser state; returns how many parameters had state.

    Accepts a ``torch.optim.Optimizer`` or a wrapper exposing it as ``.optimizer`` (Lightning's
    ``LightningOptimizer``).
    """
    inner = getattr(optimizer, "optimizer", optimizer)
    if not isinstance(inner, torch.optim.Optimizer):
        raise TypeError(f"expected a torch optimizer, got {type(inner).__name__}")
    n = len(inner.state)
    inner.state.clear()
    return n
