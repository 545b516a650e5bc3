"""Stage 1 of GLOBE: distil MP16-Reason-style data from teacher models, with four validation filters.

``python cli.py predict --config configs/distill/<name>.yaml`` (docs/distill.md)::

    data_modules.raw_images.RawImages    CSV + image folder, or shards, in resumable chunks
      -> DistillTeachers.predict_step    (module.py)
           VLM teachers                  teachers.py: one prompt (prompt.py), rollout engines
           parse                         parse.py: judgement, score, chain, answer; never raises
           GPS teacher                   gps_teacher.py: GeoRetrieval top-1 + confidence
           filters                       filters/: localizability, correctness (GeoJudge),
                                         agreement, segmentation; decision.py picks the chain
           records                       records.py: output JSON with provenance
      -> DistillWriter                   writer.py: atomic shards per chunk, done-markers, report.json (report.py)
"""

from globe.distill.filters import AgreementFilter, CorrectnessFilter, LocalizabilityFilter, SegmentationFilter
from globe.distill.gps_teacher import GPSTeacher
from globe.distill.module import DistillTeachers
from globe.distill.parse import parse_teacher_output
from globe.distill.prompt import DISTILL_PROMPT
from globe.distill.teachers import Teacher, VLMTeacher
from globe.distill.writer import DistillWriter

__all__ = [
    "DISTILL_PROMPT", "AgreementFilter", "CorrectnessFilter", "DistillTeachers", "DistillWriter", "GPSTeacher",
    "LocalizabilityFilter", "SegmentationFilter", "Teacher", "VLMTeacher", "parse_teacher_output",
]
