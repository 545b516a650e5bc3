"""Figures of the test set, drawn when ``trainer.test`` ends, saved as PNG and sent to W&B.

Reads the predictions CSV the module wrote (its path in ``trainer.lightning_module.predictions_path``,
columns :data:`globe.evaluation.PREDICTION_COLUMNS`) and writes, next to each other,

* ``{stem}_accuracy_by_distance.png`` — accuracy against the distance threshold (log scale);
* ``{stem}_error_cdf.png`` — cumulative distribution of the errors in km;
* ``{stem}_world_map.png`` — predictions against truth with error lines over the gazetteer's cities,

where ``stem`` is the predictions file's name without its extension (two test runs into one folder
do not overwrite each other). Unresolved predictions are misses at every distance. Each figure is
then logged to every ``WandbLogger`` of the trainer as an image (``test/plots/<name>``); other
loggers are skipped. Under several processes each rank wrote ``{stem}.rank{r}.csv``: after a
barrier, rank zero reads all of them and plots the whole test set. The drawing itself is in
:mod:`globe.plotting`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_warn

from globe.plotting.errors import PlotInputError, prediction_points
from globe.plotting.png import save_png
from globe.plotting.prediction_figures import accuracy_figure, error_cdf_figure, world_map_figure
from globe.plotting.world import city_points
from globe.score import read_csv

__all__ = ["TestPlots"]

_RANK_SUFFIX = re.compile(r"\.rank0$")


class TestPlots(Callback):
    """Draw the test figures from the predictions CSV at the end of ``test``.

    Args:
        dirpath: folder of the PNGs (default: ``trainer.log_dir``, else the predictions file's folder).
        thresholds_km: distances marked on the accuracy curve.
    """

    __test__ = False  # not a pytest test class despite its name

    def __init__(self, dirpath: str | None = None, thresholds_km: Sequence[float] = (1, 25, 200, 750, 2500)) -> None:
        self.dirpath = dirpath
        self.thresholds_km = tuple(float(t) for t in thresholds_km)
        if not self.thresholds_km or any(not t > 0 for t in self.thresholds_km):
            raise ValueError(f"thresholds_km must be positive distances, got {thresholds_km!r}")
        self.last_paths: dict[str, Path] = {}  # what the latest test run wrote, by figure name

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.strategy.barrier("test_plots")  # every rank's predictions file is written
        log_dir = trainer.log_dir  # a collective under several ranks (a broadcast from rank 0): every rank reads it
        if not trainer.is_global_zero:
            return
        path = getattr(trainer.lightning_module, "predictions_path", None)
        if not path:
            rank_zero_warn("TestPlots: the module has no `predictions_path` after test; no test figures drawn")
            return
        files = self._prediction_files(Path(path), trainer.world_size)
        absent = [str(f) for f in files if not f.is_file()]
        if absent:
            rank_zero_warn(f"TestPlots: predictions file(s) not found: {', '.join(absent)}; no test figures drawn")
            return
        try:
            points = prediction_points(row for f in files for row in read_csv(f))
        except PlotInputError as e:
            rank_zero_warn(f"TestPlots: cannot plot {path}: {e}")
            return
        if points.n == 0:
            rank_zero_warn(f"TestPlots: {path} has no scorable rows ({points.n_skipped} skipped); no test figures drawn")
            return
        if points.n_skipped:
            rank_zero_warn(f"TestPlots: {points.n_skipped} row(s) of {path} have no valid ground-truth coordinate; skipped")
        out_dir = Path(self.dirpath or log_dir or files[0].parent)
        stem = _RANK_SUFFIX.sub("", Path(path).stem)
        figures = {
            "accuracy_by_distance": lambda: accuracy_figure(points, self.thresholds_km),
            "error_cdf": lambda: error_cdf_figure(points),
            "world_map": lambda: world_map_figure(points, background=city_points()),
        }
        self.last_paths = {name: save_png(draw(), out_dir / f"{stem}_{name}.png") for name, draw in figures.items()}
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                for name, png in self.last_paths.items():
                    logger.log_image(key=f"test/plots/{name}", images=[str(png)], step=trainer.global_step)

    @staticmethod
    def _prediction_files(path: Path, world_size: int) -> list[Path]:
        """The one predictions file, or every rank's ``{stem}.rank{r}.csv`` under several processes."""
        stem = path.stem
        if world_size > 1 and _RANK_SUFFIX.search(stem):
            base = _RANK_SUFFIX.sub("", stem)
            return [path.with_name(f"{base}.rank{r}{path.suffix}") for r in range(world_size)]
        return [path]
