"""The distillation's teachers on tiny random models: a VLM through the HF rollout engine, the
GeoRetrieval GPS teacher (from arguments and from a fitted checkpoint), the sentence embedder."""

from __future__ import annotations

import csv

import pytest
import torch
from PIL import Image

from globe.distill import DistillTeachers, GPSTeacher, VLMTeacher
from globe.distill.prompt import DISTILL_PROMPT

IMAGES = [Image.new("RGB", (96, 64), (200, 40, 40)), Image.new("RGB", (64, 96), (20, 120, 220))]
TINY_RETRIEVAL = {"vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                    "num_attention_heads": 1, "image_size": 32, "patch_size": 16, "projection_dim": 32},
                  "image_mlp_hidden": 32, "embed_dim": 32, "num_frequencies": 16, "location_hidden": 32,
                  "location_depth": 1, "queue_size": 16}


def test_vlm_teacher_generates_one_reproducible_completion_per_image(tiny_model_dir):
    teacher = VLMTeacher("tiny", str(tiny_model_dir), sampling={"temperature": 0.7, "max_new_tokens": 6})
    teacher.load()
    first = teacher.generate(IMAGES, DISTILL_PROMPT, seed=3)
    assert len(first) == 2 and all(isinstance(t, str) for t in first)
    assert teacher.generate(IMAGES, DISTILL_PROMPT, seed=3) == first  # the batch's seed decides the samples
    assert teacher.generate([], DISTILL_PROMPT, seed=3) == []
    assert teacher.describe()["engine"] == "hf" and teacher.describe()["sampling"]["max_new_tokens"] == 6


def test_vlm_teacher_needs_its_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="build_tiny_if_missing"):
        VLMTeacher("t", str(tmp_path / "none")).load()
    with pytest.raises(ValueError, match="engine"):
        VLMTeacher("t", "x", engine="tgi")
    with pytest.raises(ValueError, match="distinct names"):
        DistillTeachers([VLMTeacher("t", "x"), VLMTeacher("t", "y")])


def _gallery_csv(path, points) -> str:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["IMG_ID", "LAT", "LON"])
        writer.writerows([f"{i}.jpg", lat, lon] for i, (lat, lon) in enumerate(points))
    return str(path)


def test_gps_teacher_from_arguments_answers_from_its_gallery(tmp_path):
    points = [(48.85, 2.35), (48.86, 2.34), (-12.05, -77.04), (35.68, 139.69)]
    torch.manual_seed(0)
    plain = GPSTeacher(model=TINY_RETRIEVAL, gallery=_gallery_csv(tmp_path / "g.csv", points))
    wide = GPSTeacher(model=TINY_RETRIEVAL, gallery=str(tmp_path / "g.csv"), confidence_radius_km=5_000.0)
    wide.load()
    plain.load()
    wide.retrieval.load_state_dict(plain.retrieval.state_dict())  # the same random model
    guesses, pooled = plain.locate(IMAGES), wide.locate(IMAGES)
    assert len(guesses) == 2
    for g, p in zip(guesses, pooled):
        assert (round(g.lat, 2), round(g.lon, 2)) in points
        assert 0.0 < g.confidence <= 1.0
        assert p.confidence >= g.confidence - 1e-6  # more gallery mass within the radius
    with pytest.raises(ValueError, match="checkpoint or model"):
        GPSTeacher()


@pytest.mark.slow
def test_gps_teacher_from_a_fitted_checkpoint(tmp_path, geosynth_root):
    """GeoRetrieval's own loader: a checkpoint whose gallery (the training locations) travels in it."""
    from lightning.pytorch import Trainer

    from data_modules.mp16_reason import MP16Reason
    from globe.retrieval import GeoRetrieval

    model = GeoRetrieval(**TINY_RETRIEVAL)
    data = MP16Reason(train_shards=str(geosynth_root / "train" / "train-{000000..000003}.tar"), batch_size=8, seed=0)
    trainer = Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, datamodule=data)
    ckpt = tmp_path / "retrieval.ckpt"
    trainer.save_checkpoint(ckpt)
    seen = {(round(float(a), 4), round(float(b), 4)) for a, b in model.seen.coordinates().tolist()}
    teacher = GPSTeacher(checkpoint=str(ckpt))
    guesses = teacher.locate(IMAGES)
    assert all((round(g.lat, 4), round(g.lon, 4)) in seen for g in guesses)
    assert teacher.describe()["checkpoint"] == str(ckpt)


def test_embedding_similarity_of_chains(tmp_path):
    from globe.distill.decision import Filters, decide
    from globe.distill.filters import AgreementFilter, CorrectnessFilter, LocalizabilityFilter, SegmentationFilter
    from globe.distill.parse import TeacherReading
    from globe.distill.text_embedding import TextEmbedder
    from globe.distill.tiny import build_tiny_text_encoder

    embedder = TextEmbedder(str(build_tiny_text_encoder(tmp_path / "enc")))
    chains = ["palm trees on sand near a pyramid", "palm trees on sand near a pyramid", "snow on a mountain road"]
    same, other = embedder.similarities_to(chains, 0)
    assert same == pytest.approx(1.0, abs=1e-5) and other < same
    emb = embedder.embed(chains)
    assert emb.shape[0] == 3 and torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)

    f = Filters(LocalizabilityFilter(enabled=False), CorrectnessFilter(enabled=False),
                AgreementFilter(reasoning="embedding", embedding_model_path=str(tmp_path / "enc"),
                                min_reasoning_similarity=(1.0 + other) / 2, gps_km=None),
                SegmentationFilter())
    r = [TeacherReading(True, 0.9, c, "Egypt", "Giza", ()) for c in chains]
    assert decide(r[:2], [None, None], f, similarity=embedder.similarities_to).outcomes["agreement"].passed
    assert decide([r[0], r[2]], [None, None], f, similarity=embedder.similarities_to).outcomes["agreement"].reason == "reasoning"
