"""Stop ``fit`` after a budget of training batches, whatever the number of optimiser steps.

``trainer.max_steps`` bounds optimiser steps. A step under dynamic sampling
(``globe.grpo.dynamic_sampling``) may roll out several training batches: the run's cost, and the
data it learns from, grow with the batches consumed, not with the steps. Comparing objectives "on
the same sample budget" therefore needs a bound on batches. ``DataBudget(max_batches=N)`` counts
every batch a training step takes from the training loader, Lightning's own batch and the extra
ones a step draws (``globe.train_batches`` counts them in the epoch's ``batch_progress``; the
difference of ``batch_progress.current.processed`` between the start and the end of a step is what
the step consumed), and sets ``trainer.should_stop`` after the step that reaches N. That step is
not cut short: it may go over N by the extra batches it drew (logged as
``train/data_budget/batches``). Lightning then runs the validation of an early stop, and the
checkpoint callbacks write ``last.ckpt`` at that step.

The count starts when the callback first runs and lives in the checkpoint (callback state), so a
run resumed with ``--ckpt_path`` keeps counting where it stopped, while a run started from another
run's checkpoint without this callback's state (``benchmarks/objectives.py``: every variant from
the warm start) counts from zero. Under several ranks every rank counts its own batches (the ranks
draw the same number per step) and the stop is decided together (any rank at its budget stops
all), so every rank runs the same number of steps.

    python cli.py fit --config configs/demo.yaml \\
        --trainer.callbacks+=callbacks.data_budget.DataBudget --trainer.callbacks.max_batches=60
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

__all__ = ["DataBudget"]


class DataBudget(Callback):
    """Stop after ``max_batches`` training batches have been consumed (see the module docstring).

    >>> DataBudget(max_batches=3).state_dict()
    {'batches': 0}
    """

    def __init__(self, max_batches: int) -> None:
        if int(max_batches) < 1:
            raise ValueError(f"DataBudget: max_batches must be >= 1, got {max_batches}")
        self.max_batches = int(max_batches)
        self.batches = 0
        self._processed_at_start: int | None = None

    @staticmethod
    def _processed(trainer: Trainer) -> int:
        return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._processed_at_start = self._processed(trainer)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._processed_at_start is None:  # no batch start seen (cannot happen inside a fit loop)
            return
        # the step's own batch and every batch it drew; at least its own (a loop without counters)
        self.batches += max(1, self._processed(trainer) - self._processed_at_start)
        self._processed_at_start = None
        pl_module.log("train/data_budget/batches", float(self.batches), on_step=True, on_epoch=False, batch_size=1)
        stop = trainer.strategy.reduce_boolean_decision(self.batches >= self.max_batches, all=False)
        if stop:
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.batches = int(state_dict["batches"])
