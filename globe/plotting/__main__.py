"""Draw the reward and validation curves of a run from its CSVLogger ``metrics.csv``.

    python -m globe.plotting --metrics path/to/metrics.csv --out DIR [--window 10]

Writes ``DIR/rewards.png`` (when the file has reward columns) and ``DIR/validation.png`` (when it
has ``val/*`` columns); see :mod:`globe.plotting.run_metrics` for the columns read. Exits with
status 2 and a one-line message for a missing file or one with no known columns.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from globe.plotting.errors import PlotInputError
from globe.plotting.png import save_png
from globe.plotting.run_metrics import read_metrics, reward_columns, reward_figure, validation_figure

__all__ = ["main", "plot_metrics"]


def _run_name(metrics: str | Path) -> str:
    """``name/version_N`` of a CSVLogger file (its two parent folders)."""
    parts = Path(metrics).resolve().parent.parts
    return "/".join(parts[-2:])


def plot_metrics(metrics: str | Path, out_dir: str | Path, window: int = 10) -> list[Path]:
    """Read ``metrics`` and write the figures into ``out_dir``; returns the written paths."""
    series = read_metrics(metrics)
    rewards = {c: s for c, s in series.items() if c in reward_columns(list(series))}
    val = {c: s for c, s in series.items() if c.startswith("val/")}
    if not rewards and not val:
        raise PlotInputError(f"{metrics}: the known columns have no values")
    out_dir = Path(out_dir)
    written = []
    if rewards:
        written.append(save_png(reward_figure(rewards, window=window, title=f"Rewards: {_run_name(metrics)}"),
                                out_dir / "rewards.png"))
    if val:
        written.append(save_png(validation_figure(val, title=f"Validation: {_run_name(metrics)}"),
                                out_dir / "validation.png"))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m globe.plotting", description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", required=True, help="a CSVLogger metrics.csv")
    parser.add_argument("--out", required=True, help="folder for rewards.png and validation.png")
    parser.add_argument("--window", type=int, default=10, help="rolling-mean window of the reward curves, in points")
    args = parser.parse_args(argv)
    if args.window < 1:
        parser.error("--window must be >= 1")
    try:
        written = plot_metrics(args.metrics, args.out, window=args.window)
    except PlotInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
