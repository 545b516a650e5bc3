"""Image encoder: a vision tower (frozen by default, as in GeoCLIP) and a projection MLP.

    f = Tower(pixels)              # [B, F]: CLIP's projected image embedding, or the pooled output
    V = MLP(f)                     # Linear(F, hidden) -> ReLU -> Linear(hidden, embed_dim)

GeoCLIP's release: CLIP ViT-L/14 (``get_image_features``: F = 768), MLP 768 -> 768 -> 512.

The tower is either a local Hugging Face directory (``vision_path``) or a tiny random CLIP
vision model built from a ``CLIPVisionConfig`` (``vision_config``; the default one is a
2-layer, 64-wide ViT on 64 px images that runs on a CPU). From a directory:

* ``model_type`` ``clip`` or ``clip_vision_model`` (a whole CLIP checkpoint or its vision half):
  ``CLIPVisionModelWithProjection``, features = ``image_embeds`` (what GeoCLIP uses);
* ``siglip`` / ``siglip_vision_model``: ``SiglipVisionModel``, features = ``pooler_output``;
* anything else: ``AutoModel``, features = ``pooler_output`` (else the mean of
  ``last_hidden_state``).

Images are preprocessed by :func:`globe.retrieval.preprocess.pixel_values` with the
directory's ``preprocessor_config.json`` statistics when present (CLIP's otherwise).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image
from torch import nn

from globe.retrieval.preprocess import CLIP_MEAN, CLIP_STD, pixel_values, read_preprocessor_stats

__all__ = ["ImageEncoder", "TINY_VISION_CONFIG", "build_vision_tower"]

#: a CLIP vision tower small enough to train on two CPU cores
TINY_VISION_CONFIG: dict[str, Any] = {
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
    "image_size": 64, "patch_size": 16, "projection_dim": 64,
}


def build_vision_tower(vision_path: str | None, vision_config: dict | None) -> tuple[nn.Module, int, int, str]:
    """(tower, feature size, input image size, feature kind) for a directory or a config."""
    from transformers import AutoConfig, AutoModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    if vision_path is None:
        config = CLIPVisionConfig(**{**TINY_VISION_CONFIG, **(vision_config or {})})
        return CLIPVisionModelWithProjection(config), config.projection_dim, config.image_size, "image_embeds"
    if not Path(vision_path).is_dir():
        raise FileNotFoundError(f"vision_path {vision_path!r} is not a local model directory")
    model_type = AutoConfig.from_pretrained(vision_path).model_type
    if model_type in ("clip", "clip_vision_model"):
        tower = CLIPVisionModelWithProjection.from_pretrained(vision_path)
        return tower, tower.config.projection_dim, tower.config.image_size, "image_embeds"
    if model_type in ("siglip", "siglip_vision_model"):
        from transformers import SiglipVisionModel

        tower = SiglipVisionModel.from_pretrained(vision_path)
        return tower, tower.config.hidden_size, tower.config.image_size, "pooler_output"
    tower = AutoModel.from_pretrained(vision_path)
    config = getattr(tower.config, "vision_config", tower.config)
    return tower, config.hidden_size, getattr(config, "image_size", 224), "pooler_output"


class ImageEncoder(nn.Module):
    """PIL images -> image embeddings ``[B, embed_dim]`` (unnormalised).

    Args:
        vision_path: local Hugging Face vision model directory (``None``: the tiny tower).
        vision_config: ``CLIPVisionConfig`` arguments of the tiny tower (over :data:`TINY_VISION_CONFIG`).
        freeze_vision: keep the tower's weights fixed (GeoCLIP freezes CLIP) and run it in eval mode.
        mlp_hidden: width of the projection MLP.
        embed_dim: output size (the location encoder's).
        image_size: input side in pixels (``None``: the tower's own).
    """

    def __init__(self, vision_path: str | None = None, vision_config: dict | None = None, freeze_vision: bool = True,
                 mlp_hidden: int = 768, embed_dim: int = 512, image_size: int | None = None) -> None:
        super().__init__()
        self.tower, self.feature_dim, tower_size, self.feature_kind = build_vision_tower(vision_path, vision_config)
        stats = read_preprocessor_stats(vision_path) if vision_path else {}
        self.image_size = image_size or stats.get("size") or tower_size
        self.mean: Sequence[float] = stats.get("mean", CLIP_MEAN)
        self.std: Sequence[float] = stats.get("std", CLIP_STD)
        self.freeze_vision = freeze_vision
        if freeze_vision:
            self.tower.requires_grad_(False)
        self.mlp = nn.Sequential(nn.Linear(self.feature_dim, mlp_hidden), nn.ReLU(), nn.Linear(mlp_hidden, embed_dim))

    def train(self, mode: bool = True) -> "ImageEncoder":
        super().train(mode)
        if self.freeze_vision:
            self.tower.eval()  # a frozen tower never runs its dropout
        return self

    def pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return pixel_values(images, self.image_size, self.mean, self.std)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The tower's image features ``[B, F]``."""
        dtype = next(self.tower.parameters()).dtype
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_vision):
            out = self.tower(pixel_values=pixels.to(dtype))
        if self.feature_kind == "image_embeds":
            return out.image_embeds
        pooled = getattr(out, "pooler_output", None)
        return pooled if pooled is not None else out.last_hidden_state.mean(dim=1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.features(pixels)
        return self.mlp(features.to(self.mlp[0].weight.dtype))
