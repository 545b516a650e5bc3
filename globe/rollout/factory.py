"""``make_engine``: the rollout engine a policy config names (``engine: hf`` or ``vllm``).

- ``hf``: transformers' ``generate`` on the trained module itself (``HFRolloutEngine``); it always
  samples from the current weights.
- ``vllm``: an in-process vLLM engine reading ``model_path`` (``VLLMRolloutEngine``, built with the
  ``vllm`` keyword arguments of the config). Unless those set ``logprobs_mode``, it is chosen so
  that vLLM's reported log-probs equal the trainer's ``log_softmax(logits / T)`` for the training
  sampling: ``processed_logprobs`` when no top-k / top-p filter renormalises them, else
  ``raw_logprobs`` (exact at T = 1, the paper's setting); see docs/vllm.md. Its weights start as
  ``model_path``'s: the caller syncs the trained ones before the first rollout.

vLLM is imported only when asked for (it is an optional dependency).
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from globe.rollout.base import RolloutEngine, SamplingConfig

__all__ = ["EngineKind", "make_engine", "vllm_engine_kwargs"]

EngineKind = Literal["hf", "vllm"]


def vllm_engine_kwargs(vllm_kwargs: dict[str, Any] | None, sampling: SamplingConfig) -> dict[str, Any]:
    """The config's ``vllm`` keyword arguments with ``logprobs_mode`` defaulted for ``sampling``.

    >>> vllm_engine_kwargs(None, SamplingConfig(temperature=1.0, top_p=0.9, top_k=50))
    {'logprobs_mode': 'raw_logprobs'}
    >>> vllm_engine_kwargs({"max_model_len": 512}, SamplingConfig(temperature=0.7, top_p=1.0, top_k=0))
    {'max_model_len': 512, 'logprobs_mode': 'processed_logprobs'}
    """
    from globe.rollout.vllm_engine import logprobs_follow_convention  # no vLLM import at module level

    kwargs = dict(vllm_kwargs or {})
    processed = logprobs_follow_convention("processed_logprobs", sampling)
    kwargs.setdefault("logprobs_mode", "processed_logprobs" if processed else "raw_logprobs")
    return kwargs


def make_engine(
    kind: EngineKind,
    model: torch.nn.Module,
    processor: Any,
    model_path: str,
    vllm_kwargs: dict[str, Any] | None = None,
    sampling: SamplingConfig | None = None,
) -> RolloutEngine:
    """The ``kind`` engine for the policy ``model`` (with its ``processor``) loaded from ``model_path``;
    ``sampling``: the training sampling (decides vLLM's ``logprobs_mode``)."""
    if kind == "vllm":
        from globe.rollout.vllm_engine import VLLMRolloutEngine

        return VLLMRolloutEngine(model_path, **vllm_engine_kwargs(vllm_kwargs, sampling or SamplingConfig()))
    if kind == "hf":
        from globe.rollout.hf_engine import HFRolloutEngine

        return HFRolloutEngine(model, processor)
    raise ValueError(f"engine must be 'hf' or 'vllm', got {kind!r}")
