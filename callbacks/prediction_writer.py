"""Write ``cli.py predict`` results to disk: one file per rank while predicting, one merged file at the end.

Each ``predict_step`` returns ``globe.evaluation.Prediction`` rows: the policy's (the completion,
the parsed country / city, the geocoded coordinates) or a subclass's, such as GeoRetrieval's
coordinates-only rows (``pred_level="coordinates"``, with their top-k points). Every rank appends its rows, batch by batch, to its own
part file (``<name>.rank<R>.partial``), so nothing is held in memory and nothing is lost to
another rank's write. At the end of ``predict`` the ranks meet; rank 0 concatenates the parts in
rank order into ``path`` through a temporary file and ``os.replace`` (a crash leaves the previous
file, never a truncated one), then removes the parts.

Formats, by the extension of ``path``: ``.csv`` (the test predictions' columns, which
``python -m globe.score`` reads; a subclass's further fields are left out) or ``.jsonl`` (one
JSON object a row, every field; NaN written as ``null``). A row that is not a ``Prediction``
is an error naming its type, not a file silently left empty.
The output directory is checked for writing before the first batch is decoded.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from globe.evaluation import PREDICTION_COLUMNS, Prediction
from globe.output_files import atomic_writer, check_writable_file

__all__ = ["PredictionWriter"]


def _jsonable(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


class PredictionWriter(BasePredictionWriter):
    """Args:
    path: the merged output file (``.csv`` or ``.jsonl``).
    """

    def __init__(self, path: str = "artifacts/predictions.csv") -> None:
        super().__init__(write_interval="batch")
        self.path = Path(path)
        if self.path.suffix not in (".csv", ".jsonl"):
            raise ValueError(f"PredictionWriter: path must end in .csv or .jsonl, got {path!r}")
        self.rows_written = 0

    def _part(self, rank: int) -> Path:
        return self.path.with_name(f".{self.path.name}.rank{rank}.partial")

    def _format(self, rows: Sequence[Prediction]) -> str:
        out = io.StringIO()
        if self.path.suffix == ".csv":
            csv.DictWriter(out, fieldnames=PREDICTION_COLUMNS, extrasaction="ignore").writerows(r.row() for r in rows)
        else:
            for r in rows:
                out.write(json.dumps({k: _jsonable(v) for k, v in r.row().items()}, ensure_ascii=False) + "\n")
        return out.getvalue()

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        check_writable_file(self.path, "PredictionWriter path")
        self._part(trainer.global_rank).write_text("")
        self.rows_written = 0

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx) -> None:
        rows = list(prediction or [])
        wrong = [type(r).__name__ for r in rows if not isinstance(r, Prediction)]
        if wrong:
            raise TypeError(f"PredictionWriter: predict_step must return globe.evaluation.Prediction rows, got {wrong[0]}")
        with open(self._part(trainer.global_rank), "a", encoding="utf-8", errors="backslashreplace", newline="") as f:
            f.write(self._format(rows))
        self.rows_written += len(rows)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.strategy.barrier("prediction_writer")
        if trainer.is_global_zero:
            parts = [self._part(r) for r in range(trainer.world_size)]
            with atomic_writer(self.path, newline="") as out:
                if self.path.suffix == ".csv":
                    csv.DictWriter(out, fieldnames=PREDICTION_COLUMNS).writeheader()
                for part in parts:
                    with open(part, encoding="utf-8", newline="") as f:
                        out.write(f.read())
            for part in parts:
                os.unlink(part)
        trainer.strategy.barrier("prediction_writer_done")
