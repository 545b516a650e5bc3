"""Sample completions with their rewards, logged every ``every_n_steps`` training steps.

To Weights & Biases as a table when the run has a ``WandbLogger`` (one table per logging step,
keyed by the global step), and always as JSON lines in the logger's directory, so the
completions behind a reward curve can be read without an account.
"""

from __future__ import annotations

import json
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger


class CompletionsTable(Callback):
    """Log ``max_rows`` completions of the latest rollout (read from ``pl_module.last_rollout``)."""

    def __init__(self, every_n_steps: int = 10, max_rows: int = 16, filename: str = "completions.jsonl") -> None:
        self.every_n_steps = every_n_steps
        self.max_rows = max_rows
        self.filename = filename

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        rollout = getattr(pl_module, "last_rollout", None)
        if rollout is None or trainer.global_step % self.every_n_steps:
            return
        # ``trainer.log_dir`` is a collective (a broadcast from rank 0) under several ranks: every rank
        # reads it, then only rank 0 writes
        log_dir = Path(trainer.log_dir or trainer.default_root_dir)
        if not trainer.is_global_zero:
            pl_module.last_rollout = None
            return
        heads = rollout["heads"]
        rows = []
        for i in range(min(self.max_rows, len(rollout["completions"]))):
            row = {"step": trainer.global_step, "key": rollout["keys"][i], "reward": rollout["rewards"][i]}
            row.update({name: values[i] for name, values in heads.items()})
            row["completion"] = rollout["completions"][i]
            rows.append(row)
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / self.filename, "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                columns = list(rows[0]) if rows else []
                logger.log_table("samples/completions", columns=columns, data=[list(r.values()) for r in rows], step=trainer.global_step)
        pl_module.last_rollout = None
