"""What the distillation module returns per sample, for the writer: the decision, and for a
sample to be written, its image bytes and its MP16-Reason JSON (with provenance).

Output JSON (the MP16-Reason schema of docs/data.md, read by ``MP16Reason`` and
``LocalizabilityPairs``): ``lat``, ``lon``, ``country``, ``city`` (the ground truth; names the
source lacked are reverse-geocoded from the coordinates, ``distill.names_from``),
``localizable``, ``reasoning`` (the kept chain as a target completion,
``<think>..</think><answer>country: ..\\ncity: ..</answer>``), ``entities`` (the verified
ones), ``source`` (the input's own fields: ``img_id``, CSV columns, a shard's url...), and
``distill``: the provenance — prompt id, every teacher's judgement / score / answer /
correctness / parse problems, the GPS teacher's guess, which chain was kept, each filter's
figures, the segmentation source (``model`` or ``oracle``) with its labels, the verified and
the hallucinated entities.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from globe.distill.batch import DistillSample
from globe.distill.decision import Decision
from globe.distill.gps_teacher import GPSGuess
from globe.distill.parse import TeacherReading
from globe.geo.judge import GeoVerdict

__all__ = ["BatchResult", "SampleResult", "jpeg_bytes", "output_meta", "provenance"]

Route = Literal["kept", "non_localizable", "dropped"]


@dataclass
class SampleResult:
    """One sample's outcome. ``meta`` and ``jpg`` are set for samples to be written."""

    key: str
    route: Route
    failed: tuple[str, ...]
    country: str
    problems: dict[str, tuple[str, ...]]
    verified: int = 0
    hallucinated: int = 0
    meta: dict | None = None
    jpg: bytes | None = None


@dataclass
class BatchResult:
    """The results of one batch and the chunk bookkeeping the writer needs."""

    results: list[SampleResult]
    chunk: int | None
    chunk_end: bool
    rows: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_keys: list[tuple[str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.results)


def jpeg_bytes(sample: DistillSample, quality: int = 95) -> bytes:
    """The file's own bytes when they are a JPEG, else a JPEG encoding of the decoded image."""
    if sample.image_bytes[:3] == b"\xff\xd8\xff":
        return sample.image_bytes
    buf = io.BytesIO()
    image = sample.image if sample.image.mode == "RGB" else sample.image.convert("RGB")
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _finite(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
        return True
    except (TypeError, ValueError, OverflowError, RecursionError):
        return False


def _detail(detail: dict) -> dict:
    return {k: v for k, v in detail.items() if _jsonable(v)}


def provenance(
    teacher_names: list[str], readings: list[TeacherReading], verdicts: list[GeoVerdict | None], decision: Decision,
    gps: GPSGuess | None, gps_name: str | None, segmentation_source: str, prompt_id: str, names_from: str,
) -> dict:
    """The ``distill`` field of an output sample (module docstring)."""
    votes = decision.outcomes["localizability"].detail.get("votes", [None] * len(readings))
    correct = decision.outcomes["correctness"].detail.get("correct", [False] * len(readings))
    teachers = []
    for t, (name, r, v) in enumerate(zip(teacher_names, readings, verdicts)):
        teachers.append({
            "name": name, "localizable": r.localizable, "score": _finite(r.score), "country": r.country, "city": r.city,
            "localizability_vote": votes[t], "correct": bool(correct[t]),
            "distance_km": _finite(v.distance_km, 3) if v is not None else None, "problems": list(r.problems),
        })
    out = {
        "prompt_id": prompt_id,
        "teachers": teachers,
        "kept_teacher": teacher_names[decision.kept_teacher] if decision.kept_teacher is not None else None,
        "filters": {name: {"passed": o.passed, "reason": o.reason, **_detail(o.detail)} for name, o in decision.outcomes.items()},
        "segmentation_source": segmentation_source,
        "names_from": names_from,
    }
    if gps is not None:
        out["gps"] = {"name": gps_name, "lat": round(gps.lat, 6), "lon": round(gps.lon, 6), "confidence": _finite(gps.confidence, 6)}
    return out


def output_meta(sample: DistillSample, country: str, city: str, localizable: bool, completion: str, entities: list[str],
                distill: dict) -> dict:
    """The JSON of one written sample."""
    source = {k: v for k, v in sample.extra.items() if _jsonable(v)}
    source["kind"] = sample.source
    return {"lat": sample.lat, "lon": sample.lon, "country": country, "city": city, "localizable": localizable,
            "reasoning": completion, "entities": entities, "source": source, "distill": distill}
