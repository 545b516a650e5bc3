"""From generated text to a scored geographic prediction: parse -> judge (geocode, compare).

With ``prefer_coordinates`` (an argument of :func:`evaluate_completions`, or the judge's own
option) a completion's ``coordinates:`` line, when valid, is the prediction's point
(``pred_level="coordinates"``) and the geocoded names are its fallback; country and city are
still judged from the names (:mod:`globe.geo.judge`, rules 9-10).

Used by the policy's validation and test steps (and written out as the predictions CSV that
``python -m globe.score`` reads back and scores with the same judge). The names are judged by
:class:`globe.geo.judge.GeoJudge`, the project's one rule for "country / city correct". A
completion that cannot be parsed, or whose names the gazetteer cannot resolve, gets NaN
coordinates: it counts as a miss at every threshold, never as a dropped row.

With k samples per image (``eval_group_size``), ``first_samples`` keeps the first of each image's
samples (the metrics reported as with one sample) and ``best_of_k`` the one nearest to the truth
(an oracle pick, pass@k-style: how good the policy's best guess among k is).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from globe.answer import parse_answer
from globe.geo.distance import great_circle_km
from globe.geo.gazetteer import Gazetteer
from globe.geo.judge import GeoJudge, GeoTruth
from globe.rollout.base import Completions
from globe.sample import GeoSample

PREDICTION_COLUMNS = (
    "IMG_ID", "pred_country", "pred_city", "pred_lat", "pred_lon", "pred_level",
    "LAT", "LON", "country", "city", "country_ok", "city_ok", "pred_text",
)


@dataclass
class Prediction:
    """One evaluated completion; field names are the predictions CSV's columns."""

    IMG_ID: str
    pred_country: str
    pred_city: str
    pred_lat: float
    pred_lon: float
    pred_level: str  # "city", "country" (geocoded names), "coordinates" (the answer's or a retrieval's), "" (unresolved)
    LAT: float
    LON: float
    country: str
    city: str
    country_ok: float  # 1 / 0, NaN when the ground truth has no country name
    city_ok: float  # 1 / 0, NaN when the ground truth has no city name
    pred_text: str

    def row(self) -> dict:
        """The CSV row: every text field encodable as UTF-8 (a lone surrogate, e.g. from a tar
        member name decoded with ``surrogateescape``, becomes its ``\\udcXX`` escape)."""
        return {k: _utf8_safe(v) if isinstance(v, str) else v for k, v in asdict(self).items()}


def _utf8_safe(text: str) -> str:
    """``text`` unchanged if it encodes as UTF-8, else with lone surrogates backslash-escaped."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def evaluate_completions(
    gazetteer: Gazetteer | GeoJudge,
    samples: Sequence[GeoSample],
    texts: Sequence[str],
    prefer_coordinates: bool | None = None,
) -> list[Prediction]:
    """Parse each completion and judge its (country, city) against the sample with
    :class:`globe.geo.judge.GeoJudge` (given, or built on ``gazetteer`` with names judged only
    against named truth): the geocoded place, and ``country_ok`` / ``city_ok`` as 1 / 0, NaN
    where the judge cannot judge (no known true country, no true city).

    ``prefer_coordinates``: use each completion's valid ``coordinates:`` line as its point (the
    geocoded names otherwise); None keeps the given judge's setting (off for a gazetteer)."""
    judge = gazetteer if isinstance(gazetteer, GeoJudge) else GeoJudge(gazetteer)
    if prefer_coordinates is not None and bool(prefer_coordinates) != judge.prefer_coordinates:
        judge = GeoJudge(judge.gazetteer, judge.truth_from_coordinates, bool(prefer_coordinates))
    parsed = [parse_answer(t) for t in texts]
    verdicts = judge.judge_many(
        [(p.country, p.city) for p in parsed], [GeoTruth.of(s) for s in samples], [p.coordinates for p in parsed]
    )
    out = []
    for sample, text, answer, verdict in zip(samples, texts, parsed, verdicts):
        out.append(
            Prediction(
                IMG_ID=sample.extra.get("img_id", sample.key),  # the CSV's own id (keys are sanitised)
                pred_country=answer.country or "",
                pred_city=answer.city or "",
                pred_lat=verdict.pred_lat,
                pred_lon=verdict.pred_lon,
                pred_level=verdict.level,
                LAT=float(sample.lat),
                LON=float(sample.lon),
                country=sample.country or "",
                city=sample.city or "",
                country_ok=_flag(verdict.country_correct),
                city_ok=_flag(verdict.city_correct),
                pred_text=text,
            )
        )
    return out


def _flag(decision: bool | None) -> float:
    """A judge's decision as a CSV / metric value: 1.0, 0.0, or NaN when not judged."""
    return math.nan if decision is None else float(decision)


def _judged(values: Sequence[float]) -> torch.Tensor | None:
    """The name checks that were made (NaN: none could be), as booleans; None if there are none."""
    kept = [v for v in values if not math.isnan(v)]
    return torch.tensor(kept, dtype=torch.float64).bool() if kept else None


def metric_inputs(predictions: Sequence[Prediction]) -> dict[str, torch.Tensor | None]:
    """Keyword arguments for ``GeoAccuracy.update``.

    Distances: every prediction (an unresolved one is NaN, a miss everywhere). Name checks: a
    sample whose ``country_ok`` / ``city_ok`` is NaN (its true country does not resolve, or the
    truth has no city name) cannot be judged, so it alone is left out of ``country_acc`` /
    ``city_acc`` (their denominators count judged samples); the rest of the batch is kept.
    ``None`` when no sample of the batch can be judged.
    """
    t = lambda xs: torch.tensor(xs, dtype=torch.float64)  # noqa: E731
    return {
        "pred_lat": t([p.pred_lat for p in predictions]),
        "pred_lon": t([p.pred_lon for p in predictions]),
        "true_lat": t([p.LAT for p in predictions]),
        "true_lon": t([p.LON for p in predictions]),
        "country_ok": _judged([p.country_ok for p in predictions]),
        "city_ok": _judged([p.city_ok for p in predictions]),
    }


def first_samples(completions: Completions, k: int) -> Completions:
    """Sample 0 of each image from ``B*k`` completions (row ``b * k + j`` is sample j of image b)."""
    return Completions(
        ids=completions.ids[::k], mask=completions.mask[::k], logprobs=completions.logprobs[::k],
        truncated=completions.truncated[::k], texts=list(completions.texts[::k]),
    )


def best_of_k(predictions: Sequence[Prediction], k: int) -> list[Prediction]:
    """For each image, the one of its k predictions (rows ``b * k .. b * k + k - 1``) nearest to the
    truth by great-circle distance; an unresolved prediction (NaN) is farther than any, ties go to
    the earlier sample, so an image none of whose samples resolves keeps its first (a miss).

    >>> def p(lat):
    ...     return Prediction("a", "", "", lat, 0.0, "", 0.0, 0.0, "", "", math.nan, math.nan, "")
    >>> [x.pred_lat for x in best_of_k([p(math.nan), p(10.0), p(1.0), p(5.0), p(math.nan), p(math.nan)], 3)]
    [1.0, 5.0]
    """
    if k < 1 or len(predictions) % k:
        raise ValueError(f"best_of_k needs a multiple of k={k} predictions, got {len(predictions)}")
    t = lambda xs: torch.tensor(xs, dtype=torch.float64)  # noqa: E731
    d = great_circle_km(t([p.pred_lat for p in predictions]), t([p.pred_lon for p in predictions]),
                        t([p.LAT for p in predictions]), t([p.LON for p in predictions]))
    d = torch.nan_to_num(d, nan=math.inf).view(-1, k)  # [B, k]
    best = d.argmin(dim=1)  # first of equal minima
    return [predictions[b * k + int(j)] for b, j in enumerate(best)]
