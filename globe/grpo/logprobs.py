"""Log-probabilities of sampled completions under a vision-language policy (one forward pass).

The quantity is the one every rollout engine reports (``globe.rollout.base``): for completion token
t, ``log_softmax(logits_{t-1} / temperature)[token_t]`` over the full vocabulary.

How the forward pass is built (traps noted inline):
- Prompts come once per prompt (``[B, P]``, left-padded); completions n per prompt (``[B*n, C]``,
  right-padded, row ``b * n + j`` is sample j of prompt b). The prompt tensors are repeated n times.
- Everything the model family adds (extra position inputs extended over the completion, images
  encoded once per prompt with their features repeated n times, or the pixels repeated with
  ``share_image_features=False``) comes from the model's backbone
  (``globe.models.backbones``, ``VLMBackbone.logprob_inputs``). A model of no registered family
  is scored on text-only prompts.
- Only the C + 1 last positions go through ``lm_head`` (``logits_to_keep``): the ``[N, P, V]`` prompt
  logits are never built. The log-softmax is taken in float32, a few rows at a time.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from globe.models.backbones import VLMBackbone, backbone_for
from globe.models.backbones.base import repeat_rows as _repeat_rows
from globe.models.backbones.patch_grid import images_per_prompt, repeat_images  # noqa: F401 - re-exported
from globe.models.sharding import is_sharded

_TEXT_ONLY = VLMBackbone()


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
        model: a Hugging Face ``...ForConditionalGeneration`` of a registered family (or a peft model
            around it).
        prompt_inputs: the processor's output for B prompts (``VLMBackbone.encode``): ``input_ids`` /
            ``attention_mask`` ``[B, P]`` (left-padded), the images and the family's extra inputs.
            Text-only prompts (no images) work too.
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

    # the family's extra inputs: positions over the completion, images (features repeated n times)
    backbone = backbone_for(model, default=_TEXT_ONLY)
    kwargs.update(backbone.logprob_inputs(model, prompt_inputs, completion_ids, n, share_image_features))

    # trap: a policy can sample a vision placeholder (an image-slot token) as ordinary text. The model
    # finds image slots by token id, so such a completion would be taken for extra image slots ("Image
    # features and image tokens do not match"). The backbone rebuilds the inputs so that those tokens
    # are embedded as text and take text positions (``VLMBackbone.placeholder_inputs``).
    placeholders = backbone.placeholder_token_ids(model.config)
    is_placeholder = torch.isin(completion_ids, torch.tensor(placeholders, dtype=completion_ids.dtype, device=device))  # [N, C]
    if _on_any_rank(bool(is_placeholder.any()), model):
        kwargs = backbone.placeholder_inputs(model, kwargs, completion_ids, is_placeholder)

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

