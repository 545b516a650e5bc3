"""PIL images -> normalised pixel tensors, the way CLIP-style vision towers expect them.

Each image is converted to RGB, resized so its shorter side is ``size`` (bicubic), centre
cropped to ``size x size``, scaled to [0, 1] and normalised per channel with ``mean`` / ``std``
(CLIP's by default). This is what ``CLIPImageProcessor`` does with its default settings; it is
written out here so no image processor (and no torchvision) is needed. The statistics of a
local model directory are read from its ``preprocessor_config.json`` when it has one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

__all__ = ["CLIP_MEAN", "CLIP_STD", "pixel_values", "read_preprocessor_stats"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _resize_and_crop(image: Image.Image, size: int) -> Image.Image:
    image = image.convert("RGB")
    w, h = image.size
    scale = size / min(w, h)
    if (w, h) != (size, size):
        image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    return image.crop((left, top, left + size, top + size))


def pixel_values(images: Sequence[Image.Image], size: int, mean: Sequence[float] = CLIP_MEAN,
                 std: Sequence[float] = CLIP_STD) -> torch.Tensor:
    """``[B, 3, size, size]`` float32 tensor of the normalised images."""
    arrays = [np.asarray(_resize_and_crop(im, size), dtype=np.float32) / 255.0 for im in images]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # [B, 3, H, W]
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


def read_preprocessor_stats(model_dir: str | Path) -> dict:
    """``{"size", "mean", "std"}`` found in ``model_dir/preprocessor_config.json`` (missing keys omitted)."""
    path = Path(model_dir) / "preprocessor_config.json"
    if not path.is_file():
        return {}
    config = json.loads(path.read_text())
    out: dict = {}
    crop = config.get("crop_size") or config.get("size")
    if isinstance(crop, dict):
        crop = crop.get("height") or crop.get("shortest_edge")
    if isinstance(crop, int):
        out["size"] = crop
    if isinstance(config.get("image_mean"), list):
        out["mean"] = tuple(config["image_mean"])
    if isinstance(config.get("image_std"), list):
        out["std"] = tuple(config["image_std"])
    return out
