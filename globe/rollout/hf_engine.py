"""Rollouts with transformers' ``generate`` on the trained module itself.

The engine holds a reference to the policy (the same ``nn.Module`` the optimiser updates; with LoRA,
the ``PeftModel``), so it always samples from the current weights and ``sync_weights`` only rebinds.
Fast for small models on the CPU; on GPUs at scale the vLLM engine is the fast path.

Sampling follows the policy's own distribution: ``repetition_penalty`` and similar defaults a
checkpoint's ``generation_config.json`` may carry are switched off (instruction-tuned checkpoints
ship e.g. ``repetition_penalty=1.05``), otherwise the samples would not come from the policy being
trained.

The model's family (``globe.models.backbones``) gives the stop tokens and which of the processor's
tensors ``generate`` takes (bookkeeping such as per-image tile counts is left out).

Under FSDP2 (``globe.models.sharding``) every forward gathers parameters collectively, so the
ranks must step together: ``synced_gpus=True`` keeps a rank whose sequences are finished stepping
until every rank's are (otherwise the ranks' all-gathers pair up out of order).

Reported log-probs follow ``globe.rollout.base``: ``log_softmax(raw_logits / temperature)`` at the
sampled token, from ``generate(output_logits=True)`` (raw logits, before top-k / top-p). Greedy
decoding (``temperature <= 0``) reports ``log_softmax(raw_logits)``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from globe.models.backbones import VLMBackbone, backbone_for
from globe.models.sharding import is_sharded
from globe.rollout.base import Completions, PromptBatch, RolloutEngine, SamplingConfig
from globe.rollout.prompts_batch import prompt_inputs_to
from globe.rollout.stop_tokens import default_stop_token_ids


def completion_mask(ids: torch.Tensor, eos_ids: Iterable[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask up to and including the first EOS of each row, and whether the row has no EOS.

    ``ids`` ``[N, C]`` -> ``(mask [N, C] long, truncated [N] bool)``.

    >>> m, t = completion_mask(torch.tensor([[5, 2, 0], [5, 6, 7]]), eos_ids=[2])
    >>> m.tolist(), t.tolist()
    ([[1, 1, 0], [1, 1, 1]], [False, True])
    """
    is_eos = torch.isin(ids, torch.tensor(sorted(set(eos_ids)), device=ids.device))  # [N, C]
    eos_before = is_eos.long().cumsum(dim=1) - is_eos.long()  # [N, C] EOS strictly before t
    mask = (eos_before == 0).long()  # [N, C]
    truncated = ~is_eos.any(dim=1)  # [N]
    return mask, truncated


class HFRolloutEngine(RolloutEngine):
    """``RolloutEngine`` on ``model.generate``.

    Args:
        model: the policy (a Hugging Face VLM, or a ``PeftModel`` around one).
        processor: its processor (or tokenizer): decodes the completions, gives EOS and pad ids.
        eos_token_ids: tokens that end a completion; default: the tokenizer's EOS, the family's
            end-of-turn / end-of-text tokens when the vocabulary has them, and the model's
            generation-config EOS.
        backbone: the model's family; ``None``: read from the model's config (a model of no
            registered family gets text-only inputs and the tokenizer's EOS).
    """

    def __init__(
        self, model: torch.nn.Module, processor, eos_token_ids: Iterable[int] | None = None, backbone: VLMBackbone | None = None
    ) -> None:
        self.model = model
        self.backbone = backbone if backbone is not None else backbone_for(model, default=VLMBackbone())
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.eos_token_ids = sorted(set(eos_token_ids)) if eos_token_ids is not None else self._default_eos_ids()
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = int(pad) if pad is not None else self.eos_token_ids[0]

    def _default_eos_ids(self) -> list[int]:
        return default_stop_token_ids(self.tokenizer, getattr(self.model, "generation_config", None), self.backbone)

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Sample from ``model`` from now on (the same module: nothing to copy)."""
        self.model = model

    @torch.no_grad()
    def generate(self, prompts: PromptBatch, n: int, sampling: SamplingConfig) -> Completions:
        """Draw ``n`` completions per prompt; rows ``b * n + j``; tensors on the model's device.

        A seed makes the call reproducible (same seed, same prompts: same completions) without
        touching the global random state; without one, the global generator is used."""
        model = self.model
        device = next(model.parameters()).device
        inputs = prompt_inputs_to(self.backbone.model_inputs(prompts.inputs), device)
        greedy = sampling.temperature <= 0
        options = dict(
            do_sample=not greedy,
            num_return_sequences=n,
            max_new_tokens=sampling.max_new_tokens,
            eos_token_id=self.eos_token_ids,
            pad_token_id=self.pad_token_id,
            use_cache=True,  # trap: training configs often say use_cache=False (gradient checkpointing)
            output_logits=True,
            return_dict_in_generate=True,
            repetition_penalty=1.0,
            synced_gpus=is_sharded(model) and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1,
        )
        if not greedy:
            options.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
        was_training = model.training
        model.eval()  # no dropout (LoRA dropout included) while sampling
        try:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], enabled=sampling.seed is not None):
                if sampling.seed is not None:
                    torch.manual_seed(sampling.seed)
                out = model.generate(**inputs, **options)
        finally:
            model.train(was_training)

        prompt_len = inputs["input_ids"].shape[1]
        ids = out.sequences[:, prompt_len:]  # [N, C]
        mask, truncated = completion_mask(ids, self.eos_token_ids)  # [N, C], [N]
        ids = ids.masked_fill(mask == 0, self.pad_token_id)
        temperature = 1.0 if greedy else sampling.temperature
        logprobs = torch.stack(
            [  # one step at a time: never a float32 [N, C, V] copy of the logits
                torch.log_softmax(step.float() / temperature, dim=-1).gather(-1, ids[:, t : t + 1]).squeeze(-1)
                for t, step in enumerate(out.logits)
            ],
            dim=1,
        ) * mask  # [N, C]
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return Completions(ids=ids, mask=mask, logprobs=logprobs, truncated=truncated, texts=texts)
