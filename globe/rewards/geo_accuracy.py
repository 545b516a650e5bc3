"""R_geo: is the predicted (country, city) right?

Paper formula, with ``alpha`` = 0.8 in its code (1.0 for city + country, 0.2 for the country
only, 0 otherwise)::

    R_geo = I[country ok] * (alpha * I[city ok] + (1 - alpha))

The answer's ``country:`` / ``city:`` lines are read with :func:`globe.answer.parse_answer`.

Name matching (``match``):

* ``"gazetteer"`` (default, better than the paper): the project's one geo rule,
  :class:`globe.geo.judge.GeoJudge`, the same decisions as the evaluation's ``country_acc`` /
  ``city_acc`` and ``python -m globe.score``. Countries match when they resolve to the same
  ISO code (aliases, codes, native names, accents and punctuation folded: "USA" = "United
  States" = "US"; a missing or unknown country name takes the country of the geocoded city);
  the city counts only with the right country, when the names fold-equal or share a GeoNames
  place of the true country, alternate names included ("Munich" = "München"). A sample whose
  true country cannot be known (unknown name, no usable coordinates) earns 0.
* ``"paper"``: the paper's test, for reproduction: lower-cased substring either way with a
  length ratio >= ``paper_min_ratio`` (0.7), on the raw strings ("Germany" vs "DE" fails,
  "Munich" vs "München" fails, "York" vs "New York" fails at 4/8 < 0.7).

``mode="distance"`` replaces the indicator formula by a function of d, the geodesic distance
(km) from the prediction to the sample's true coordinates (unresolved prediction or missing
truth: 0), its ``shape``:

* ``"exp"``: ``exp(-d / tau_km)`` (1 at d = 0, 1/2 at d = tau ln 2);
* ``"logistic"``: ``2 / (1 + exp(d / tau_km))`` (1 at d = 0, 1/2 at d = tau ln 3): flatter
  than ``exp`` near the truth, the same exponential tail far from it.

The prediction is the judge's geocode of the predicted names (city, else the country's
capital), or, with ``prefer_coordinates``, the answer's own ``coordinates:`` line when it is
valid (:func:`globe.answer.parse_answer`); the names are its fallback. In ``mode="names"``,
``prefer_coordinates`` lets a coordinates-only answer be judged by the place its point lies
in (:mod:`globe.geo.judge`, rule 10).

Deviations from the paper: samples without true names (IM2GPS3K has coordinates only) get
them from reverse geocoding their coordinates when ``names_from_coordinates`` is on (the city
the point is in; near borders its country can be wrong), instead of scoring 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

from globe.answer import ParsedAnswer, parse_answer
from globe.geo.distance import geodesic_km
from globe.geo.gazetteer import Gazetteer
from globe.geo.judge import GeoJudge, GeoTruth, shared_gazetteer
from globe.rewards.base import CompletionRewardHead, RewardBatch, as_text
from globe.sample import GeoSample

__all__ = ["GeoAccuracyReward", "paper_match", "accuracy_reward_value", "distance_reward_value", "DISTANCE_SHAPES"]

DISTANCE_SHAPES = ("exp", "logistic")


def paper_match(pred: str | None, truth: str | None, min_ratio: float = 0.7) -> bool:
    """The paper's name test: lower-cased substring either way, length ratio >= ``min_ratio``.

    >>> paper_match("Paris", "paris"), paper_match("Munich", "München"), paper_match("York", "New York")
    (True, False, False)
    >>> paper_match("United States", "United States of America")  # 13/24 = 0.54
    False
    """
    if not isinstance(pred, str) or not isinstance(truth, str):
        return False
    p, t = pred.strip().lower(), truth.strip().lower()
    if not p or not t:
        return False
    return (p in t and len(p) / len(t) >= min_ratio) or (t in p and len(t) / len(p) >= min_ratio)


def accuracy_reward_value(country_ok: bool, city_ok: bool, alpha: float) -> float:
    """``I[country] * (alpha * I[city] + (1 - alpha))``.

    >>> accuracy_reward_value(True, True, 0.8), accuracy_reward_value(True, False, 0.8)
    (1.0, 0.19999999999999996)
    >>> accuracy_reward_value(False, True, 0.8)
    0.0
    """
    return float(country_ok) * (alpha * float(city_ok) + (1.0 - alpha))


def distance_reward_value(distance_km: float, tau_km: float, shape: str = "exp") -> float:
    """``exp(-d / tau)`` (``shape="exp"``) or ``2 / (1 + exp(d / tau))`` (``"logistic"``); NaN (unresolved) -> 0.

    >>> round(distance_reward_value(500.0, 500.0), 4), distance_reward_value(float("nan"), 500.0)
    (0.3679, 0.0)
    >>> round(distance_reward_value(500.0, 500.0, "logistic"), 4), distance_reward_value(1e9, 1.0, "logistic")
    (0.5379, 0.0)
    """
    if shape not in DISTANCE_SHAPES:
        raise ValueError(f"shape must be one of {DISTANCE_SHAPES}, got {shape!r}")
    if distance_km is None or math.isnan(distance_km):
        return 0.0
    x = max(distance_km, 0.0) / tau_km
    if shape == "exp":
        return math.exp(-x)
    e = math.exp(-x)  # 2 / (1 + e^x) written with e^-x: no overflow for large d
    return 2.0 * e / (1.0 + e)


class GeoAccuracyReward(CompletionRewardHead):
    """R_geo: country/city correctness of the parsed answer (see the module docstring).

    Args:
        name: key of the head in scores, weights and logs.
        alpha: weight of the city in ``I[country] * (alpha I[city] + 1 - alpha)``; 0.8 is the
            paper's code (country only = 0.2).
        mode: "names" (indicator formula) or "distance" (a function of the distance, ``shape``).
        match: "gazetteer" (codes, aliases, alternate names) or "paper" (substring + ratio).
        tau_km: distance scale of ``mode="distance"`` in km.
        shape: "exp" (``exp(-d / tau_km)``) or "logistic" (``2 / (1 + exp(d / tau_km))``).
        prefer_coordinates: use the answer's valid ``coordinates:`` line as the prediction (the
            geocoded names when it has none); off: the paper's names-only answers.
        paper_min_ratio: length ratio of the paper's substring test.
        require_well_formed: score 0 unless the completion is ``<think>..</think><answer>..</answer>``
            (default: read the answer lines wherever ``parse_answer`` finds them).
        names_from_coordinates: take the true country (when the sample's is empty or unknown)
            and city (when empty) from reverse-geocoding the sample's coordinates.
        gazetteer_cache_dir: where the gazetteer index is cached (default ``$GLOBE_CACHE``
            or ``~/.cache/globe``).
        gazetteer_min_population: GeoNames city set (500, 1000, 5000 or 15000).
    """

    name = "geo"

    def __init__(
        self,
        name: str = "geo",
        alpha: float = 0.8,
        mode: Literal["names", "distance"] = "names",
        match: Literal["gazetteer", "paper"] = "gazetteer",
        tau_km: float = 500.0,
        shape: Literal["exp", "logistic"] = "exp",
        prefer_coordinates: bool = False,
        paper_min_ratio: float = 0.7,
        require_well_formed: bool = False,
        names_from_coordinates: bool = True,
        gazetteer_cache_dir: str | None = None,
        gazetteer_min_population: int = 500,
    ) -> None:
        super().__init__(name=name)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if mode not in ("names", "distance"):
            raise ValueError(f"mode must be 'names' or 'distance', got {mode!r}")
        if match not in ("gazetteer", "paper"):
            raise ValueError(f"match must be 'gazetteer' or 'paper', got {match!r}")
        if tau_km <= 0:
            raise ValueError(f"tau_km must be > 0, got {tau_km}")
        if shape not in DISTANCE_SHAPES:
            raise ValueError(f"shape must be one of {DISTANCE_SHAPES}, got {shape!r}")
        self.alpha = alpha
        self.mode = mode
        self.match = match
        self.tau_km = tau_km
        self.shape = shape
        self.prefer_coordinates = prefer_coordinates
        self.paper_min_ratio = paper_min_ratio
        self.require_well_formed = require_well_formed
        self.names_from_coordinates = names_from_coordinates
        self.gazetteer_cache_dir = gazetteer_cache_dir
        self.gazetteer_min_population = gazetteer_min_population
        self._gazetteer_instance: Gazetteer | None = None

    @property
    def gazetteer(self) -> Gazetteer:
        """Loaded on first use (~1 s from the cache), shared across heads and the policy of one process."""
        if self._gazetteer_instance is None:
            self._gazetteer_instance = shared_gazetteer(self.gazetteer_cache_dir, self.gazetteer_min_population)
        return self._gazetteer_instance

    @gazetteer.setter
    def gazetteer(self, value: Gazetteer) -> None:
        self._gazetteer_instance = value

    @property
    def judge(self) -> GeoJudge:
        """The project's geo rule over this head's gazetteer (truth from coordinates if enabled)."""
        return GeoJudge(self.gazetteer, truth_from_coordinates=self.names_from_coordinates,
                        prefer_coordinates=self.prefer_coordinates)

    @torch.no_grad()
    def score(self, batch: RewardBatch) -> torch.Tensor:  # [N]
        """All completions at once: each distinct answer geocoded and each truth reverse-geocoded once."""
        return self._as_scores(self.score_many([as_text(c) for c in batch.completions], batch.samples))

    def score_one(self, completion: str, sample: GeoSample) -> float:
        return self.score_many([completion], [sample])[0]

    def score_many(self, completions: Sequence[str], samples: Sequence[GeoSample]) -> list[float]:
        """R_geo of each completion against its sample (module docstring)."""
        parsed = [parse_answer(c) for c in completions]
        keep = [i for i, p in enumerate(parsed) if p.well_formed or not self.require_well_formed]
        out = [0.0] * len(parsed)
        if not keep:
            return out
        answers = [(parsed[i].country, parsed[i].city) for i in keep]
        points = [parsed[i].coordinates for i in keep]
        kept_samples = [samples[i] for i in keep]
        if self.mode == "distance":
            values = self._distance_scores(answers, points, kept_samples)
        elif self.match == "paper":
            values = [self._paper_score(parsed[i], samples[i]) for i in keep]
        else:
            verdicts = self.judge.judge_many(answers, [GeoTruth.of(s) for s in kept_samples], points)
            values = [
                accuracy_reward_value(v.country_correct is True, v.city_correct is True, self.alpha) for v in verdicts
            ]
        for i, v in zip(keep, values):
            out[i] = v
        return out

    def _distance_scores(
        self, answers: list[tuple], points: list[tuple[float, float] | None], samples: Sequence[GeoSample]
    ) -> list[float]:
        judge = self.judge
        use = judge.points(points, len(points))  # the valid points, when coordinates are preferred
        todo = [i for i, p in enumerate(use) if p is None]  # geocode only the answers placed by names
        places = dict(zip(todo, judge.resolve_many([answers[i] for i in todo])))
        out = []
        for i, s in enumerate(samples):
            point = use[i] if use[i] is not None else (places[i].lat, places[i].lon) if places.get(i) is not None else None
            if point is None or not _finite(s.lat, s.lon):
                out.append(0.0)
            else:
                out.append(distance_reward_value(geodesic_km(point[0], point[1], s.lat, s.lon), self.tau_km, self.shape))
        return out

    def _truth_names(self, sample: GeoSample) -> tuple[str, str]:
        """The paper test's true names: the sample's, else (``names_from_coordinates``) reverse-geocoded."""
        country, city = sample.country or "", sample.city or ""
        if (not country or not city) and self.names_from_coordinates and _finite(sample.lat, sample.lon):
            place = self.gazetteer.reverse(sample.lat, sample.lon)
            country, city = country or place.country_code, city or place.name
        return country, city

    def _paper_score(self, parsed: ParsedAnswer, sample: GeoSample) -> float:
        if not parsed.country:
            return 0.0
        true_country, true_city = self._truth_names(sample)
        country_ok = paper_match(parsed.country, true_country, self.paper_min_ratio)
        city_ok = country_ok and paper_match(parsed.city, true_city, self.paper_min_ratio)
        return accuracy_reward_value(country_ok, city_ok, self.alpha)


def _finite(*values: float) -> bool:
    try:
        return all(math.isfinite(float(v)) for v in values)
    except (TypeError, ValueError):
        return False
