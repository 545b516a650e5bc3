"""The four validation filters of the distillation, each a small configurable component whose
``check`` is a pure function of what the teachers said (and, for the last one, of what a
segmenter found). Every filter is evaluated on every sample, so the report can count what each
filter, alone or together with others, dropped.

1. :class:`LocalizabilityFilter` — the teachers' yes/no judgement and score;
2. :class:`CorrectnessFilter` — the teachers' answers judged by :class:`globe.geo.judge.GeoJudge`;
3. :class:`AgreementFilter` — the kept chain against the other teachers (location, reasoning)
   and against the GPS teacher;
4. :class:`SegmentationFilter` — the kept chain's entities against a segmentation model's classes.
"""

from globe.distill.filters.agreement import AgreementFilter, jaccard, location_agreement, mean_or_none, same_place
from globe.distill.filters.correctness import CorrectnessFilter
from globe.distill.filters.localizability import LocalizabilityFilter
from globe.distill.filters.outcome import FILTERS, FilterOutcome
from globe.distill.filters.segmentation import SegmentationFilter, verify_entities

__all__ = [
    "FILTERS", "AgreementFilter", "CorrectnessFilter", "FilterOutcome", "LocalizabilityFilter", "SegmentationFilter",
    "jaccard", "location_agreement", "mean_or_none", "same_place", "verify_entities",
]
