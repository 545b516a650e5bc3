"""The three figures of a test run: accuracy by distance, error CDF, world map of predictions.

Each function takes :class:`globe.plotting.errors.PredictionPoints` and returns a matplotlib
``Figure`` (own Agg canvas, see :func:`globe.plotting.png.new_figure`); the caller saves it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

from globe.plotting.errors import PredictionPoints, accuracy_at, accuracy_curve, error_cdf, map_segments, median_km
from globe.plotting.png import new_figure

__all__ = ["accuracy_figure", "error_cdf_figure", "world_map_figure", "HALF_CIRCUMFERENCE_KM"]

HALF_CIRCUMFERENCE_KM = 20015.1  # the farthest two points on the sphere can be (pi * 6371.0088)
_KM = FuncFormatter(lambda v, _: f"{v:,.0f}")


def _subtitle(points: PredictionPoints) -> str:
    text = f"n = {points.n}, unresolved = {points.n_unresolved}"
    if points.n_skipped:
        text += f", skipped (no ground-truth coordinate) = {points.n_skipped}"
    return text


def accuracy_figure(points: PredictionPoints, thresholds_km: Sequence[float], title: str = "Accuracy by distance") -> Figure:
    """Fraction of predictions within d km against d (log scale, 1 to 20,000 km); thresholds marked."""
    ts, acc = accuracy_curve(points.errors_km, 1.0, 20000.0, 300)
    fig = new_figure(7.5, 4.5)
    ax = fig.add_subplot()
    ax.plot(ts, acc, color="tab:blue", lw=2, label="accuracy within d km")
    marks = sorted(t for t in thresholds_km if 1.0 <= t <= 20000.0)
    for t, a in zip(marks, accuracy_at(points.errors_km, marks)):
        ax.axvline(t, color="0.6", ls=":", lw=1)
        ax.plot([t], [a], "o", color="tab:orange", ms=6, zorder=3)
        ax.annotate(f"{a:.1%}", (t, a), textcoords="offset points", xytext=(4, -12), fontsize=9)
    if marks:
        ax.plot([], [], "o", color="tab:orange", label="acc@" + " / ".join(f"{t:g}" for t in marks) + " km")
    ax.set_xscale("log")
    ax.set_xlim(1.0, 20000.0)
    ax.xaxis.set_major_formatter(_KM)
    ax.set_ylim(0.0, 1.0)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("distance threshold d (km, log scale)")
    ax.set_ylabel("predictions within d")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", title="unresolved = miss at every d", title_fontsize=8, fontsize=9)
    ax.set_title(f"{title}\n{_subtitle(points)}", fontsize=11)
    return fig


def error_cdf_figure(points: PredictionPoints, title: str = "Cumulative distribution of errors") -> Figure:
    """Empirical CDF of the error in km (linear axis up to half the Earth's circumference).

    Unresolved predictions count in the total but are never reached: the curve stops at the
    resolved fraction, drawn as a dashed ceiling.
    """
    xs, ys = error_cdf(points.errors_km)
    n = points.n
    fig = new_figure(7.5, 4.5)
    ax = fig.add_subplot()
    ax.step([0.0, *xs, HALF_CIRCUMFERENCE_KM], [0.0, *ys, ys[-1] if ys else 0.0], where="post", color="tab:blue", lw=2,
            label="fraction with error <= x")
    resolved = (n - points.n_unresolved) / n if n else 0.0
    ax.axhline(resolved, color="tab:red", ls="--", lw=1,
               label=f"ceiling {resolved:.1%}: {points.n_unresolved} of {n} unresolved, never reached")
    med = median_km(points.errors_km)
    if math.isfinite(med):
        ax.axvline(med, color="0.5", ls=":", lw=1, label=f"median {med:,.1f} km")
    else:
        ax.plot([], [], " ", label="median: unresolved (half or more never reached)")
    ax.set_xlim(0.0, HALF_CIRCUMFERENCE_KM)
    ax.xaxis.set_major_formatter(_KM)
    ax.set_ylim(0.0, 1.0)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("error (km)")
    ax.set_ylabel("cumulative fraction of predictions")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    ax.set_title(f"{title}\n{_subtitle(points)}", fontsize=11)
    return fig


def world_map_figure(
    points: PredictionPoints,
    background: tuple[Sequence[float], Sequence[float]] | None = None,
    title: str = "Predictions against truth",
) -> Figure:
    """Equirectangular map: background city dots, truth and prediction markers, error lines.

    ``background`` is ``(lons, lats)`` (e.g. :func:`globe.plotting.world.city_points`).
    Unresolved predictions have no line; their truth points get a cross.
    """
    fig = new_figure(11.0, 6.2)
    ax = fig.add_subplot()
    if background is not None:
        ax.scatter(background[0], background[1], s=1.2, c="0.72", marker=".", linewidths=0, rasterized=True, zorder=1)
    segments = map_segments(points)
    n = max(points.n, 1)
    alpha = min(0.8, max(0.12, 30.0 / n))  # many lines: lighter, so crowded areas still read
    ax.add_collection(LineCollection(segments, colors="tab:red", linewidths=0.8, alpha=alpha, zorder=2))
    resolved = [i for i, e in enumerate(points.errors_km) if math.isfinite(e)]
    unresolved = [i for i, e in enumerate(points.errors_km) if not math.isfinite(e)]
    size = 14 if points.n <= 200 else 6
    ax.scatter([points.true_lon[i] for i in resolved], [points.true_lat[i] for i in resolved], s=size, c="black",
               marker="o", linewidths=0, zorder=3, label=f"truth ({len(resolved)})")
    ax.scatter([points.pred_lon[i] for i in resolved], [points.pred_lat[i] for i in resolved], s=size * 1.4,
               c="tab:blue", marker="^", linewidths=0, zorder=4, label=f"prediction ({len(resolved)})")
    if unresolved:
        ax.scatter([points.true_lon[i] for i in unresolved], [points.true_lat[i] for i in unresolved], s=size * 2,
                   c="tab:orange", marker="x", linewidths=1, zorder=4, label=f"truth, unresolved ({len(unresolved)})")
    ax.plot([], [], color="tab:red", lw=1, label="error line")
    ax.set_xlim(-180.0, 180.0)
    ax.set_ylim(-90.0, 90.0)
    ax.set_aspect("equal")
    ax.set_xticks(range(-180, 181, 60))
    ax.set_yticks(range(-90, 91, 30))
    ax.set_xlabel("longitude (deg)")
    ax.set_ylabel("latitude (deg)")
    ax.grid(True, alpha=0.2)
    ax.legend(loc="lower left", fontsize=8, markerscale=1.5, framealpha=0.9)
    ax.set_title(f"{title}\n{_subtitle(points)}", fontsize=11)
    return fig
