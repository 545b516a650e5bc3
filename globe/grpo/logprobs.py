"""Log-probabilities of sampled completions under a Qwen2.5-VL policy (one forward pass).

The quantity is the one every rollout engine reports (``globe.rollout.base``): for completion token
t, ``log_softmax(logits_{t-1} / temperature)[token_t]`` over the full vocabulary.

How the forward pass is built (traps noted inline):
- Prompts come once per prompt (``[B, P]``, left-padded); completions n per prompt (``[B*n, C]``,
  right-padded, row ``b * n + j`` is sample j of prompt b). The prompt tensors are repeated n times.
- ``mm_token_type_ids`` is extended with zeros over the completion. Without it the model cannot
  build its 3-D (M-RoPE) positions and silently falls back to 1-D positions, and the log-probs no
  longer match ``generate``.
- Images: ``pixel_values`` is ``[sum of patches, D]``, the patches of every image concatenated,
  ``image_grid_thw`` ``[num_images, 3]`` says how many rows belong to each. By default the vision
  tower runs once per prompt and its features are repeated (what ``generate`` does, n times less
  vision compute); ``share_image_features=False`` repeats the pixels instead (``repeat_images``).
- Only the C + 1 last positions go through ``lm_head`` (``logits_to_keep``): the ``[N, P, V]`` prompt
  logits are never built. The log-softmax is taken in float32, a few rows at a time.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from globe.models.sharding import is_sharded


def images_per_prompt(image_tokens_per_prompt: torch.Tensor, image_grid_thw: torch.Tensor) -> list[int]:
    """How many images each prompt holds, from its image-token count and each image's patch grid.

    Every image gives ``t*h*w / merge**2`` tokens (merge = the vision tower's spatial merge, 2 for
    Qwen2.5-VL); the ratio patches / tokens is read from the totals, so the merge size is not needed.
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
    return torch.cat(pixels, dim=0), _repeat_grid(image_grid_thw, n, counts)


def selective_log_softmax(logits: torch.Tensor, index: torch.Tensor, temperature: float = 1.0, chunk: int = 1) -> torch.Tensor:
    """``log_softmax(logits / temperature)`` gathered at ``index``: ``[N, C, V], [N, C] -> [N, C]`` float32.

    Computed as ``logit[index] - logsumexp(logits)`` in float32, ``chunk`` rows at a time, so without
    gradient (old and reference log-probs) no float32 ``[N, C, V]`` tensor is ever built. With
    gradient, autograd keeps each chunk's float32 logits for the backward pass.
    """
    out = []
    for rows, idx in zip(logits.split(chunk, dim=0), index.split(chunk, dim=0)):
        scaled = rows.float()  # [n, C, V]
        if temperature != 1.0:
            scaled = scaled / temperature
        picked = scaled.gather(-1, idx.unsqueeze(-1)).squeeze(-1)  # [n, C]
        out.append(picked - torch.logsumexp(scaled, dim=-1))
    return torch.cat(out, dim=0)


def _repeat_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    return x if n == 1 else x.repeat_interleave(n, dim=0)


def completion_logprobs(
    model: torch.nn.Module,
    prompt_inputs: Mapping[str, torch.Tensor],
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    temperature: float = 1.0,
    share_image_features: bool = True,
) -> torch.Tensor:
    """Per-token log-probs of the completions, ``[N, C]`` float32, 0 on padding.

    Args:
        model: a Hugging Face Qwen2.5-VL ``...ForConditionalGeneration`` (or a peft model around it).
        prompt_inputs: the processor's output for B prompts: ``input_ids`` / ``attention_mask`` /
            ``mm_token_type_ids`` ``[B, P]`` (left-padded), ``pixel_values``, ``image_grid_thw``.
            Text-only prompts (no ``pixel_values``) work too.
        completion_ids: ``[N, C]`` with N = B * n; row ``b * n + j`` continues prompt b.
        completion_mask: ``[N, C]`` 1 on generated tokens (EOS included), 0 on padding.
        temperature: the sampling temperature (logits are divided by it); <= 0 means greedy, scored at 1.
        share_image_features: encode each image once and repeat its features (default), or repeat
            the pixels and encode every copy.
    """
    prompt_ids = prompt_inputs["input_ids"]  # [B, P]
    num_prompts, num_rows = prompt_ids.shape[0], completion_ids.shape[0]
    if num_rows % num_prompts:
        raise ValueError(f"{num_rows} completions is not a multiple of {num_prompts} prompts")
    n = num_rows // num_prompts
    device = prompt_ids.device
    completion_ids = completion_ids.to(device)
    completion_mask = completion_mask.to(device)
    num_completion = completion_ids.shape[1]  # C

    prompt_mask = prompt_inputs.get("attention_mask", torch.ones_like(prompt_ids))
    input_ids = torch.cat([_repeat_rows(prompt_ids, n), completion_ids], dim=1)  # [N, P+C]
    attention_mask = torch.cat([_repeat_rows(prompt_mask, n), completion_mask.to(prompt_mask.dtype)], dim=1)  # [N, P+C]
    kwargs: dict = {"input_ids": input_ids, "attention_mask": attention_mask}

    mm_types = prompt_inputs.get("mm_token_type_ids")
    if mm_types is not None:  # trap: without it the positions (M-RoPE) differ from generate's
        zeros = torch.zeros_like(completion_ids, dtype=mm_types.dtype)
        kwargs["mm_token_type_ids"] = torch.cat([_repeat_rows(mm_types, n), zeros], dim=1)  # [N, P+C]

    pixel_values = prompt_inputs.get("pixel_values")
    if pixel_values is not None:
        grid = prompt_inputs["image_grid_thw"]  # [I, 3]
        image_tokens = (prompt_ids == _image_token_id(model)).sum(dim=1)  # [B]
        counts = images_per_prompt(image_tokens, grid)
        encode = getattr(model, "get_image_features", None)
        if share_image_features and encode is not None:
            features = encode(pixel_values, grid, return_dict=True).pooler_output  # I x [tokens_i, H]
            repeated, start = [], 0
            for count in counts:
                repeated += list(features[start : start + count]) * n
                start += count
            kwargs["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(pooler_output=repeated)}
            kwargs["image_grid_thw"] = _repeat_grid(grid, n, counts)
        else:
            kwargs["pixel_values"], kwargs["image_grid_thw"] = repeat_images(pixel_values, grid, n, counts)

    # trap: a policy can sample a vision placeholder (<|image_pad|>) as ordinary text. The model finds
    # image slots by token id, so such a completion would be taken for extra image slots ("Image
    # features and image tokens do not match"). Embed the true ids, and give the model ids where those
    # completion tokens are replaced, for slot detection only (positions come from mm_token_type_ids).
    placeholders = _placeholder_ids(model)
    is_placeholder = torch.isin(completion_ids, torch.tensor(placeholders, device=device))  # [N, C]
    if _on_any_rank(bool(is_placeholder.any()), model):
        kwargs["inputs_embeds"] = model.get_input_embeddings()(input_ids)  # [N, P+C, H]
        masked_completion = completion_ids.masked_fill(is_placeholder, _non_placeholder_id(placeholders))
        kwargs["input_ids"] = torch.cat([input_ids[:, : input_ids.shape[1] - num_completion], masked_completion], dim=1)

    # logits at position t score token t + 1: the completion is scored by the C positions before
    # its end, i.e. the last C + 1 positions minus the very last.
    logits = model(**kwargs, use_cache=False, logits_to_keep=num_completion + 1).logits[:, :-1]  # [N, C, V]
    logp = selective_log_softmax(logits, completion_ids, temperature if temperature > 0 else 1.0)  # [N, C]
    return logp * completion_mask.to(logp.dtype)


def _on_any_rank(flag: bool, model: torch.nn.Module) -> bool:
    """``flag`` on this rank, or, for a sharded model, on any rank: the branch it guards calls the
    embedding unit (a parameter all-gather), so every rank must take it or none."""
    if not (is_sharded(model) and torch.distributed.is_available() and torch.distributed.is_initialized()):
        return flag
    value = torch.tensor([int(flag)], device=next(model.parameters()).device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


def _repeat_grid(grid: torch.Tensor, n: int, counts: list[int]) -> torch.Tensor:
    """``image_grid_thw`` rows in the order ``repeat_images`` produces."""
    rows, start = [], 0
    for count in counts:
        rows += [grid[start : start + count]] * n
        start += count
    return torch.cat(rows, dim=0)


def _placeholder_ids(model: torch.nn.Module) -> list[int]:
    config = model.config
    ids = [getattr(config, name, None) for name in ("image_token_id", "video_token_id")]
    return [int(i) for i in ids if i is not None]


def _non_placeholder_id(placeholders: list[int]) -> int:
    return next(i for i in range(len(placeholders) + 1) if i not in placeholders)


def _image_token_id(model: torch.nn.Module) -> int:
    config = model.config
    token_id = getattr(config, "image_token_id", None)
    if token_id is None:
        raise ValueError("the model config has no image_token_id; is it a vision-language model?")
    return int(token_id)

