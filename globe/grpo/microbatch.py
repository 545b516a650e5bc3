"""Slicing a rollout batch into micro-batches of whole groups (prompts), for gradient accumulation.

Processor outputs hold per-prompt rows (``input_ids`` ``[B, P]``...), per-image rows and per-image
blocks of pixel rows (patches or tiles, one block per image in prompt order). A slice of prompts must
take its images' rows and blocks; which tensors are which, and how long each block is, is the model
family's layout (``VLMBackbone.slice_inputs``), recognised from the tensors the processor produced.
"""

from __future__ import annotations

import torch

from globe.models.backbones import VLMBackbone, backbone_for_inputs

_TEXT_ONLY = VLMBackbone()


def slice_prompt_inputs(
    inputs: dict[str, torch.Tensor], start: int, end: int, images_per_prompt: int = 1, backbone: VLMBackbone | None = None
) -> dict[str, torch.Tensor]:
    """Prompts ``start:end`` of a processor batch (each prompt with ``images_per_prompt`` images).

    ``backbone``: the family whose processor made ``inputs``; ``None``: recognised from its tensors
    (text-only inputs are sliced by rows)."""
    if backbone is None:
        backbone = backbone_for_inputs(inputs, default=_TEXT_ONLY)
    return backbone.slice_inputs(inputs, start, end, images_per_prompt)


def group_chunks(num_prompts: int, prompts_per_chunk: int | None) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` prompt ranges covering ``num_prompts``.

    >>> group_chunks(5, 2)
    [(0, 2), (2, 4), (4, 5)]
    >>> group_chunks(3, None)
    [(0, 3)]
    """
    step = num_prompts if not prompts_per_chunk else prompts_per_chunk
    return [(s, min(s + step, num_prompts)) for s in range(0, num_prompts, step)]
