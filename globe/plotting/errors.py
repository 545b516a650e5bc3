"""Pure data behind the test figures: errors in km, accuracy by threshold, CDF, map segments.

Input is the predictions CSV the policy writes after ``test`` (columns
:data:`globe.evaluation.PREDICTION_COLUMNS`; only ``LAT, LON, pred_lat, pred_lon`` are read).
A prediction whose coordinates are blank, non-numeric, NaN or out of range is *unresolved*: its
error is ``+inf``, so it is a miss at every threshold and never reached by the CDF; it is never
dropped. A row whose ground truth is not a valid coordinate cannot be scored and is skipped and
counted (``n_skipped``). Distances are haversine (:func:`globe.geo.distance.great_circle_km`),
the same as :class:`globe.metrics.GeoAccuracy`, and thresholds are inclusive (``error <= t``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "PlotInputError",
    "PredictionPoints",
    "prediction_points",
    "accuracy_at",
    "accuracy_curve",
    "error_cdf",
    "median_km",
    "map_segments",
]

_NEEDED = ("LAT", "LON", "pred_lat", "pred_lon")


class PlotInputError(ValueError):
    """An input file that cannot be plotted (missing, no known columns, bad values)."""


def _coordinate(lat: str | float | None, lon: str | float | None) -> tuple[float, float] | None:
    try:
        la, lo = float(lat), float(lon)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(la) and math.isfinite(lo) and -90.0 <= la <= 90.0 and -180.0 <= lo <= 180.0):
        return None
    return la, lo


@dataclass(frozen=True)
class PredictionPoints:
    """Scored rows: truth and prediction coordinates (prediction NaN = unresolved), errors in km."""

    true_lat: tuple[float, ...]
    true_lon: tuple[float, ...]
    pred_lat: tuple[float, ...]
    pred_lon: tuple[float, ...]
    errors_km: tuple[float, ...]  # +inf where unresolved
    n_skipped: int = 0  # rows whose ground truth is not a coordinate

    @property
    def n(self) -> int:
        return len(self.errors_km)

    @property
    def n_unresolved(self) -> int:
        return sum(1 for e in self.errors_km if math.isinf(e))


def prediction_points(rows: Iterable[Mapping[str, str]]) -> PredictionPoints:
    """Rows of a predictions CSV (dicts of strings) -> :class:`PredictionPoints`.

    >>> p = prediction_points([
    ...     {"LAT": "0", "LON": "0", "pred_lat": "0", "pred_lon": "1"},
    ...     {"LAT": "10", "LON": "20", "pred_lat": "", "pred_lon": ""},
    ...     {"LAT": "x", "LON": "0", "pred_lat": "0", "pred_lon": "0"},
    ... ])
    >>> [round(e, 3) for e in p.errors_km], p.n_unresolved, p.n_skipped
    ([111.195, inf], 1, 1)
    """
    tl, tn, pl, pn = [], [], [], []
    skipped = 0
    for i, row in enumerate(rows):
        if i == 0:
            missing = [c for c in _NEEDED if c not in row]
            if missing:
                raise PlotInputError(f"predictions lack column(s) {missing}; have {sorted(row)}")
        truth = _coordinate(row.get("LAT"), row.get("LON"))
        if truth is None:
            skipped += 1
            continue
        pred = _coordinate(row.get("pred_lat"), row.get("pred_lon")) or (math.nan, math.nan)
        tl.append(truth[0]); tn.append(truth[1]); pl.append(pred[0]); pn.append(pred[1])  # noqa: E702
    if tl:
        from globe.geo.distance import great_circle_km  # torch: imported only when scoring

        d = great_circle_km(tl, tn, pl, pn).nan_to_num(nan=math.inf).tolist()
    else:
        d = []
    return PredictionPoints(tuple(tl), tuple(tn), tuple(pl), tuple(pn), tuple(d), skipped)


def accuracy_at(errors_km: Sequence[float], thresholds_km: Sequence[float]) -> list[float]:
    """Fraction of errors ``<= t`` for each threshold; unresolved (``inf``) errors are misses.

    >>> accuracy_at([3.0, 10.0, 24.9, 400.0], [25])
    [0.75]
    >>> accuracy_at([3.0, float("inf")], [1, 25, 20000])
    [0.0, 0.5, 0.5]
    """
    if not errors_km:
        raise PlotInputError("no scored predictions: accuracy is undefined")
    n = len(errors_km)
    return [sum(1 for e in errors_km if e <= t) / n for t in thresholds_km]


def accuracy_curve(
    errors_km: Sequence[float], lo_km: float = 1.0, hi_km: float = 20000.0, points: int = 200
) -> tuple[list[float], list[float]]:
    """Accuracy at ``points`` log-spaced thresholds from ``lo_km`` to ``hi_km`` (both included).

    Sorts once, then counts with bisection: O(n log n + points log n).

    >>> ts, acc = accuracy_curve([5.0, 50.0, 500.0, float("inf")], 1.0, 1000.0, 4)
    >>> [round(t, 6) for t in ts], acc
    ([1.0, 10.0, 100.0, 1000.0], [0.0, 0.25, 0.5, 0.75])
    """
    from bisect import bisect_right

    if not errors_km:
        raise PlotInputError("no scored predictions: accuracy is undefined")
    if not (0 < lo_km < hi_km) or points < 2:
        raise ValueError("accuracy_curve needs 0 < lo_km < hi_km and points >= 2")
    ratio = math.log(hi_km / lo_km)
    ts = [lo_km * math.exp(ratio * i / (points - 1)) for i in range(points)]
    ts[-1] = hi_km
    s = sorted(errors_km)
    n = len(s)
    return ts, [bisect_right(s, t) / n for t in ts]


def error_cdf(errors_km: Sequence[float]) -> tuple[list[float], list[float]]:
    """Empirical CDF of the errors over *all* rows: sorted finite errors and ``(i + 1) / n``.

    Unresolved rows are in ``n`` but never reached, so the curve tops out at the resolved fraction.

    >>> error_cdf([10.0, 30.0, float("inf"), 5.0])
    ([5.0, 10.0, 30.0], [0.25, 0.5, 0.75])
    """
    n = len(errors_km)
    xs = sorted(e for e in errors_km if math.isfinite(e))
    return xs, [(i + 1) / n for i in range(len(xs))]


def median_km(errors_km: Sequence[float]) -> float:
    """Median error, ``inf`` when half or more are unresolved (mean of the middle two if even).

    >>> median_km([3.0, 1.0, float("inf"), 2.0]), median_km([1.0, float("inf")])
    (2.5, inf)
    """
    if not errors_km:
        return math.nan
    s = sorted(errors_km)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def map_segments(points: PredictionPoints) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """Straight truth -> prediction lines in (lon, lat) for an equirectangular map.

    Each line goes the short way in longitude; one that crosses the antimeridian is cut there into
    two pieces (latitude interpolated linearly in the projection). Unresolved rows have no line.

    >>> pts = PredictionPoints((0.0, 0.0), (170.0, 0.0), (10.0, 5.0), (-170.0, 2.0), (0.0, 0.0))
    >>> map_segments(pts)
    [((170.0, 0.0), (180.0, 5.0)), ((-180.0, 5.0), (-170.0, 10.0)), ((0.0, 0.0), (2.0, 5.0))]
    """
    out = []
    for la1, lo1, la2, lo2 in zip(points.true_lat, points.true_lon, points.pred_lat, points.pred_lon):
        if math.isnan(la2) or math.isnan(lo2):
            continue
        d = lo2 - lo1
        if abs(d) <= 180.0:
            out.append(((lo1, la1), (lo2, la2)))
            continue
        lo2u = lo2 - 360.0 if d > 0 else lo2 + 360.0  # the unwrapped end, beyond +-180
        edge = 180.0 if lo2u > 180.0 else -180.0
        lat_c = la1 + (la2 - la1) * (edge - lo1) / (lo2u - lo1)
        out.append(((lo1, la1), (edge, lat_c)))
        out.append(((-edge, lat_c), (lo2, la2)))
    return out
