"""The distillation's four filters and the chain choice, on hand-made teacher outputs (no model)."""

from __future__ import annotations

import math

import pytest

from globe.distill.decision import Filters, choose_chain, decide
from globe.distill.filters import (
    AgreementFilter, CorrectnessFilter, LocalizabilityFilter, SegmentationFilter, jaccard, location_agreement, same_place,
    verify_entities,
)
from globe.distill.gps_teacher import GPSGuess
from globe.distill.parse import TeacherReading
from globe.geo.gazetteer import Place
from globe.geo.judge import GeoJudge, GeoTruth, GeoVerdict, shared_gazetteer

PARIS = Place("Paris", "FR", "France", 48.85341, 2.3488, 2_138_551, "city")
VERSAILLES = Place("Versailles", "FR", "France", 48.80359, 2.13424, 85_416, "city")
LYON = Place("Lyon", "FR", "France", 45.74846, 4.84671, 472_317, "city")
LIMA = Place("Lima", "PE", "Peru", -12.04318, -77.02824, 7_737_002, "city")
CHAIN = "Haussmann buildings with mansard roofs, a boulangerie sign and plane trees along the street."


def reading(localizable=True, score=0.9, reasoning=CHAIN, country="France", city="Paris") -> TeacherReading:
    return TeacherReading(localizable, score, reasoning, country, city, ())


def verdict(place: Place | None, country_ok: bool | None = True, city_ok: bool | None = True, km: float = 0.0,
            true_country: str | None = "FR") -> GeoVerdict:
    return GeoVerdict(place, place.country_code if place else None, true_country, "Paris", country_ok, city_ok, km)


# ---------------------------------------------------------------------- 1. localizability
@pytest.mark.parametrize("aggregate, votes, passed", [
    ("all", [(True, 0.9), (True, 0.6)], True),
    ("all", [(True, 0.9), (True, 0.4)], False),   # one teacher below the threshold
    ("all", [(True, 0.9), (False, 0.9)], False),  # one confident "no"
    ("any", [(True, 0.9), (False, 0.9)], True),
    ("majority", [(True, 0.9), (False, 0.9)], False),  # 1 of 2 is not more than half
    ("majority", [(True, 0.9), (True, 0.8), (False, 0.9)], True),
    ("all", [(True, 0.9), (None, None)], True),   # a teacher without a judgement abstains
])
def test_localizability_votes(aggregate, votes, passed):
    f = LocalizabilityFilter(threshold=0.5, aggregate=aggregate)
    out = f.check([reading(localizable=v, score=s) for v, s in votes])
    assert out.passed is passed
    assert out.reason == ("" if passed else "not_localizable")


def test_localizability_without_any_judgement_fails_and_disabled_passes():
    readings = [reading(localizable=None, score=None), reading(localizable=True, score=None)]  # a yes without a score
    assert LocalizabilityFilter().check(readings).reason == "no_judgement"
    assert LocalizabilityFilter(enabled=False).check(readings).passed
    assert LocalizabilityFilter().check([reading(score=0.6), reading(score=0.8)]).detail["mean_score"] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="aggregate"):
        LocalizabilityFilter(aggregate="mean")


# ---------------------------------------------------------------------- 2. correctness
@pytest.mark.parametrize("rule, v, correct", [
    ("country", verdict(LYON, True, False, 392.0), True),
    ("city", verdict(LYON, True, False, 392.0), False),
    ("city", verdict(PARIS, True, True, 0.5), True),
    ("distance", verdict(VERSAILLES, True, False, 17.0), True),   # 17 km <= 25 km
    ("distance", verdict(LYON, True, False, 392.0), False),
    ("city_or_distance", verdict(VERSAILLES, True, False, 17.0), True),
    ("city_or_distance", verdict(PARIS, True, True, math.nan), True),  # the city, whatever the distance
    ("city_or_distance", verdict(LIMA, False, False, 0.0), False),     # wrong country, even at 0 km
    ("city_or_distance", verdict(PARIS, True, None, 3.0), True),       # truth without a city: the distance decides
    ("city_or_distance", None, False),                                  # no answer
])
def test_correctness_rule(rule, v, correct):
    assert CorrectnessFilter(rule=rule, max_km=25.0).teacher_passes(v) is correct


def test_correctness_aggregate_and_reasons():
    right, wrong = verdict(PARIS), verdict(LYON, True, False, 392.0)
    assert CorrectnessFilter(aggregate="any").check([wrong, right]).passed
    out = CorrectnessFilter(aggregate="all").check([wrong, right])
    assert (out.passed, out.reason, out.detail["correct"]) == (False, "wrong", [False, True])
    assert CorrectnessFilter().check([None, None]).reason == "no_answer"
    assert CorrectnessFilter().check([verdict(PARIS, None, None, 1.0, true_country=None)]).reason == "truth_not_judged"
    assert CorrectnessFilter(enabled=False).check([wrong]).passed


def test_correctness_through_the_geo_judge():
    """The verdicts the module builds: GeoJudge's (aliases and alternate names count)."""
    judge = GeoJudge(shared_gazetteer())
    truth = GeoTruth("Germany", "München", 48.13743, 11.57549)
    f = CorrectnessFilter(rule="city_or_distance", max_km=25.0)
    answers = [("Deutschland", "Munich"), ("Germany", "Freising"), ("Germany", "Hamburg"), ("Austria", "Munich")]
    verdicts = judge.judge_many(answers, [truth] * len(answers))
    # alias + alternate name; a town 32 km away (neither the city nor within 25 km); 600 km; the wrong country
    assert [f.teacher_passes(v) for v in verdicts] == [True, False, False, False]
    assert CorrectnessFilter(rule="distance", max_km=40.0).teacher_passes(verdicts[1])


# ---------------------------------------------------------------------- 3. agreement
def test_places_agree_by_city_or_distance():
    assert same_place(PARIS, Place("paris", "FR", "France", 48.9, 2.3, 1, "city"), 0.0)  # one city by name, at any distance
    assert same_place(PARIS, VERSAILLES, 25.0) and not same_place(PARIS, VERSAILLES, 10.0)
    assert not same_place(PARIS, LYON, 100.0) and not same_place(PARIS, None, 1e9)
    assert location_agreement([PARIS, VERSAILLES, LYON, None], kept=0, km=25.0) == pytest.approx(0.5)
    assert location_agreement([PARIS, None], kept=0, km=25.0) is None  # nobody else answered
    assert location_agreement([None, PARIS], kept=0, km=25.0) == 0.0  # a kept answer that does not geocode


def test_entity_overlap():
    assert jaccard({"palm tree", "sand", "pyramid"}, {"sand", "pyramid", "camel"}) == pytest.approx(2 / 4)
    assert jaccard(set(), set()) == 0.0


@pytest.mark.parametrize("figures, reason", [
    ((1.0, 0.5, 20.0, 0.9), ""),
    ((0.5, 0.5, 20.0, 0.9), "location"),
    ((1.0, 0.1, 20.0, 0.9), "reasoning"),
    ((1.0, 0.5, 900.0, 0.9), "gps"),
    ((1.0, 0.5, 900.0, 0.1), ""),          # the GPS teacher is unsure: it abstains
    ((0.0, 0.0, 900.0, 0.9), "location+gps+reasoning"),
    ((None, None, None, None), ""),        # one teacher, no GPS teacher: nothing to disagree with
])
def test_agreement_checks(figures, reason):
    out = AgreementFilter(min_location_agreement=1.0, gps_km=750.0, gps_min_confidence=0.3,
                          min_reasoning_similarity=0.2).check(*figures)
    assert (out.passed, out.reason) == (reason == "", reason)


def test_agreement_options():
    assert AgreementFilter(gps_km=None).check(1.0, 0.5, 1e6, 1.0).passed  # GPS not checked
    assert AgreementFilter(reasoning="off").check(1.0, 0.0).passed
    assert AgreementFilter(enabled=False).check(0.0, 0.0, 1e6, 1.0).passed
    with pytest.raises(ValueError, match="embedding_model_path"):
        AgreementFilter(reasoning="embedding")


# ---------------------------------------------------------------------- 4. segmentation
def test_entities_verified_against_segmentation_classes():
    seg = SegmentationFilter(source="oracle")
    named = seg.mentioned("Palm trees on sand, no snow, and a tram passing a mosque.")
    assert named == {"palm tree", "sand", "tram", "mosque"}  # "no snow" is not a claim
    verified, hallucinated = verify_entities(named, ["tree", "sand", "sky"], seg.grounding)
    assert verified == ["palm tree", "sand"]  # a segmenter's "tree" verifies "palm trees" (hierarchy: related)
    assert hallucinated == ["mosque", "tram"]
    exact = SegmentationFilter(source="oracle", hierarchy="exact")
    assert verify_entities(named, ["tree", "sand"], exact.grounding)[0] == ["sand"]


def test_segmentation_drops_entities_or_samples():
    named = {"palm tree", "tram"}
    keep = SegmentationFilter(source="oracle").check(named, ["palm"])
    assert keep.passed and keep.detail["verified"] == ["palm tree"] and keep.detail["hallucinated"] == ["tram"]
    drop = SegmentationFilter(source="oracle", on_hallucination="drop_sample").check(named, ["palm"])
    assert (drop.passed, drop.reason) == (False, "hallucinated")
    assert SegmentationFilter(source="oracle").check({"tram"}, ["palm"]).reason == "too_few_verified"
    assert SegmentationFilter(source="oracle", min_verified=0, min_precision=0.6).check(named, ["palm"]).reason == "low_precision"
    off = SegmentationFilter(source="off").check(named, None)
    assert off.passed and off.detail["verified"] == []
    with pytest.raises(ValueError, match="model_path"):
        SegmentationFilter(source="model")


def test_segmentation_filter_on_a_tiny_random_segformer(tmp_path):
    """The real path: SegmentationLabels on a random SegFormer built from a config."""
    from PIL import Image

    from globe.distill.tiny import TINY_SEGMENTATION_LABELS, build_tiny_segformer
    from globe.rewards.image_elements import SegmentationLabels

    path = build_tiny_segformer(tmp_path / "seg")
    labels = SegmentationLabels(str(path), min_fraction=0.0).labels_of([Image.new("RGB", (80, 60), (40, 160, 40))])[0]
    assert labels and set(labels) <= set(TINY_SEGMENTATION_LABELS)
    seg = SegmentationFilter(source="model", model_path=str(path), min_verified=0)
    named = seg.mentioned(" ".join(f"a {label}" for label in TINY_SEGMENTATION_LABELS))
    out = seg.check(named, labels)
    assert set(out.detail["verified"]) | set(out.detail["hallucinated"]) == named
    assert out.detail["verified"]  # the classes it found verify the chain's mention of them


# ---------------------------------------------------------------------- the decision
FILTERS = Filters(LocalizabilityFilter(threshold=0.5), CorrectnessFilter(max_km=25.0),
                  AgreementFilter(location_km=50.0, gps_km=500.0, min_reasoning_similarity=0.2),
                  SegmentationFilter(source="oracle"))


def test_kept_sample_takes_the_most_confident_correct_chain():
    readings = [reading(score=0.7), reading(score=0.95, reasoning="Mansard roofs and plane trees, Haussmann buildings.")]
    d = decide(readings, [verdict(PARIS), verdict(VERSAILLES, True, False, 17.0)], FILTERS,
               gps=GPSGuess(48.86, 2.35, 0.8), labels=["building", "roof", "tree", "road"])
    assert d.kept and d.failed == ()
    assert d.kept_teacher == 1  # both correct (city / 17 km): the higher score
    # the kept chain names mansard roofs and plane trees; the segmenter's roof and tree verify them
    assert d.entities == ["broadleaf tree", "mansard roof"]


def test_every_filter_is_counted_on_a_bad_sample():
    readings = [reading(localizable=False, score=0.2, reasoning="Snow and a tram.", country="Peru", city="Lima"),
                reading(score=0.9, reasoning="A pyramid.", country="France", city="Lyon")]
    d = decide(readings, [verdict(LIMA, False, False, 10_000.0), verdict(LYON, True, False, 392.0)], FILTERS,
               gps=GPSGuess(-12.0, -77.0, 0.9), labels=["sand"])
    # teacher 0 voted no, teacher 1 is wrong: no chain passes its own checks
    assert d.failed == ("chain", "localizability", "correctness", "agreement", "segmentation")
    assert not d.kept and d.non_localizable_chain == 0


def test_chain_choice_prefers_correct_then_localizable_then_score():
    rs = [reading(score=0.99), reading(score=0.6), reading(score=0.8)]
    assert choose_chain(rs, [True, True, True], [False, True, True], FILTERS) == (2, True)
    assert choose_chain(rs, [True, False, False], [False, True, True], FILTERS) == (2, False)  # none passes both: correct first
    assert choose_chain([reading(reasoning=""), reading(country=None)], [True, True], [True, True], FILTERS) == (None, False)


def test_unreadable_teachers_abstain_from_agreement():
    """A teacher whose output could not be read is left out of the location and reasoning checks."""
    garbage = TeacherReading(None, None, "", None, None, ("no_judgement", "no_score", "no_reasoning", "no_country"))
    d = decide([reading(), garbage], [verdict(PARIS), None], FILTERS, labels=["building", "tree", "roof"])
    assert d.kept, d.failed
    assert d.outcomes["agreement"].detail["location"] is None and d.outcomes["agreement"].detail["reasoning"] is None


def test_decide_with_an_embedding_similarity():
    calls = []

    def similarity(chains, kept):
        calls.append((list(chains), kept))
        return [0.05]

    f = Filters(LocalizabilityFilter(), CorrectnessFilter(), AgreementFilter(min_reasoning_similarity=0.5, gps_km=None),
                SegmentationFilter())
    d = decide([reading(), reading(reasoning="Other words entirely.")], [verdict(PARIS), verdict(PARIS)], f, similarity=similarity)
    assert d.failed == ("agreement",) and d.outcomes["agreement"].reason == "reasoning"
    assert calls == [([CHAIN, "Other words entirely."], 0)]
