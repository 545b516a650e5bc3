"""Where the visual-grounding reward learns what is really in an image.

:class:`ImageElementSource` is the protocol: ``elements(batch) -> list[list[str]]``, one list
of element labels per completion. Two implementations:

* :class:`SampleEntities` (default): the sample's ``entities`` field (MP16-Reason's verified
  visual elements, GeoSynth's drawn elements);
* :class:`SegmentationLabels`: the classes a semantic-segmentation model finds in the image,
  for data without entity annotations. It wraps any Hugging Face semantic-segmentation
  directory (``AutoModelForSemanticSegmentation``: SegFormer, BEiT, DPT, UperNet ... with
  per-pixel ``logits``; MaskFormer / Mask2Former with query logits) with its own
  preprocessing read from ``preprocessor_config.json`` (resize, rescale, normalise), so it
  needs neither ``pipeline`` nor torchvision. A class is an element when it covers at least
  ``min_fraction`` of the pixels. Each distinct image of a batch is segmented once (a GRPO
  group repeats the same image object).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image
from torch import nn

from globe.rewards.base import RewardBatch

__all__ = ["ImageElementSource", "SampleEntities", "SegmentationLabels"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@runtime_checkable
class ImageElementSource(Protocol):
    """Labels of the visual elements in each completion's image."""

    def elements(self, batch: RewardBatch) -> list[list[str]]: ...


class SampleEntities:
    """Elements = the sample's annotated ``entities``."""

    def elements(self, batch: RewardBatch) -> list[list[str]]:
        return [[e for e in (s.entities or []) if isinstance(e, str)] for s in batch.samples]


class SegmentationLabels(nn.Module):
    """Elements = classes a local semantic-segmentation model finds in the image.

    Args:
        model_path: Hugging Face directory of a semantic-segmentation model (config with
            ``id2label``, weights, ``preprocessor_config.json``).
        min_fraction: smallest fraction of the pixels a class must cover to count.
        batch_size: images per forward pass.
        ignore_labels: class names never reported (e.g. "background", "other").
    """

    def __init__(
        self,
        model_path: str,
        min_fraction: float = 0.01,
        batch_size: int = 8,
        ignore_labels: list[str] | None = None,
    ) -> None:
        super().__init__()
        from transformers import AutoModelForSemanticSegmentation

        self.model = AutoModelForSemanticSegmentation.from_pretrained(model_path).eval()
        self.model.requires_grad_(False)
        self.min_fraction = min_fraction
        self.batch_size = batch_size
        self.ignore_labels = set(ignore_labels or ["background", "other", "unlabeled"])
        self.id2label = {int(k): v for k, v in self.model.config.id2label.items()}
        cfg_file = Path(model_path) / "preprocessor_config.json"
        cfg = json.loads(cfg_file.read_text()) if cfg_file.exists() else {}
        self.height, self.width = _target_size(cfg.get("size", 512))
        self.rescale = float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0
        normalize = cfg.get("do_normalize", True)
        mean = cfg.get("image_mean", _IMAGENET_MEAN) if normalize else (0.0, 0.0, 0.0)
        std = cfg.get("image_std", _IMAGENET_STD) if normalize else (1.0, 1.0, 1.0)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, images: list[Image.Image]) -> torch.Tensor:  # [B, 3, H, W]
        size = (self.width, self.height)
        arrays = [np.asarray(im.convert("RGB").resize(size, Image.BILINEAR), dtype=np.float32) for im in images]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(self.mean.device) * self.rescale
        return (x - self.mean) / self.std

    @torch.no_grad()
    def segment(self, images: list[Image.Image]) -> torch.Tensor:  # [B, h, w] class ids
        out = self.model(pixel_values=self.preprocess(images).to(self.model.dtype))
        logits = getattr(out, "logits", None)
        if logits is not None and logits.dim() == 4:  # [B, C, h, w]
            return logits.argmax(1)
        # MaskFormer family: per-query class scores (last = "no object") x per-query masks
        classes = out.class_queries_logits.softmax(-1)[..., :-1]  # [B, Q, C]
        masks = out.masks_queries_logits.sigmoid()  # [B, Q, h, w]
        return torch.einsum("bqc,bqhw->bchw", classes, masks).argmax(1)

    def labels_of(self, images: list[Image.Image]) -> list[list[str]]:
        """Class names covering >= ``min_fraction`` of each image, largest first."""
        out: list[list[str]] = []
        for start in range(0, len(images), self.batch_size):
            seg = self.segment(images[start : start + self.batch_size])
            n_cls = max(self.id2label) + 1 if self.id2label else int(seg.max()) + 1
            for row in seg.flatten(1):
                frac = torch.bincount(row, minlength=n_cls).float() / row.numel()
                order = torch.argsort(frac, descending=True).tolist()
                names = [self.id2label.get(i, str(i)) for i in order if frac[i] >= self.min_fraction]
                out.append([n for n in names if n not in self.ignore_labels])
        return out

    def elements(self, batch: RewardBatch) -> list[list[str]]:
        unique: dict[int, int] = {}
        images: list[Image.Image] = []
        for im in batch.images:
            if id(im) not in unique:
                unique[id(im)] = len(images)
                images.append(im)
        labels = self.labels_of(images) if images else []
        return [labels[unique[id(im)]] for im in batch.images]


def _target_size(size: int | dict) -> tuple[int, int]:
    """(height, width) from an HF image-processor ``size`` entry."""
    if isinstance(size, int):
        return size, size
    if "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    edge = int(size.get("shortest_edge") or size.get("longest_edge") or 512)
    return edge, edge
