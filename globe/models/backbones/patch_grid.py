"""Images as patch rows with a ``(t, h, w)`` grid each: the input layout of the Qwen-VL families.

``pixel_values`` is ``[sum_i t_i*h_i*w_i, D]``, the patches of every image concatenated in prompt
order; ``image_grid_thw`` ``[I, 3]`` says how many rows belong to each image. Every image gives
``t*h*w / merge**2`` image tokens in the prompt (merge = the vision tower's spatial merge, 2).
"""

from __future__ import annotations

import torch


def images_per_prompt(image_tokens_per_prompt: torch.Tensor, image_grid_thw: torch.Tensor) -> list[int]:
    """How many images each prompt holds, from its image-token count and each image's patch grid.

    The ratio patches / tokens is read from the totals, so the merge size is not needed.

    >>> images_per_prompt(torch.tensor([3, 1]), torch.tensor([[1, 2, 2], [1, 4, 2], [1, 2, 2]]))
    [2, 1]
    """
    tokens = [int(x) for x in image_tokens_per_prompt.tolist()]
    patches = image_grid_thw.prod(dim=-1).tolist()  # [num_images]
    total_tokens = sum(tokens)
    if total_tokens == 0 or sum(patches) % total_tokens:
        raise ValueError(f"{total_tokens} image tokens cannot hold {sum(patches)} patches")
    patches_per_token = sum(patches) // total_tokens
    counts, image = [], 0
    for wanted in tokens:
        count, got = 0, 0
        while got < wanted:
            if image >= len(patches):
                raise ValueError("image tokens and image_grid_thw do not match")
            got += patches[image] // patches_per_token
            image += 1
            count += 1
        if got != wanted:
            raise ValueError("image tokens and image_grid_thw do not match")
        counts.append(count)
    if image != len(patches):
        raise ValueError("more images in image_grid_thw than image tokens in the prompts")
    return counts


def repeat_grid(grid: torch.Tensor, n: int, counts: list[int]) -> torch.Tensor:
    """``image_grid_thw`` rows in the order :func:`repeat_images` produces."""
    rows, start = [], 0
    for count in counts:
        rows += [grid[start : start + count]] * n
        start += count
    return torch.cat(rows, dim=0)


def repeat_images(
    pixel_values: torch.Tensor, image_grid_thw: torch.Tensor, n: int, images_per_prompt: list[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Repeat each prompt's images n times, in row order ``b * n + j``.

    ``pixel_values`` ``[sum_i t_i*h_i*w_i, D]`` -> ``[n * sum, D]``; ``image_grid_thw`` ``[I, 3]`` ->
    ``[n * I, 3]``. With one image per prompt (default), images ``[a, b]`` become ``[a]*n + [b]*n``;
    a prompt with several images gets its whole group repeated: ``[a1, a2]`` -> ``[a1, a2, a1, a2]``.
    """
    counts = images_per_prompt if images_per_prompt is not None else [1] * image_grid_thw.shape[0]
    patch_rows = image_grid_thw.prod(dim=-1).tolist()  # [I]
    image_blocks = list(torch.split(pixel_values, patch_rows, dim=0))  # I x [t*h*w, D]
    pixels, start = [], 0
    for count in counts:
        pixels += image_blocks[start : start + count] * n
        start += count
    return torch.cat(pixels, dim=0), repeat_grid(image_grid_thw, n, counts)


def repeat_per_image(items, counts: list[int], n: int) -> list:
    """Per-image items (features, one entry per image) in the order :func:`repeat_images` produces."""
    repeated, start = [], 0
    for count in counts:
        repeated += list(items[start : start + count]) * n
        start += count
    return repeated
