"""One sample's decision: which chain is kept and what each filter says, from the teachers'
outputs alone (pure: the models have already run).

1. **Per teacher**: localizability vote (yes and score >= threshold; None without a judgement)
   and correctness (its verdict under the correctness rule).
2. **Chain**: the kept chain comes from a teacher with a readable chain (reasoning and a
   country) that passes both of its own checks (a disabled filter's check counts as passed);
   among those, the highest localizability score, the first teacher on ties. Without such a
   teacher the sample fails ``chain``; the best readable chain (ranked by correctness, vote,
   score) is still used to evaluate the agreement and segmentation filters, so their counts
   mean the same for every sample.
3. **Filters**: each of the four is evaluated on every sample (:mod:`globe.distill.filters`).
   The sample is kept when nothing failed.
4. **Non-localizable samples** (``non_localizable_chain``): a sample the localizability filter
   rejected, with a readable chain from a teacher that voted no (the lowest score first),
   becomes a ``localizable: false`` example for the R_loc reward model when the run asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from globe.distill.filters import (
    FILTERS, AgreementFilter, CorrectnessFilter, FilterOutcome, LocalizabilityFilter, SegmentationFilter, jaccard,
    location_agreement, mean_or_none,
)
from globe.distill.filters.agreement import place_km
from globe.distill.gps_teacher import GPSGuess
from globe.distill.parse import TeacherReading
from globe.geo.judge import GeoVerdict

__all__ = ["Decision", "Filters", "choose_chain", "decide"]

#: every reason a sample can be dropped for, in report order
DROP_REASONS = ("chain", *FILTERS)

Similarity = Callable[[Sequence[str], int], "list[float]"]  # (chains, kept index) -> similarity to each other chain


@dataclass
class Filters:
    """The four filters of a run."""

    localizability: LocalizabilityFilter
    correctness: CorrectnessFilter
    agreement: AgreementFilter
    segmentation: SegmentationFilter


@dataclass
class Decision:
    """Attributes:
    kept_teacher: index of the chain written with the sample (None: no readable chain at all).
    chain_ok: the kept chain passes its teacher's own localizability and correctness checks.
    outcomes: filter name -> its outcome.
    failed: the drop reasons (``chain`` and the failed filters), in ``DROP_REASONS`` order.
    entities: the verified entities (the output sample's ``entities``).
    non_localizable_chain: the chain to write a non-localizable example with (None: none).
    """

    kept_teacher: int | None
    chain_ok: bool
    outcomes: dict[str, FilterOutcome]
    failed: tuple[str, ...]
    entities: list[str]
    non_localizable_chain: int | None = None

    @property
    def kept(self) -> bool:
        return not self.failed


def choose_chain(readings: Sequence[TeacherReading], votes: Sequence[bool | None], correct: Sequence[bool],
                 filters: Filters) -> tuple[int | None, bool]:
    """(teacher whose chain is kept, whether it passes its own checks); see the module docstring.

    >>> f = Filters(LocalizabilityFilter(), CorrectnessFilter(), AgreementFilter(), SegmentationFilter())
    >>> r = TeacherReading(True, 0.9, "chain", "France", "Paris", ())
    >>> choose_chain([r, r._replace(score=0.95)], [True, True], [True, True], f)
    (1, True)
    >>> choose_chain([r, r._replace(score=0.95)], [True, True], [True, False], f)
    (0, True)
    >>> choose_chain([r._replace(reasoning="")], [True], [True], f)
    (None, False)
    """
    use_votes, use_correct = filters.localizability.enabled, filters.correctness.enabled

    def rank(t: int) -> tuple[bool, bool, float]:
        return (correct[t] or not use_correct, votes[t] is True or not use_votes, readings[t].score or 0.0)

    readable = [t for t, r in enumerate(readings) if r.has_chain]
    if not readable:
        return None, False
    best = max(readable, key=lambda t: (rank(t), -t))  # first teacher on ties
    ok = (correct[best] or not use_correct) and (votes[best] is True or not use_votes)
    return best, ok


def entity_similarity(vocabulary_mentioned: Callable[[str], set[str]]) -> Similarity:
    """Reasoning similarity as the Jaccard overlap of the concepts each chain names."""
    def similarities(chains: Sequence[str], kept: int) -> list[float]:
        sets = [vocabulary_mentioned(c) for c in chains]
        return [jaccard(sets[kept], s) for j, s in enumerate(sets) if j != kept]
    return similarities


def decide(
    readings: Sequence[TeacherReading],
    verdicts: Sequence[GeoVerdict | None],
    filters: Filters,
    gps: GPSGuess | None = None,
    labels: Sequence[str] | None = None,
    similarity: Similarity | None = None,
) -> Decision:
    """The decision on one sample.

    Args:
        readings: each VLM teacher's parsed output.
        verdicts: each teacher's GeoJudge verdict (None: the teacher gave no country).
        filters: the run's filters.
        gps: the GPS teacher's guess (None: no GPS teacher).
        labels: the image's segmentation classes, or the oracle's elements (None: not segmented).
        similarity: reasoning similarity of the kept chain to the others (default: entity Jaccard).
    """
    if len(readings) != len(verdicts):
        raise ValueError(f"{len(readings)} teacher readings for {len(verdicts)} verdicts")
    seg = filters.segmentation
    if similarity is None:
        similarity = entity_similarity(seg.mentioned)
    votes = [filters.localizability.teacher_passes(r) for r in readings]
    correct = [filters.correctness.teacher_passes(v) for v in verdicts]
    outcomes = {"localizability": filters.localizability.check(readings), "correctness": filters.correctness.check(verdicts)}
    kept, chain_ok = choose_chain(readings, votes, correct, filters)
    if kept is None:
        outcomes["agreement"] = FilterOutcome.fail("no_chain")
        outcomes["segmentation"] = FilterOutcome.fail("no_chain")
        entities: list[str] = []
    else:
        places = [v.place if v is not None else None for v in verdicts]
        location = location_agreement(places, kept, filters.agreement.location_km)
        others = [t for t, r in enumerate(readings) if r.has_chain and t != kept]
        reasoning = None
        if others and filters.agreement.reasoning != "off":
            chains = [readings[kept].reasoning] + [readings[t].reasoning for t in others]
            reasoning = mean_or_none(similarity(chains, 0))
        gps_km = place_km(places[kept], gps.lat, gps.lon) if gps is not None else None
        outcomes["agreement"] = filters.agreement.check(location, reasoning, gps_km, gps.confidence if gps else None)
        outcomes["segmentation"] = seg.check(seg.mentioned(readings[kept].reasoning), labels)
        entities = list(outcomes["segmentation"].detail.get("verified", []))
    failed = tuple(name for name in FILTERS if not outcomes[name].passed)
    if not chain_ok:
        failed = ("chain", *failed)
    nonloc = None
    if not outcomes["localizability"].passed:
        voted_no = [t for t, r in enumerate(readings) if r.has_chain and votes[t] is False]
        nonloc = min(voted_no, key=lambda t: (readings[t].score or 0.0, t)) if voted_no else None
    return Decision(kept, chain_ok, outcomes, failed, entities, nonloc)
