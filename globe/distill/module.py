"""Stage 1 of GLOBE: distil MP16-Reason-style samples from teacher models, with four filters.

``python cli.py predict --config configs/distill/<name>.yaml`` runs :class:`DistillTeachers`
over a raw-image data module (``data_modules.raw_images.RawImages``: an MP-16-style CSV and an
image folder, or existing shards whose reasoning is ignored) and writes the kept samples with
:class:`globe.distill.writer.DistillWriter`. Per batch (``predict_step``):

1. every VLM teacher answers :data:`globe.distill.prompt.DISTILL_PROMPT` for every image
   through the rollout engine of its config (:class:`globe.distill.teachers.VLMTeacher`). The
   one shared prompt asks what the image shows, names only elements that are in it, and fixes
   the answer's shape::

       localizable: [yes or no]
       score: [a number from 0 to 1: how confidently the location can be recognised from the image]
       <think> your step-by-step reasoning </think>
       <answer>country: [country name]
       city: [city name]</answer>

2. each output is parsed (:func:`globe.distill.parse.parse_teacher_output`: never raises,
   problems counted per teacher);
3. the GPS teacher (:class:`globe.distill.gps_teacher.GPSTeacher`, a GeoRetrieval model) gives
   top-1 coordinates and a confidence;
4. the truth's missing names are reverse-geocoded from its coordinates; every teacher answer
   is judged by :class:`globe.geo.judge.GeoJudge` (country, city, distance);
5. the segmentation source (a segmentation model, or the sample's own entities as an oracle)
   lists the image's classes;
6. :func:`globe.distill.decision.decide` applies the four filters
   (:mod:`globe.distill.filters`) and picks the kept chain; the sample's output JSON is built
   with its provenance (:mod:`globe.distill.records`).

Deviations from the paper (arXiv 2506.14674, Sec. 3.1), whose distillation code is not
public: the teachers here are any local VLM directories (the paper used large proprietary and
open models); correctness is the project's GeoJudge (ISO codes, GeoNames alternate names,
distance) instead of string matching; agreement compares the kept chain with the other
teachers and with a GeoCLIP-style GPS teacher; entities are the vocabulary's concepts named in
the chain, verified against a semantic-segmentation model's classes (the paper used an
open-vocabulary segmenter).

Batches stay on the host (``transfer_batch_to_device`` returns them as they are): they hold
PIL images, and each teacher moves its own tensors.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule

from globe.distill.batch import ChunkBatch, DistillSample
from globe.distill.decision import Filters, decide
from globe.distill.filters import AgreementFilter, CorrectnessFilter, LocalizabilityFilter, SegmentationFilter
from globe.distill.gps_teacher import GPSGuess, GPSTeacher
from globe.distill.parse import MAX_OUTPUT_CHARS, TeacherReading, parse_teacher_output
from globe.distill.prompt import DISTILL_PROMPT, prompt_id
from globe.distill.records import BatchResult, SampleResult, jpeg_bytes, output_meta, provenance
from globe.distill.teachers import Teacher
from globe.geo.judge import GeoJudge, GeoTruth, GeoVerdict, shared_gazetteer
from globe.rollout.seeds import rollout_seed

__all__ = ["DistillTeachers"]

log = logging.getLogger(__name__)


def _as(cls, value):
    """jsonargparse may hand dataclass arguments over as dicts."""
    return value if isinstance(value, cls) else cls(**(value or {}))


def _settings(obj: Any) -> dict:
    return {k: v for k, v in vars(obj).items() if not k.startswith("_")}


class DistillTeachers(LightningModule):
    """Teachers + filters for ``cli.py predict`` (see the module docstring).

    Args:
        teachers: the VLM teachers (``class_path: globe.distill.teachers.VLMTeacher``), distinct names.
        gps_teacher: the GeoRetrieval GPS teacher (None: no GPS agreement check).
        prompt: the distillation prompt every teacher answers.
        localizability: filter 1 (teachers' judgement and score).
        correctness: filter 2 (teacher answers vs the ground truth, by GeoJudge).
        agreement: filter 3 (kept chain vs the other teachers and the GPS teacher).
        segmentation: filter 4 (kept chain's entities vs a segmentation model's classes).
        write_non_localizable: also write samples the localizability filter rejected, with a
            chain of a teacher that said no, as ``localizable: false`` examples (for R_loc).
        max_output_chars: teacher outputs longer than this are not parsed (``too_long``).
        seed: base seed of the teachers' sampling.
        gazetteer_cache_dir: the gazetteer's cache folder (None: ``$GLOBE_CACHE`` or ``~/.cache/globe``).
        gazetteer_min_population: smallest city population of the gazetteer.
    """

    def __init__(
        self,
        teachers: list[Teacher],
        gps_teacher: GPSTeacher | None = None,
        prompt: str = DISTILL_PROMPT,
        localizability: LocalizabilityFilter = LocalizabilityFilter(),
        correctness: CorrectnessFilter = CorrectnessFilter(),
        agreement: AgreementFilter = AgreementFilter(),
        segmentation: SegmentationFilter = SegmentationFilter(),
        write_non_localizable: bool = False,
        max_output_chars: int = MAX_OUTPUT_CHARS,
        seed: int = 0,
        gazetteer_cache_dir: str | None = None,
        gazetteer_min_population: int = 500,
    ) -> None:
        super().__init__()
        if not teachers:
            raise ValueError("DistillTeachers needs at least one VLM teacher")
        names = [t.name for t in teachers]
        if len(set(names)) != len(names):
            raise ValueError(f"teachers need distinct names, got {names}")
        self.teachers = torch.nn.ModuleList(teachers)
        self.gps_teacher = gps_teacher
        self.prompt = prompt
        self.filters = Filters(_as(LocalizabilityFilter, localizability), _as(CorrectnessFilter, correctness),
                               _as(AgreementFilter, agreement), _as(SegmentationFilter, segmentation))
        self.write_non_localizable = write_non_localizable
        self.max_output_chars = max_output_chars
        self.seed = seed
        self.gazetteer_cache_dir, self.gazetteer_min_population = gazetteer_cache_dir, gazetteer_min_population
        self.segmenter = None  # SegmentationLabels, built in configure_model
        self.embedder = None  # TextEmbedder for agreement.reasoning: embedding
        self._judge: GeoJudge | None = None

    # ------------------------------------------------------------------ set-up
    def configure_model(self) -> None:
        """Load every model once, before Lightning moves the module to the rank's device."""
        for teacher in self.teachers:
            teacher.load()
        if self.gps_teacher is not None:
            self.gps_teacher.load()
        seg = self.filters.segmentation
        if seg.source == "model" and self.segmenter is None:
            from globe.rewards.image_elements import SegmentationLabels

            if seg.build_tiny_if_missing and not Path(seg.model_path).exists():
                from globe.distill.tiny import build_tiny_segformer

                build_tiny_segformer(seg.model_path)

            self.segmenter = SegmentationLabels(seg.model_path, seg.min_fraction, seg.batch_size, seg.ignore_labels)
        agreement = self.filters.agreement
        if agreement.reasoning == "embedding" and self.embedder is None:
            from globe.distill.text_embedding import TextEmbedder

            self.embedder = TextEmbedder(agreement.embedding_model_path)
        self.requires_grad_(False)

    @property
    def judge(self) -> GeoJudge:
        if self._judge is None:
            self._judge = GeoJudge(shared_gazetteer(self.gazetteer_cache_dir, self.gazetteer_min_population))
        return self._judge

    def settings(self) -> dict[str, Any]:
        """What decides the output (recorded in the run's manifest: a resumed run must match it)."""
        return {
            "prompt_id": prompt_id(self.prompt),
            "teachers": [t.describe() for t in self.teachers],
            "gps_teacher": self.gps_teacher.describe() if self.gps_teacher is not None else None,
            "filters": {name: _settings(getattr(self.filters, name))
                        for name in ("localizability", "correctness", "agreement", "segmentation")},
            "write_non_localizable": self.write_non_localizable,
            "max_output_chars": self.max_output_chars,
            "seed": self.seed,
        }

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return batch  # PIL images and chunk bookkeeping: nothing to move (module docstring)

    def on_predict_end(self) -> None:
        for teacher in self.teachers:
            teacher.close()

    # ------------------------------------------------------------------ the step
    def _truths(self, batch: Sequence[DistillSample]) -> tuple[list[GeoTruth], list[str]]:
        """Ground truth with missing names reverse-geocoded, and where the names came from."""
        missing = [i for i, s in enumerate(batch) if not s.country or not s.city]
        places = {}
        if missing:
            found = self.judge.gazetteer.reverse_many([batch[i].lat for i in missing], [batch[i].lon for i in missing])
            places = dict(zip(missing, found))
        truths, sources = [], []
        for i, s in enumerate(batch):
            country, city, source = s.country, s.city, "source"
            place = places.get(i)
            if place is not None:
                if not country:
                    country, source = place.country_name, "coordinates"
                if not city and self.judge.country_code(country) == place.country_code:
                    city, source = place.name, "coordinates" if source == "coordinates" else "source+coordinates"
            truths.append(GeoTruth(country, city, float(s.lat), float(s.lon)))
            sources.append(source)
        return truths, sources

    def _verdicts(self, readings: list[TeacherReading], truths: list[GeoTruth]) -> list[GeoVerdict | None]:
        todo = [i for i, r in enumerate(readings) if r.country]
        verdicts: list[GeoVerdict | None] = [None] * len(readings)
        if todo:
            for i, v in zip(todo, self.judge.judge_many([(readings[i].country, readings[i].city) for i in todo],
                                                        [truths[i] for i in todo])):
                verdicts[i] = v
        return verdicts

    def _labels(self, batch: Sequence[DistillSample]) -> list[list[str] | None]:
        source = self.filters.segmentation.source
        if source == "model":
            return self.segmenter.labels_of([s.image for s in batch])  # type: ignore[union-attr]
        if source == "oracle":
            return [list(s.entities) for s in batch]
        return [None] * len(batch)

    def _batch_seed(self, keys: Sequence[str], teacher: str) -> int:
        return rollout_seed(self.seed, f"distill:{teacher}", zlib.crc32("\n".join(keys).encode("utf-8", "surrogatepass")))

    @torch.no_grad()
    def predict_step(self, batch: ChunkBatch, batch_idx: int) -> BatchResult:
        out = BatchResult([], getattr(batch, "chunk", None), getattr(batch, "chunk_end", False), getattr(batch, "rows", 0),
                          dict(getattr(batch, "skipped", {})), list(getattr(batch, "skipped_keys", [])))
        samples: list[DistillSample] = list(batch)
        if not samples:
            return out
        keys = [s.key for s in samples]
        images = [s.image for s in samples]
        names = [t.name for t in self.teachers]
        readings: list[list[TeacherReading]] = []  # [teacher][sample]
        for teacher in self.teachers:
            start = time.perf_counter()
            texts = teacher.generate(images, self.prompt, self._batch_seed(keys, teacher.name))
            out.seconds[teacher.name] = time.perf_counter() - start
            if len(texts) != len(samples):
                raise RuntimeError(f"teacher {teacher.name} returned {len(texts)} outputs for {len(samples)} images")
            readings.append([parse_teacher_output(text, self.max_output_chars) for text in texts])
        gps: list[GPSGuess | None] = [None] * len(samples)
        if self.gps_teacher is not None:
            start = time.perf_counter()
            gps = list(self.gps_teacher.locate(images))
            out.seconds[self.gps_teacher.name] = time.perf_counter() - start
        start = time.perf_counter()
        labels = self._labels(samples)
        out.seconds["segmentation"] = time.perf_counter() - start
        start = time.perf_counter()
        truths, names_from = self._truths(samples)
        verdicts = [self._verdicts(per_teacher, truths) for per_teacher in readings]  # [teacher][sample]
        similarity = None
        if self.embedder is not None:
            similarity = self.embedder.similarities_to
        seg_source = self.filters.segmentation.source
        pid = prompt_id(self.prompt)
        for i, sample in enumerate(samples):
            r_i = [readings[t][i] for t in range(len(names))]
            v_i = [verdicts[t][i] for t in range(len(names))]
            decision = decide(r_i, v_i, self.filters, gps[i], labels[i], similarity)
            problems = {names[t]: r_i[t].problems for t in range(len(names))}
            seg_detail = decision.outcomes["segmentation"].detail
            result = SampleResult(sample.key, "dropped", decision.failed, truths[i].country, problems,
                                  len(seg_detail.get("verified") or []), len(seg_detail.get("hallucinated") or []))
            chain = decision.kept_teacher if decision.kept else decision.non_localizable_chain
            route = "kept" if decision.kept else ("non_localizable" if self.write_non_localizable and chain is not None else "dropped")
            if route != "dropped":
                distill = provenance(names, r_i, v_i, decision, gps[i], self.gps_teacher.name if self.gps_teacher else None,
                                     seg_source, pid, names_from[i])
                distill["kept_teacher"] = names[chain]
                result.route = route
                result.meta = output_meta(sample, truths[i].country, truths[i].city, route == "kept",
                                          r_i[chain].completion(), decision.entities if route == "kept" else [], distill)
                result.jpg = jpeg_bytes(sample)
            out.results.append(result)
        out.seconds["filters"] = time.perf_counter() - start
        return out

