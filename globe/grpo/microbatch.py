"""Slicing a rollout batch into micro-batches of whole groups (prompts), for gradient accumulation.

Processor outputs hold per-prompt rows (``input_ids`` ``[B, P]``...) and per-image patch rows
(``pixel_values`` ``[sum_i t_i*h_i*w_i, D]``, one block per image in prompt order, sizes given by
``image_grid_thw`` ``[I, 3]``). A slice of prompts must take the matching blocks of patches.
"""

from __future__ import annotations

import torch


def slice_prompt_inputs(inputs: dict[str, torch.Tensor], start: int, end: int, images_per_prompt: int = 1) -> dict[str, torch.Tensor]:
    """Prompts ``start:end`` of a processor batch (each prompt with ``images_per_prompt`` images)."""
    out = {}
    grid = inputs.get("image_grid_thw")
    for key, value in inputs.items():
        if key == "pixel_values":
            patches = grid.prod(dim=1)  # [I]
            offsets = torch.cat([patches.new_zeros(1), patches.cumsum(0)])  # [I + 1]
            lo, hi = offsets[start * images_per_prompt], offsets[end * images_per_prompt]
            out[key] = value[lo:hi]
        elif key == "image_grid_thw":
            out[key] = value[start * images_per_prompt : end * images_per_prompt]
        else:
            out[key] = value[start:end]
    return out


def group_chunks(num_prompts: int, prompts_per_chunk: int | None) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` prompt ranges covering ``num_prompts``.

    >>> group_chunks(5, 2)
    [(0, 2), (2, 4), (4, 5)]
    >>> group_chunks(3, None)
    [(0, 3)]
    """
    step = num_prompts if not prompts_per_chunk else prompts_per_chunk
    return [(s, min(s + step, num_prompts)) for s in range(0, num_prompts, step)]
