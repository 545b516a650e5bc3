"""Build a ``PromptBatch`` (the rollout engines' input) from images and the task prompt."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from globe.prompts import GEO_PROMPT, chat_prompt
from globe.rollout.base import PromptBatch


def build_prompt_batch(
    processor,
    images: Sequence[Image.Image],
    prompt: str | Sequence[str] = GEO_PROMPT,
) -> PromptBatch:
    """Chat-template one prompt per image and run the processor over the batch.

    ``texts`` keep ONE un-expanded ``<|image_pad|>`` each (vLLM expands it itself); ``inputs`` has the
    expanded image tokens, LEFT padding (so every prompt ends where its completion starts) and
    ``mm_token_type_ids`` (the model needs it for its 3-D positions). The processor's tokenizer is
    not modified.

    Args:
        processor: a Qwen2.5-VL processor (``ImageOnlyQwen2_5_VLProcessor`` or the stock one).
        images: B images; converted to RGB.
        prompt: the user prompt, one for all images or one per image.
    """
    if not images:
        raise ValueError("build_prompt_batch needs at least one image")
    prompts = [prompt] * len(images) if isinstance(prompt, str) else list(prompt)
    if len(prompts) != len(images):
        raise ValueError(f"{len(prompts)} prompts for {len(images)} images")
    rgb = [image if image.mode == "RGB" else image.convert("RGB") for image in images]
    texts = [chat_prompt(processor, p) for p in prompts]
    inputs = processor(
        text=texts,
        images=rgb,
        padding=True,
        padding_side="left",
        return_tensors="pt",
        return_mm_token_type_ids=True,
    )
    return PromptBatch(images=rgb, texts=texts, inputs={k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)})


def prompt_inputs_to(inputs: dict[str, torch.Tensor], device: torch.device | str) -> dict[str, torch.Tensor]:
    """The processor tensors on ``device`` (a new dict; floating tensors keep their dtype)."""
    return {k: v.to(device) for k, v in inputs.items()}
