"""Score geo-localisation predictions against IM2GPS3K-style ground truth.

    python -m globe.score --predictions P.csv --ground-truth G.csv [--out results.json]

Ground truth: a CSV with ``IMG_ID,LAT,LON`` (other columns ignored; optional ``country`` /
``city`` columns enable ``country_acc`` / ``city_acc`` for name predictions).
Predictions: ``IMG_ID`` plus one of, checked in this order,

* ``pred_lat,pred_lon`` — coordinates (blank, non-numeric or out-of-range -> unresolved);
* ``pred_city,pred_country`` — names, geocoded offline (:class:`globe.geo.gazetteer.Gazetteer`,
  city -> country fallback);
* ``pred_text`` — raw model output, parsed by :func:`globe.answer.parse_answer`, then geocoded.

Pipeline: parse -> geocode (per distinct text / name pair, memoised) -> one vectorised
haversine over all rows -> :class:`globe.metrics.GeoAccuracy`. Nothing is dropped: a
prediction that cannot be parsed or geocoded is ``unresolved``, a ground-truth ID without a
prediction is ``missing``; both are misses at every threshold and +inf in the median.
``n`` counts every ground-truth row, ``n_unresolved`` only the predictions present but
unresolved (missing ones are in ``n_missing``). In the JSON output an infinite median is
written as ``null``. Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from globe.answer import parse_answer
from globe.geo.countries import country_code
from globe.geo.gazetteer import Gazetteer
from globe.metrics import GeoAccuracy, threshold_key

__all__ = ["ScoreInputError", "score_predictions", "read_csv", "format_table", "main"]

DEFAULT_THRESHOLDS_KM = (1, 25, 200, 750, 2500)


class ScoreInputError(ValueError):
    """Bad input files (missing columns, unknown or duplicate IDs)."""


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts (UTF-8, BOM tolerated)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def _columns(rows: Sequence[Mapping[str, str]]) -> set[str]:
    return set(rows[0].keys()) if rows else set()


def _prediction_form(cols: set[str]) -> str:
    if {"pred_lat", "pred_lon"} <= cols:
        return "latlon"
    if {"pred_city", "pred_country"} <= cols:
        return "names"
    if "pred_text" in cols:
        return "text"
    raise ScoreInputError(
        "predictions need IMG_ID and one of: pred_lat,pred_lon | pred_city,pred_country | pred_text; "
        f"got columns {sorted(cols)}"
    )


def _float(v: str | None) -> float:
    try:
        return float(v) if v is not None else math.nan
    except ValueError:
        return math.nan


def score_predictions(
    pred_rows: Iterable[Mapping[str, str]],
    gt_rows: Iterable[Mapping[str, str]],
    gazetteer: Gazetteer | None = None,
    thresholds_km: Sequence[float] = DEFAULT_THRESHOLDS_KM,
) -> dict:
    """Score predictions (rows as dicts of strings) against ground truth; see the module doc.

    The gazetteer is only needed (and loaded if None) for name or text predictions.
    Returns ``acc@{t}km`` for each threshold, ``median_km``, ``n``, ``n_unresolved``,
    ``n_missing``, ``n_predictions``, ``form`` and, for names, ``n_city_level`` /
    ``n_country_level`` (and ``country_acc`` / ``city_acc`` when the ground truth has
    ``country`` / ``city`` columns).
    """
    gt_rows, pred_rows = list(gt_rows), list(pred_rows)
    missing_cols = {"IMG_ID", "LAT", "LON"} - _columns(gt_rows)
    if not gt_rows:
        raise ScoreInputError("ground truth has no rows")
    if missing_cols:
        raise ScoreInputError(f"ground truth lacks column(s) {sorted(missing_cols)}; needs IMG_ID,LAT,LON")
    ids = [r["IMG_ID"] for r in gt_rows]
    pos = {k: i for i, k in enumerate(ids)}
    if len(pos) != len(ids):
        raise ScoreInputError("ground truth has duplicate IMG_ID values")
    n = len(ids)
    true_lat = np.array([_float(r["LAT"]) for r in gt_rows])
    true_lon = np.array([_float(r["LON"]) for r in gt_rows])
    if not (np.isfinite(true_lat).all() and np.isfinite(true_lon).all()):
        raise ScoreInputError("ground truth has non-numeric LAT/LON values")

    cols = _columns(pred_rows)
    if pred_rows and "IMG_ID" not in cols:
        raise ScoreInputError(f"predictions lack the IMG_ID column; got columns {sorted(cols)}")
    form = _prediction_form(cols) if pred_rows else "latlon"
    pred_ids = [r["IMG_ID"] for r in pred_rows]
    unknown = [k for k in pred_ids if k not in pos]
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise ScoreInputError(f"{len(unknown)} prediction IMG_ID(s) not in the ground truth: {shown}")
    if len(set(pred_ids)) != len(pred_ids):
        raise ScoreInputError("predictions have duplicate IMG_ID values")

    rows = np.array([pos[k] for k in pred_ids], dtype=np.int64)  # gt row of each prediction
    pred_lat = np.full(n, np.nan)
    pred_lon = np.full(n, np.nan)
    extras: dict[str, float] = {}
    names: list[tuple[str | None, str | None]] | None = None
    if form == "latlon":
        la = np.array([_float(r.get("pred_lat")) for r in pred_rows])
        lo = np.array([_float(r.get("pred_lon")) for r in pred_rows])
        bad = ~(np.abs(la) <= 90) | ~(np.abs(lo) <= 360)
        la[bad], lo[bad] = np.nan, np.nan
        pred_lat[rows], pred_lon[rows] = la, lo
    else:
        if form == "text":
            memo: dict[str, tuple[str | None, str | None]] = {}
            names = []
            for r in pred_rows:
                t = r.get("pred_text") or ""
                if t not in memo:
                    p = parse_answer(t)
                    memo[t] = (p.city, p.country)
                names.append(memo[t])
            extras["n_unparsed"] = sum(1 for c, k in names if c is None and k is None)
        else:
            names = [((r.get("pred_city") or None), (r.get("pred_country") or None)) for r in pred_rows]
        gaz = gazetteer if gazetteer is not None else Gazetteer.load()
        places = gaz.geocode_many(names)
        pred_lat[rows] = [p.lat if p else np.nan for p in places]
        pred_lon[rows] = [p.lon if p else np.nan for p in places]
        extras["n_city_level"] = sum(1 for p in places if p and p.level == "city")
        extras["n_country_level"] = sum(1 for p in places if p and p.level == "country")

    metric = GeoAccuracy(thresholds_km)
    country_ok = city_ok = None
    gt_cols = _columns(gt_rows)
    if names is not None and "country" in gt_cols:
        country_ok = torch.zeros(n, dtype=torch.bool)
        for (_, pc), i in zip(names, rows):
            tc = country_code(gt_rows[i]["country"])
            country_ok[i] = tc is not None and country_code(pc) == tc
    if names is not None and "city" in gt_cols:
        gaz = gazetteer if gazetteer is not None else Gazetteer.load()
        city_ok = torch.zeros(n, dtype=torch.bool)
        for (pcity, _), i in zip(names, rows):
            gt = gt_rows[i]
            city_ok[i] = bool(pcity) and gaz.same_city(pcity, gt["city"], country_code(gt.get("country") or ""))
    metric.update(
        torch.from_numpy(pred_lat), torch.from_numpy(pred_lon),
        torch.from_numpy(true_lat), torch.from_numpy(true_lon),
        country_ok=country_ok, city_ok=city_ok,
    )
    res = metric.compute()
    out: dict = {threshold_key(t): float(res[threshold_key(t)]) for t in thresholds_km}
    n_missing = n - len(pred_rows)
    out["median_km"] = float(res["median_km"])
    out["n"] = n
    out["n_unresolved"] = int(res["n_unresolved"]) - n_missing
    out["n_missing"] = n_missing
    out["n_predictions"] = len(pred_rows)
    out["form"] = form
    if country_ok is not None:
        out["country_acc"] = float(res["country_acc"])
    if city_ok is not None:
        out["city_acc"] = float(res["city_acc"])
    out.update(extras)
    return out


def format_table(result: Mapping) -> str:
    """Human-readable summary of :func:`score_predictions`' result."""
    lines = [f"{'metric':<22}{'value':>12}", "-" * 34]
    for k, v in result.items():
        if k.startswith("acc@") or k in ("country_acc", "city_acc"):
            lines.append(f"{k:<22}{100 * v:>11.2f}%")
    lines.append(f"{'median_km':<22}{result['median_km']:>12.1f}")
    for k in ("n", "n_predictions", "n_unresolved", "n_missing", "n_unparsed", "n_city_level", "n_country_level"):
        if k in result:
            lines.append(f"{k:<22}{result[k]:>12d}")
    lines.append(f"{'prediction form':<22}{result['form']:>12}")
    return "\n".join(lines)


def _json_safe(d: Mapping) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m globe.score", description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictions", required=True, help="CSV: IMG_ID + pred_lat,pred_lon | pred_city,pred_country | pred_text")
    parser.add_argument("--ground-truth", required=True, help="CSV with IMG_ID,LAT,LON (IM2GPS3K layout)")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--thresholds", type=float, nargs="+", default=list(DEFAULT_THRESHOLDS_KM), help="km")
    parser.add_argument("--cache-dir", help="gazetteer cache (default $GLOBE_CACHE or ~/.cache/globe)")
    args = parser.parse_args(argv)
    for flag, path in (("--predictions", args.predictions), ("--ground-truth", args.ground_truth)):
        if not Path(path).is_file():
            parser.error(f"{flag}: file not found: {path}")
    try:
        preds, gt = read_csv(args.predictions), read_csv(args.ground_truth)
        needs_gaz = bool(preds) and "pred_lat" not in _columns(preds)
        gaz = Gazetteer.load(args.cache_dir) if needs_gaz else None
        result = score_predictions(preds, gt, gaz, thresholds_km=args.thresholds)
    except (ScoreInputError, csv.Error, UnicodeDecodeError) as e:
        parser.error(str(e))
    print(format_table(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(_json_safe(result), indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
