"""The GPS teacher: a :class:`globe.retrieval.GeoRetrieval` model's top-1 coordinates and confidence.

Loaded by GeoRetrieval's own means: a Lightning checkpoint of ``cli.py fit --config
configs/retrieval/...`` (``checkpoint``; its gallery of training locations travels in the
checkpoint), or a model built from its arguments (``model``: e.g. ``{geoclip: true,
vision_path: <CLIP ViT-L/14 dir>, gallery: geoclip}`` for GeoCLIP's released weights, or a tiny
random one for tests). ``gallery`` replaces the model's gallery (a CSV with LAT / LON columns,
or ``geoclip``).

Confidence, as GeoCLIP computes its probabilities: ``softmax(exp(t) * cos(V(x), L(g)))`` over the
whole gallery, with ``exp(t)`` the model's (clamped) logit scale; the top-1 point's probability,
or with ``confidence_radius_km > 0`` the total probability of the gallery points within that
radius of the top-1 (a dense gallery splits one place's mass over many nearby points).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from PIL import Image
from torch import nn

from globe.geo.distance import great_circle_km

__all__ = ["GPSGuess", "GPSTeacher", "gallery_confidence"]


class GPSGuess(NamedTuple):
    lat: float
    lon: float
    confidence: float


def gallery_confidence(scores: torch.Tensor, coordinates: torch.Tensor, logit_scale: float,
                       radius_km: float = 0.0) -> torch.Tensor:
    """Confidence of the top-1 from gallery hits sorted best first: cosines ``[B, K]`` and their
    coordinates ``[B, K, 2]`` (K = the whole gallery for GeoCLIP's exact probabilities).

    >>> scores = torch.tensor([[0.9, 0.8, 0.1]])
    >>> coords = torch.tensor([[[0.0, 0.0], [0.0, 0.1], [50.0, 50.0]]])
    >>> round(gallery_confidence(scores, coords, logit_scale=10.0).item(), 3)
    0.731
    >>> round(gallery_confidence(scores, coords, 10.0, radius_km=20.0).item(), 3)  # the point 11 km away counts
    1.0
    """
    probs = torch.softmax(scores.float() * logit_scale, dim=-1)  # [B, K]
    if radius_km <= 0:
        return probs[:, 0]
    c = coordinates.double()
    km = torch.as_tensor(great_circle_km(c[:, :1, 0], c[:, :1, 1], c[:, :, 0], c[:, :, 1]))  # [B, K]
    return (probs * (km <= radius_km)).sum(dim=-1)


class GPSTeacher(nn.Module):
    """Args:
    checkpoint: a GeoRetrieval Lightning checkpoint.
    model: GeoRetrieval arguments, used when there is no checkpoint.
    gallery: replaces the model's gallery (CSV path with LAT / LON columns, or ``geoclip``).
    confidence_radius_km: 0: the top-1 point's probability; else the probability within this radius of it.
    confidence_top_k: gallery points the softmax runs over (None: all of them, GeoCLIP's
        probabilities; a large gallery's tail adds little at GeoCLIP's temperature).
    name: the GPS teacher's name in the provenance.
    """

    def __init__(self, checkpoint: str | None = None, model: dict[str, Any] | None = None, gallery: str | None = None,
                 confidence_radius_km: float = 0.0, confidence_top_k: int | None = None, name: str = "gps") -> None:
        super().__init__()
        if checkpoint is None and model is None:
            raise ValueError("GPSTeacher needs a checkpoint or model arguments")
        self.checkpoint, self.model_args, self.gallery_source = checkpoint, dict(model or {}), gallery
        self.confidence_radius_km, self.confidence_top_k, self.name = confidence_radius_km, confidence_top_k, name
        self.retrieval: nn.Module | None = None
        self._gallery = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "checkpoint": self.checkpoint, "gallery": self.gallery_source,
                "confidence_radius_km": self.confidence_radius_km, "confidence_top_k": self.confidence_top_k}

    def load(self) -> None:
        if self.retrieval is not None:
            return
        from globe.retrieval import GeoRetrieval

        override = {"gallery": self.gallery_source} if self.gallery_source is not None else {}
        if self.checkpoint is not None:
            self.retrieval = GeoRetrieval.load_from_checkpoint(self.checkpoint, map_location="cpu", **override)
        else:
            self.retrieval = GeoRetrieval(**{**self.model_args, **override})
        self.retrieval.eval().requires_grad_(False)

    @torch.no_grad()
    def locate(self, images: Sequence[Image.Image]) -> list[GPSGuess]:
        """Top-1 coordinates and confidence of each image."""
        if not images:
            return []
        self.load()
        retrieval = self.retrieval
        if self._gallery is None:
            self._gallery = retrieval.build_gallery()
            if self._gallery is None:
                raise RuntimeError("the GPS teacher's gallery is empty: give a trained checkpoint, or set gallery")
        gallery = self._gallery
        k = len(gallery) if self.confidence_top_k is None else min(self.confidence_top_k, len(gallery))
        hits = gallery.search(retrieval.embed_images(list(images)), k=k)  # sorted best first
        scale = float(retrieval.logit_scale.exp().clamp(max=retrieval.hparams.max_logit_scale))
        confidence = gallery_confidence(hits.scores, hits.coordinates, scale, self.confidence_radius_km)
        best = hits.coordinates[:, 0].float().cpu()  # [B, 2]
        return [GPSGuess(float(b[0]), float(b[1]), float(c)) for b, c in zip(best, confidence.cpu())]
