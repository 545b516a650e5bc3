"""Score geo-localisation predictions against IM2GPS3K-style ground truth.

    python -m globe.score --predictions P.csv --ground-truth G.csv [--out results.json] [--prefer-coordinates]

Ground truth: a CSV with ``IMG_ID,LAT,LON`` (other columns ignored; optional ``country`` /
``city`` columns enable ``country_acc`` / ``city_acc`` for predictions that carry names).
Predictions: ``IMG_ID`` plus one of, checked in this order,

* ``pred_lat,pred_lon`` — coordinates: plain ASCII decimals (:func:`parse_decimal`) with lat in
  [-90, 90] and lon in [-180, 180]; blank -> unresolved; anything else (``1_9.07``, other
  scripts' digits, ``nan``, lon 300) -> unresolved and counted in ``n_invalid_coords``;
* ``pred_city,pred_country`` — names, geocoded offline (:class:`globe.geo.gazetteer.Gazetteer`,
  city -> country fallback);
* ``pred_text`` — raw model output, parsed by :func:`globe.answer.parse_answer`, then geocoded.

Country and city accuracy: the names of a prediction (``pred_country,pred_city``, else the
parsed ``pred_text``, also beside coordinates, as in the policy's predictions CSV) are judged by
:class:`globe.geo.judge.GeoJudge`, the rule the policy's ``country_acc`` / ``city_acc`` use:
every ground-truth row whose country the judge knows counts (a missing prediction as a miss),
rows it cannot judge (no or unknown true country, no true city) are left out of that
accuracy; ``n_country_judged`` / ``n_city_judged`` are the denominators.

``--prefer-coordinates`` (``prefer_coordinates=True``): where a prediction has ``pred_text`` and
the text's ``coordinates:`` line is valid (:func:`globe.answer.parse_answer`), the distance is
measured from that point instead of the prediction's ``pred_lat,pred_lon`` or geocoded names
(``n_from_coordinates`` rows; ``n_invalid_answer_coords`` counts texts whose coordinates were
given but unreadable or out of range: they fall back to the names); names missing from such an
answer are judged from the place its point lies in, as the judge does with that option
(:mod:`globe.geo.judge`, rules 9-10). ``n_city_level`` / ``n_country_level`` then count the
rows placed by their names only.

Pipeline: parse -> geocode (per distinct text / name pair, memoised) -> one vectorised
haversine over all rows -> :class:`globe.metrics.GeoAccuracy`. Nothing is dropped: a
prediction that cannot be parsed or geocoded is ``unresolved``, a ground-truth ID without a
prediction is ``missing``; both are misses at every threshold and +inf in the median.
``n`` counts every ground-truth row, ``n_unresolved`` only the predictions present but
unresolved (missing ones are in ``n_missing``). In the JSON output an infinite median is
written as ``null``. Accuracies are fractions in [0, 1].

Bad input is an error that names it (:class:`ScoreInputError`, exit status 2 from the command
line), never a traceback or a silent skip: a CSV row with more or fewer fields than its header
(by file and line), an undecodable file, ground-truth coordinates that are not ASCII decimals in
range (by IMG_ID), thresholds that are not positive and finite (an infinite threshold would
count the +inf distances of misses as hits).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from globe.answer import ParsedAnswer, parse_answer
from globe.geo.gazetteer import Gazetteer
from globe.geo.judge import GeoJudge, GeoTruth, shared_gazetteer
from globe.metrics import GeoAccuracy, threshold_key

__all__ = ["ScoreInputError", "score_predictions", "read_csv", "parse_decimal", "check_thresholds", "needs_gazetteer", "format_table", "main"]

DEFAULT_THRESHOLDS_KM = (1, 25, 200, 750, 2500)


class ScoreInputError(ValueError):
    """Bad input files (missing columns, unknown or duplicate IDs)."""


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts (UTF-8, BOM tolerated; blank lines skipped).

    A row whose field count differs from the header's, a malformed row or bytes that are not
    UTF-8 raise :class:`ScoreInputError` naming the file and the line (the line a row ends on).
    """
    name = Path(path).name
    rows: list[dict[str, str]] = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header is None:
                return rows
            for fields in reader:
                if not fields:
                    continue
                if len(fields) != len(header):
                    raise ScoreInputError(
                        f"{name}: line {reader.line_num}: {len(fields)} fields, the header has {len(header)}"
                    )
                rows.append(dict(zip(header, fields)))
        except csv.Error as e:
            raise ScoreInputError(f"{name}: line {reader.line_num}: {e}") from None
        except UnicodeDecodeError as e:
            raise ScoreInputError(f"{name}: line {reader.line_num + 1}: not UTF-8 text ({e.reason})") from None
    return rows


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


# ASCII digits only: float() also reads "1_9.07", other scripts' digits, "nan", "inf"
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_ASCII_SPACE = " \t\r\n"


def parse_decimal(v: str | None) -> float:
    """A plain ASCII decimal (optional sign, digits, point, exponent; surrounding ASCII spaces
    allowed) as a float; NaN for anything else.

    >>> parse_decimal(" -33.87 "), parse_decimal("1_9.07"), parse_decimal("٣٥.٦")
    (-33.87, nan, nan)
    """
    if not isinstance(v, str):
        return math.nan
    v = v.strip(_ASCII_SPACE)
    if len(v) > 64 or _DECIMAL.fullmatch(v) is None:  # 64: far more digits than a float holds
        return math.nan
    x = float(v)
    return x if math.isfinite(x) else math.nan  # "1e999"


def _valid_coords(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """True where lat is in [-90, 90] and lon in [-180, 180] (False for NaN)."""
    return (np.abs(lat) <= 90) & (np.abs(lon) <= 180)


def _shown(ids: Sequence[str]) -> str:
    return ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")


def check_thresholds(thresholds_km: Sequence[float]) -> tuple[float, ...]:
    """The thresholds as floats; :class:`ScoreInputError` unless each is positive and finite
    (with an infinite one, the +inf distance of a miss would count as a hit)."""
    out = tuple(float(t) for t in thresholds_km)
    bad = [t for t in out if not (math.isfinite(t) and t > 0)]
    if not out or bad:
        raise ScoreInputError(f"distance thresholds must be positive finite km values, got {list(out)}")
    return out


def _threshold_arg(text: str) -> float:
    t = parse_decimal(text)
    if not (math.isfinite(t) and t > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive finite distance in km")
    return t


def _parsed_texts(pred_rows: Sequence[Mapping[str, str]], cols: set[str]) -> list[ParsedAnswer] | None:
    """Each prediction's ``pred_text`` parsed (memoised per distinct text); None without that column."""
    if "pred_text" not in cols:
        return None
    memo: dict[str, ParsedAnswer] = {}
    out = []
    for r in pred_rows:
        t = r.get("pred_text") or ""
        if t not in memo:
            memo[t] = parse_answer(t)
        out.append(memo[t])
    return out


def _prediction_names(
    pred_rows: Sequence[Mapping[str, str]], cols: set[str], parsed: list[ParsedAnswer] | None
) -> list[tuple[str | None, str | None]] | None:
    """The (country, city) each prediction names: from ``pred_country,pred_city`` when present,
    else parsed from ``pred_text``; None when the predictions carry no names (coordinates only)."""
    if {"pred_city", "pred_country"} <= cols:
        return [((r.get("pred_country") or None), (r.get("pred_city") or None)) for r in pred_rows]
    if parsed is None:
        return None
    return [(p.country, p.city) for p in parsed]


def _decisions(values: Sequence[bool | None]) -> torch.Tensor:
    """The judge's decisions that were made (None: not judged), as a bool tensor."""
    return torch.tensor([bool(v) for v in values if v is not None], dtype=torch.bool)


def needs_gazetteer(pred_cols: set[str], gt_cols: set[str]) -> bool:
    """Whether scoring these columns geocodes names: name or text predictions, or coordinates
    with names beside them judged against ground-truth ``country`` / ``city``."""
    if not pred_cols:
        return False
    names = {"pred_city", "pred_country"} <= pred_cols or "pred_text" in pred_cols
    return _prediction_form(pred_cols) != "latlon" or (names and bool({"country", "city"} & gt_cols))


def score_predictions(
    pred_rows: Iterable[Mapping[str, str]],
    gt_rows: Iterable[Mapping[str, str]],
    gazetteer: Gazetteer | None = None,
    thresholds_km: Sequence[float] = DEFAULT_THRESHOLDS_KM,
    prefer_coordinates: bool = False,
) -> dict:
    """Score predictions (rows as dicts of strings) against ground truth; see the module doc.

    The gazetteer (the process's shared one if None) is only needed for names: name or text
    predictions, or names beside coordinates when the ground truth has ``country`` / ``city``.
    Returns ``acc@{t}km`` for each threshold, ``median_km``, ``n``, ``n_unresolved``,
    ``n_missing``, ``n_predictions``, ``form``, for coordinates ``n_invalid_coords``, for names ``n_city_level`` /
    ``n_country_level`` (and ``country_acc`` / ``city_acc`` with ``n_country_judged`` /
    ``n_city_judged`` when the predictions carry names and the ground truth has ``country`` /
    ``city`` columns); with ``prefer_coordinates``, ``n_from_coordinates`` and
    ``n_invalid_answer_coords`` (the module doc).
    """
    thresholds_km = check_thresholds(thresholds_km)
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
    true_lat = np.array([parse_decimal(r["LAT"]) for r in gt_rows])
    true_lon = np.array([parse_decimal(r["LON"]) for r in gt_rows])
    nonnum = [ids[i] for i in np.flatnonzero(~(np.isfinite(true_lat) & np.isfinite(true_lon)))]
    if nonnum:
        raise ScoreInputError(f"ground truth has {len(nonnum)} row(s) with non-numeric LAT/LON: {_shown(nonnum)}")
    outside = [ids[i] for i in np.flatnonzero(~_valid_coords(true_lat, true_lon))]
    if outside:
        raise ScoreInputError(
            f"ground truth has {len(outside)} row(s) with LAT outside [-90, 90] or LON outside [-180, 180]: {_shown(outside)}"
        )

    cols = _columns(pred_rows)
    if pred_rows and "IMG_ID" not in cols:
        raise ScoreInputError(f"predictions lack the IMG_ID column; got columns {sorted(cols)}")
    form = _prediction_form(cols) if pred_rows else "latlon"
    pred_ids = [r["IMG_ID"] for r in pred_rows]
    unknown = [k for k in pred_ids if k not in pos]
    if unknown:
        raise ScoreInputError(f"{len(unknown)} prediction IMG_ID(s) not in the ground truth: {_shown(unknown)}")
    if len(set(pred_ids)) != len(pred_ids):
        raise ScoreInputError("predictions have duplicate IMG_ID values")

    rows = np.array([pos[k] for k in pred_ids], dtype=np.int64)  # gt row of each prediction
    pred_lat = np.full(n, np.nan)
    pred_lon = np.full(n, np.nan)
    extras: dict[str, float] = {}
    parsed = _parsed_texts(pred_rows, cols)
    names = _prediction_names(pred_rows, cols, parsed)  # (country, city) per prediction, or None
    # the answers' own points (valid only), read with --prefer-coordinates
    points = [p.coordinates for p in parsed] if prefer_coordinates and parsed is not None else [None] * len(pred_rows)
    use_point = np.array([p is not None for p in points], dtype=bool)
    gt_cols = _columns(gt_rows)
    judged = names is not None and bool({"country", "city"} & gt_cols)
    judge = None
    if form != "latlon" or judged:
        judge = GeoJudge(gazetteer if gazetteer is not None else shared_gazetteer(), prefer_coordinates=prefer_coordinates)
    if form == "latlon":
        la = np.array([parse_decimal(r.get("pred_lat")) for r in pred_rows])
        lo = np.array([parse_decimal(r.get("pred_lon")) for r in pred_rows])
        blank = np.array([not (r.get("pred_lat") or "").strip() and not (r.get("pred_lon") or "").strip() for r in pred_rows], dtype=bool)
        bad = ~_valid_coords(la, lo)
        la[bad], lo[bad] = np.nan, np.nan
        extras["n_invalid_coords"] = int((bad & ~blank).sum())
    else:
        places = judge.resolve_many(names)
        la = np.array([p.lat if p else np.nan for p in places], dtype=np.float64)
        lo = np.array([p.lon if p else np.nan for p in places], dtype=np.float64)
        by_names = [p for p, point in zip(places, use_point) if not point]
        extras["n_city_level"] = sum(1 for p in by_names if p and p.level == "city")
        extras["n_country_level"] = sum(1 for p in by_names if p and p.level == "country")
        if form == "text":
            extras["n_unparsed"] = sum(1 for (k, c), point in zip(names, use_point) if c is None and k is None and not point)
    if use_point.any():
        la[use_point] = [p[0] for p in points if p is not None]
        lo[use_point] = [p[1] for p in points if p is not None]
    if len(pred_rows):
        pred_lat[rows], pred_lon[rows] = la, lo
    if prefer_coordinates:
        extras["n_from_coordinates"] = int(use_point.sum())
        extras["n_invalid_answer_coords"] = sum(1 for p in parsed or [] if p.coordinates_invalid)

    metric = GeoAccuracy(thresholds_km)
    country_ok = city_ok = None
    if judged:
        # every ground-truth row is judged, a missing prediction as an empty answer; rows the
        # judge cannot judge (no known true country, no true city) are left out, as in evaluation
        answers: list[tuple[str | None, str | None]] = [(None, None)] * n
        answer_points: list[tuple[float, float] | None] = [None] * n
        for name_pair, point, i in zip(names, points, rows):
            answers[i], answer_points[i] = name_pair, point
        truths = [
            GeoTruth(r.get("country") or "", r.get("city") or "", float(la), float(lo))
            for r, la, lo in zip(gt_rows, true_lat, true_lon)
        ]
        verdicts = judge.judge_many(answers, truths, answer_points)
        if "country" in gt_cols:
            country_ok = _decisions([v.country_correct for v in verdicts])
            extras["n_country_judged"] = len(country_ok)
        if "city" in gt_cols:
            city_ok = _decisions([v.city_correct for v in verdicts])
            extras["n_city_judged"] = len(city_ok)
    metric.update(
        torch.from_numpy(pred_lat), torch.from_numpy(pred_lon),
        torch.from_numpy(true_lat), torch.from_numpy(true_lon),
        country_ok=country_ok if country_ok is not None and len(country_ok) else None,
        city_ok=city_ok if city_ok is not None and len(city_ok) else None,
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
        out["country_acc"] = float(res["country_acc"])  # NaN when no row could be judged
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
    for k in (
        "n", "n_predictions", "n_unresolved", "n_missing", "n_invalid_coords", "n_unparsed", "n_city_level",
        "n_country_level", "n_from_coordinates", "n_invalid_answer_coords", "n_country_judged", "n_city_judged",
    ):
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
    parser.add_argument(
        "--thresholds", type=_threshold_arg, nargs="+", default=list(DEFAULT_THRESHOLDS_KM), help="km, positive and finite"
    )
    parser.add_argument("--cache-dir", help="gazetteer cache (default $GLOBE_CACHE or ~/.cache/globe)")
    parser.add_argument(
        "--prefer-coordinates", action="store_true",
        help="measure the distance from the coordinates: line of pred_text when it is valid (else the names / pred_lat,pred_lon)",
    )
    args = parser.parse_args(argv)
    for flag, path in (("--predictions", args.predictions), ("--ground-truth", args.ground_truth)):
        if not Path(path).is_file():
            parser.error(f"{flag}: file not found: {path}")
    try:
        preds, gt = read_csv(args.predictions), read_csv(args.ground_truth)
        gaz = shared_gazetteer(args.cache_dir) if needs_gazetteer(_columns(preds), _columns(gt)) else None
        result = score_predictions(preds, gt, gaz, thresholds_km=args.thresholds, prefer_coordinates=args.prefer_coordinates)
    except ScoreInputError as e:
        parser.error(str(e))
    print(format_table(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(_json_safe(result), indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
