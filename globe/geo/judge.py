"""The geo judge: the one rule that decides whether a predicted country and city are right.

The policy's validation and test metrics (:mod:`globe.evaluation`), ``python -m globe.score``
and the R_geo reward head (:mod:`globe.rewards.geo_accuracy`) all call :class:`GeoJudge`, so
``country_acc`` logged during training, the scorer's figure on the same predictions and the
reward's tiers are the same decisions.

Input: the answer's names as the model wrote them (``parse_answer``'s country and city;
``None`` or ``""`` when missing) and the truth (:class:`GeoTruth`: country and city names
where known, coordinates). Output: a :class:`GeoVerdict`. The rule:

1. **Names in.** A name that is not a string counts as empty; a string is cut to its first
   :data:`MAX_NAME_CHARS` (256) characters (what ``parse_answer`` keeps of a value; no place
   name is longer) and stripped. Every later step works on strings that short, so the work
   per answer is bounded whatever the model or a CSV file wrote.
2. **Predicted place**: :meth:`Gazetteer.geocode(city, country) <globe.geo.gazetteer.Gazetteer.geocode>`
   (its fallback chain: the city in the named country, else that country's capital, else the
   best city of that name anywhere when the country is unknown or missing), or none.
3. **Predicted country**: the ISO code of the country name when it resolves (aliases, codes,
   native names; "Bavaria, Germany" by its comma parts), else the country of the geocoded
   place ("country: Europe, city: Munich" is DE; so is a city with no country line), else none.
   With a recognised country the geocoder only looks for the city inside it, so the two never
   disagree.
4. **True country**: the ISO code of the truth's country name; when that is empty or unknown
   and ``truth_from_coordinates`` is on (the reward, for coordinates-only data such as
   IM2GPS3K), the country of the city the true coordinates reverse-geocode to; else none.
5. ``country_correct``: predicted code == true code; ``None`` (*not judged*) when there is no
   true code. Not judged means left out of ``country_acc``'s denominator (a labelling gap, not
   the model's miss), and no country or city credit in the reward. An answer with no
   predicted country (empty, unknown names, unparseable) is judged wrong.
6. **True city**: the truth's city name; when empty and ``truth_from_coordinates`` is on, the
   reverse-geocoded city if it lies in the true country; else none.
7. ``city_correct``: ``None`` when the country is not judged or there is no true city; else
   True only if the country is correct *and* the predicted city names the true one: the names
   are equal after :func:`globe.geo.text.fold`, or both name one GeoNames place of the true
   country, alternate names included (:meth:`Gazetteer.same_city`: "Munich" = "München").
   A right city name in the wrong country is wrong ("Paris" with "France" for Paris, Texas).
8. ``distance_km``: great-circle (haversine) km from the predicted place to the true
   coordinates, as :class:`globe.metrics.GeoAccuracy` measures it; NaN when the answer does
   not resolve or the truth has no finite coordinates.

**Coordinates** (``prefer_coordinates=True``; off by default, the paper's answers have none).
``judge_many(answers, truths, coordinates=...)`` may give each answer's ``(lat, lon)`` (the
``coordinates:`` line :func:`globe.answer.parse_answer` reads; None when absent or invalid).
With the option on and a valid point (finite, ``|lat| <= 90``, ``|lon| <= 180``):

9. ``distance_km`` is measured from the answer's point, not from the geocoded names (whose
   place is still ``place``); ``verdict.coordinates`` holds the point. Without a valid point
   the names' place is used, as above.
10. Names stay the names' decision (steps 2-7). Only a name the answer does not give is taken
    from the place its point reverse-geocodes to (``Gazetteer.reverse``, ``rule="city"``,
    ``verdict.coordinate_place``): the predicted country when neither the country nor the city
    name yields one (a coordinates-only answer is judged by the country its point lies in), and
    the predicted city when the answer names no city and that place lies in the predicted
    country. A point never overrides a name the answer wrote: "country: France" with a point in
    Spain is judged France, with the distance from the point.

Nothing here raises on hostile strings (huge, control characters, lone surrogates, other
scripts): they are cut, folded and looked up like any name, and resolve or not.

The R_geo tiers from a verdict: ``I[country_correct] * (alpha I[city_correct] + 1 - alpha)``
(:func:`globe.rewards.geo_accuracy.accuracy_reward_value`), a ``None`` counting as False.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from globe.answer import valid_coordinates
from globe.geo.distance import great_circle_km
# the gazetteer's own reading of a country string: the judge and the geocoder never disagree on it
from globe.geo.gazetteer import Gazetteer, Place, _country_of

__all__ = [
    "MAX_NAME_CHARS", "GeoTruth", "GeoVerdict", "GeoJudge", "clean_name", "predicted_country",
    "judge_country", "judge_city", "shared_gazetteer",
]

MAX_NAME_CHARS = 256  # = globe.answer.MAX_VALUE_CHARS: a place name is short


def shared_gazetteer(cache_dir: str | Path | None = None, min_population: int = 500) -> Gazetteer:
    """One gazetteer per (cache directory, city set) per process, shared by the policy's
    evaluation, the scorer and every reward head that needs one (~0.5 s and ~100 MB each).

    >>> shared_gazetteer() is shared_gazetteer(None, 500) is shared_gazetteer(min_population=500)
    True
    """
    return _load_shared(None if cache_dir is None else str(cache_dir), int(min_population))


@lru_cache(maxsize=4)
def _load_shared(cache_dir: str | None, min_population: int) -> Gazetteer:  # one key per call, however spelt
    return Gazetteer.load(cache_dir, min_population=min_population)


def clean_name(value: object) -> str:
    """A name as the judge reads it: non-strings are empty; cut to ``MAX_NAME_CHARS``, stripped.

    >>> clean_name("  Paris "), clean_name(None), len(clean_name("x" * 10_000))
    ('Paris', '', 256)
    """
    return value[:MAX_NAME_CHARS].strip() if isinstance(value, str) else ""


def predicted_country(named_code: str | None, place: Place | None) -> str | None:
    """The predicted country code: the named country's when it resolved, else the geocoded place's.

    >>> p = Place("Munich", "DE", "Germany", 48.1, 11.6, 1_260_391, "city")
    >>> predicted_country("AT", p), predicted_country(None, p), predicted_country(None, None)
    ('AT', 'DE', None)
    """
    if named_code:
        return named_code
    return place.country_code if place is not None else None


def judge_country(pred_code: str | None, true_code: str | None) -> bool | None:
    """Same ISO code; ``None`` when the truth has none (not judged), False when the answer has none.

    >>> judge_country("FR", "FR"), judge_country(None, "FR"), judge_country("FR", None)
    (True, False, None)
    """
    if true_code is None:
        return None
    return pred_code is not None and pred_code == true_code


def judge_city(
    country_correct: bool | None, pred_city: str, true_city: str, same_city: Callable[[str, str], bool]
) -> bool | None:
    """``None`` when the country is not judged or there is no true city; else the country must be
    right and ``same_city(pred, true)`` hold (``same_city`` is called only then).

    >>> eq = lambda a, b: a.lower() == b.lower()
    >>> judge_city(True, "paris", "Paris", eq), judge_city(False, "Paris", "Paris", eq)
    (True, False)
    >>> judge_city(True, "", "Paris", eq), judge_city(True, "Paris", "", eq), judge_city(None, "Paris", "Paris", eq)
    (False, None, None)
    """
    if country_correct is None or not true_city:
        return None
    return bool(country_correct and pred_city and same_city(pred_city, true_city))


@dataclass(frozen=True)
class GeoTruth:
    """What an answer is judged against: names where known ("" otherwise), coordinates (NaN if unknown)."""

    country: str = ""
    city: str = ""
    lat: float = math.nan
    lon: float = math.nan

    @classmethod
    def of(cls, sample) -> "GeoTruth":
        """The truth of a :class:`globe.sample.GeoSample` (anything with country, city, lat, lon)."""
        return cls(sample.country or "", sample.city or "", _as_float(sample.lat), _as_float(sample.lon))


@dataclass(frozen=True)
class GeoVerdict:
    """The judge's decision on one answer (see the module docstring for the rule).

    Attributes:
        place: the geocoded prediction (city or country level), None when it does not resolve.
        pred_country: ISO code of the predicted country, None when the answer has none.
        true_country: ISO code of the true country, None when the truth has none.
        true_city: the city name the answer was judged against ("" when none).
        country_correct: None when not judged (no true country).
        city_correct: None when not judged (country not judged, or no true city).
        distance_km: haversine km from the prediction (``coordinates`` when set, else ``place``)
            to the truth, NaN when either is unknown.
        coordinates: the answer's ``(lat, lon)`` when the distance was measured from them
            (``prefer_coordinates`` and a valid point), else None.
        coordinate_place: the place the answer's coordinates reverse-geocode to, looked up when
            the answer lacks a name (module docstring, 10; a name is taken from it only when it
            fits), else None.
    """

    place: Place | None
    pred_country: str | None
    true_country: str | None
    true_city: str
    country_correct: bool | None
    city_correct: bool | None
    distance_km: float
    coordinates: tuple[float, float] | None = None
    coordinate_place: Place | None = None

    @property
    def pred_lat(self) -> float:
        if self.coordinates is not None:
            return self.coordinates[0]
        return self.place.lat if self.place is not None else math.nan

    @property
    def pred_lon(self) -> float:
        if self.coordinates is not None:
            return self.coordinates[1]
        return self.place.lon if self.place is not None else math.nan

    @property
    def level(self) -> str:
        """What the prediction's point is: ``"coordinates"``, the place's ``"city"`` / ``"country"``, or ``""``."""
        if self.coordinates is not None:
            return "coordinates"
        return self.place.level if self.place is not None else ""


class GeoJudge:
    """The one geo rule over one gazetteer (see the module docstring).

    Args:
        gazetteer: the geocoder of the predicted names and, if needed, of the true coordinates.
        truth_from_coordinates: when the truth has no (known) country or no city name, take them
            from reverse-geocoding its coordinates (the reward's ``names_from_coordinates``);
            off for the reported metrics, which judge names only against named truth.
        prefer_coordinates: measure the distance from the answer's coordinates when they are
            given and valid, and take missing names from them (module docstring, 9-10); off:
            coordinates passed to :meth:`judge_many` are ignored (the paper's rule).
    """

    def __init__(self, gazetteer: Gazetteer, truth_from_coordinates: bool = False, prefer_coordinates: bool = False) -> None:
        self.gazetteer = gazetteer
        self.truth_from_coordinates = truth_from_coordinates
        self.prefer_coordinates = prefer_coordinates

    def country_code(self, name: object) -> str | None:
        """ISO code of a country name as the judge reads it (None if it does not resolve)."""
        return _country_of(clean_name(name)) or None

    def resolve_many(self, answers: Sequence[tuple[object, object]]) -> list[Place | None]:
        """The geocoded place of each ``(country, city)`` answer (repeated answers resolved once)."""
        cleaned = [(clean_name(city) or None, clean_name(country) or None) for country, city in answers]
        return self.gazetteer.geocode_many(cleaned)

    def judge(self, country: object, city: object, truth: GeoTruth, coordinates: object = None) -> GeoVerdict:
        """The verdict on one answer (``coordinates``: its ``(lat, lon)``, used if ``prefer_coordinates``)."""
        return self.judge_many([(country, city)], [truth], None if coordinates is None else [coordinates])[0]

    def points(self, coordinates: Sequence[object] | None, n: int) -> list[tuple[float, float] | None]:
        """The valid ``(lat, lon)`` of each of ``n`` answers when coordinates are preferred, else Nones."""
        if not self.prefer_coordinates or coordinates is None:
            return [None] * n
        if len(coordinates) != n:
            raise ValueError(f"{len(coordinates)} coordinates for {n} answers")
        return [valid_coordinates(c) if c is not None else None for c in coordinates]

    def judge_many(
        self,
        answers: Sequence[tuple[object, object]],
        truths: Sequence[GeoTruth],
        coordinates: Sequence[object] | None = None,
    ) -> list[GeoVerdict]:
        """Verdicts on ``(country, city)`` answers against their truths, in order; geocoding and
        reverse geocoding are done once per distinct answer and truth, distances in one batch.

        ``coordinates``: one ``(lat, lon)`` or None per answer (the answers' ``coordinates:``
        lines); read only with ``prefer_coordinates`` (module docstring, 9-10)."""
        if len(answers) != len(truths):
            raise ValueError(f"{len(answers)} answers for {len(truths)} truths")
        points = self.points(coordinates, len(answers))
        places = self.resolve_many(answers)
        true_codes, true_cities = self._truth_names(truths)
        named = [self.country_code(country) for country, _ in answers]
        pred_codes = [predicted_country(code, place) for code, place in zip(named, places)]
        pred_cities = [clean_name(city) for _, city in answers]
        # names the answer does not give, from the place its point lies in
        needs = [p is not None and (code is None or not city) for p, code, city in zip(points, pred_codes, pred_cities)]
        found = self._reverse([p for p, need in zip(points, needs) if need])
        at_points: list[Place | None] = [found.get(p) if need else None for p, need in zip(points, needs)]
        for i, where in enumerate(at_points):
            if where is None:
                continue
            pred_codes[i] = pred_codes[i] or where.country_code
            if not pred_cities[i] and where.country_code == pred_codes[i]:
                pred_cities[i] = where.name
        distances = self._distances(places, truths, points)
        out = []
        for place, pred_code, pred_city, true_code, true_city, d, point, where in zip(
            places, pred_codes, pred_cities, true_codes, true_cities, distances, points, at_points
        ):
            country_ok = judge_country(pred_code, true_code)
            city_ok = judge_city(country_ok, pred_city, true_city, lambda a, b: self.gazetteer.same_city(a, b, true_code))
            out.append(GeoVerdict(place, pred_code, true_code, true_city, country_ok, city_ok, d, point, where))
        return out

    def _reverse(self, points: Sequence[tuple[float, float]]) -> dict[tuple[float, float], Place]:
        """The place (``rule="city"``) of each distinct point, in one batch."""
        todo = sorted(set(points))
        if not todo:
            return {}
        return dict(zip(todo, self.gazetteer.reverse_many([p[0] for p in todo], [p[1] for p in todo])))

    # ------------------------------------------------------------------ truth
    def _truth_names(self, truths: Sequence[GeoTruth]) -> tuple[list[str | None], list[str]]:
        """(true ISO code or None, true city name or "") of each truth (module docstring, 4 and 6)."""
        codes = [self.country_code(t.country) for t in truths]
        cities = [clean_name(t.city) for t in truths]
        if not self.truth_from_coordinates:
            return codes, cities
        todo = sorted({(t.lat, t.lon) for t, c, y in zip(truths, codes, cities) if (c is None or not y) and _finite(t.lat, t.lon)})
        if not todo:
            return codes, cities
        found = dict(zip(todo, self.gazetteer.reverse_many([p[0] for p in todo], [p[1] for p in todo])))
        for i, t in enumerate(truths):
            place = found.get((t.lat, t.lon))
            if place is None:
                continue
            codes[i] = codes[i] or place.country_code
            if not cities[i] and place.country_code == codes[i]:
                cities[i] = place.name
        return codes, cities

    @staticmethod
    def _distances(
        places: Sequence[Place | None], truths: Sequence[GeoTruth], points: Sequence[tuple[float, float] | None] | None = None
    ) -> list[float]:
        """Haversine km from each answer's point (when given) or place to its truth."""
        if not places:
            return []
        points = points or [None] * len(places)
        lat = np.array([pt[0] if pt is not None else p.lat if p is not None else math.nan for p, pt in zip(places, points)])
        lon = np.array([pt[1] if pt is not None else p.lon if p is not None else math.nan for p, pt in zip(places, points)])
        tlat = np.array([t.lat for t in truths], dtype=np.float64)
        tlon = np.array([t.lon for t in truths], dtype=np.float64)
        return great_circle_km(lat, lon, tlat, tlon).tolist()


def _as_float(value: object) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)
