"""Reward and validation curves of a run, from Lightning's CSVLogger ``metrics.csv``.

The file has a ``step`` column and one column per logged metric; rows are sparse (a metric has
a value only on the rows of the steps it was logged at; blank elsewhere). Known columns:

* rewards: ``train/reward`` and every ``train/reward/<head>`` (the per-head means; the
  ``..._std`` columns, spreads within a batch, are left out), drawn raw and with a trailing
  rolling mean (:func:`rolling_mean`);
* validation: every ``val/*`` column; the ``val/acc@{t}km`` columns share one panel, ordered by
  distance, the others get one panel each.

A blank, ``nan`` or ``inf`` cell is "not logged here"; any other text that is not a number is an
error naming the line, as is a file that does not exist or has none of the known columns.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from globe.plotting.errors import PlotInputError
from globe.plotting.png import new_figure

__all__ = ["Series", "read_metrics", "reward_columns", "validation_columns", "rolling_mean",
           "reward_figure", "validation_figure"]

Series = tuple[list[float], list[float]]  # (steps, values), sorted by step
_ACC = re.compile(r"^val/acc@([0-9.]+)km$")


def reward_columns(columns: Sequence[str]) -> list[str]:
    """``train/reward`` first, then the ``train/reward/<head>`` means in file order.

    >>> reward_columns(["step", "train/reward/geo", "train/reward", "train/reward/geo_std", "train/kl"])
    ['train/reward', 'train/reward/geo']
    """
    heads = [c for c in columns if c.startswith("train/reward/") and len(c) > 13 and not c.endswith("_std")]
    return (["train/reward"] if "train/reward" in columns else []) + heads


def validation_columns(columns: Sequence[str]) -> list[str]:
    """Every ``val/*`` column, in file order."""
    return [c for c in columns if c.startswith("val/") and len(c) > 4]


def read_metrics(path: str | Path) -> dict[str, Series]:
    """Series of every known column of a CSVLogger ``metrics.csv`` (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise PlotInputError(f"metrics file not found: {path}")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        known = reward_columns(columns) + validation_columns(columns)
        if not known:
            raise PlotInputError(
                f"{path} has none of the known columns (train/reward, train/reward/<head>, val/*); "
                f"its columns: {columns or 'none'}"
            )
        if "step" not in columns:
            raise PlotInputError(f"{path} has no 'step' column; its columns: {columns}")
        points: dict[str, list[tuple[float, float]]] = {c: [] for c in known}
        for line, row in enumerate(reader, start=2):
            step = _number(row.get("step"), path, line, "step")
            if step is None:
                continue
            for c in known:
                value = _number(row.get(c), path, line, c)
                if value is not None:
                    points[c].append((step, value))
    out: dict[str, Series] = {}
    for c, p in points.items():
        if p:
            p.sort(key=lambda sv: sv[0])  # stable: rows of one step keep their file order
            out[c] = ([s for s, _ in p], [v for _, v in p])
    return out


def _number(cell: str | None, path: Path, line: int, column: str) -> float | None:
    if cell is None or not cell.strip():
        return None
    try:
        value = float(cell)
    except ValueError:
        raise PlotInputError(f"{path}, line {line}: {column} is not a number: {cell[:40]!r}") from None
    return value if math.isfinite(value) else None


def rolling_mean(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over the last ``window`` values (fewer at the start), in linear time.

    >>> rolling_mean([1.0, 2.0, 3.0, 4.0], 2)
    [1.0, 1.5, 2.5, 3.5]
    >>> rolling_mean([4.0, 0.0, 2.0], 10)
    [4.0, 2.0, 2.0]
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _grid(n: int, width: float = 12.0, row_height: float = 3.0) -> tuple[Figure, list]:
    cols = 1 if n == 1 else 2
    rows = math.ceil(n / cols)
    fig = new_figure(width if cols > 1 else width / 1.6, row_height * rows + 0.6)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n)]
    return fig, axes


def reward_figure(series: Mapping[str, Series], window: int = 10, title: str = "Rewards") -> Figure:
    """One panel per reward series: raw values (light) and their rolling mean (``window`` points)."""
    if not series:
        raise PlotInputError("no reward values to plot")
    fig, axes = _grid(len(series))
    for ax, (name, (steps, values)) in zip(axes, series.items()):
        ax.plot(steps, values, color="tab:blue", alpha=0.3, lw=0.8, label="per step")
        ax.plot(steps, rolling_mean(values, window), color="tab:blue", lw=2, label=f"rolling mean ({window})")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(title)
    return fig


def _val_panels(series: Mapping[str, Series]) -> list[tuple[str, list[str]]]:
    acc = sorted((c for c in series if _ACC.match(c)), key=lambda c: float(_ACC.match(c).group(1)))
    panels = [("val/acc@d (accuracy within d km)", acc)] if acc else []
    return panels + [(c, [c]) for c in series if c not in acc]


def validation_figure(series: Mapping[str, Series], title: str = "Validation") -> Figure:
    """Validation metrics against step: the ``acc@{t}km`` curves together, the others one per panel."""
    if not series:
        raise PlotInputError("no validation values to plot")
    panels = _val_panels(series)
    fig, axes = _grid(len(panels))
    for ax, (name, cols) in zip(axes, panels):
        for c in cols:
            steps, values = series[c]
            ax.plot(steps, values, marker="o", ms=3, lw=1.5, label=c.removeprefix("val/"))
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        if len(cols) > 1:
            ax.legend(fontsize=8, loc="best")
    fig.suptitle(title)
    return fig
