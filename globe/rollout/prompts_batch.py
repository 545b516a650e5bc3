"""Build a ``PromptBatch`` (the rollout engines' input) from images and the task prompt."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from globe.models.backbones import VLMBackbone, backbone_for
from globe.prompts import GEO_PROMPT
from globe.rollout.base import PromptBatch


def build_prompt_batch(
    processor,
    images: Sequence[Image.Image],
    prompt: str | Sequence[str] = GEO_PROMPT,
    backbone: VLMBackbone | None = None,
) -> PromptBatch:
    """Chat-template one prompt per image and run the processor over the batch.

    ``texts`` keep ONE un-expanded image placeholder each (vLLM expands it itself); ``inputs`` has the
    expanded image tokens, LEFT padding (so every prompt ends where its completion starts) and the
    family's extra inputs (``VLMBackbone.encode``: e.g. the token types the model's 3-D positions
    need). The processor's tokenizer is not modified.

    Args:
        processor: the model's processor (an image-only one or the stock one).
        images: B images; converted to RGB.
        prompt: the user prompt, one for all images or one per image.
        backbone: the model family; ``None``: the processor's.
    """
    if not images:
        raise ValueError("build_prompt_batch needs at least one image")
    prompts = [prompt] * len(images) if isinstance(prompt, str) else list(prompt)
    if len(prompts) != len(images):
        raise ValueError(f"{len(prompts)} prompts for {len(images)} images")
    family = backbone if backbone is not None else backbone_for(processor)
    rgb = [image if image.mode == "RGB" else image.convert("RGB") for image in images]
    texts = [family.chat_prompt(processor, p) for p in prompts]
    inputs = family.encode(processor, texts, rgb, padding_side="left")
    return PromptBatch(images=rgb, texts=texts, inputs=inputs)


def prompt_inputs_to(inputs: dict[str, torch.Tensor], device: torch.device | str) -> dict[str, torch.Tensor]:
    """The processor tensors on ``device`` (a new dict; floating tensors keep their dtype)."""
    return {k: v.to(device) for k, v in inputs.items()}
