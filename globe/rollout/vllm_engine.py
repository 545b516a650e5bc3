"""Rollouts with an in-process vLLM engine (``vllm.LLM``) that follows the trained weights.

The engine lives in the training process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, the colocated
layout): one engine per rank, or a tensor-parallel group of ranks sharing one engine through
``distributed_executor_backend="external_launcher"`` (as TRL's colocate mode does). It reads the
same Hugging Face directory the trainer loads.

Algorithm per call:

1. ``generate``: every prompt goes in as its chat-templated text with ONE un-expanded image
   placeholder plus the image as ``multi_modal_data`` (vLLM expands the placeholder itself; ids
   already expanded by the HF processor would be expanded a second time, silently wrong). The
   model directory's family (``globe.models.backbones``) says what the placeholder is, how a
   request carries it, which tokens stop a completion and the multimodal limits. One
   ``SamplingParams`` per prompt with ``n`` samples and ``logprobs=0`` (the sampled token's
   log-prob only). Seeds: prompt b gets ``seed + b * n`` and vLLM gives its sample j
   ``seed + b * n + j``, so all B * n samples are distinct and the call is reproducible.
2. ``sync_weights(model)``: the model's weights under their Hugging Face checkpoint names
   (``globe.rollout.vllm_weights``: full parameters, or LoRA adapters merged per layer) go through
   ``collective_rpc("reload_weights", weights_iterator=...)``, vLLM's in-place reload, which runs
   each layer's post-load processing again (the CPU backend pre-packs its linear weights, so
   writing into ``model.load_weights`` alone returns without error yet changes nothing). On the
   CPU the tied LM head is re-packed too (``repack_cpu_embedding_gemms``: it gets no weight of its
   own on reload and would keep sampling from the old matrix). Then the
   prefix cache (KV computed with the old weights) and the scheduler's encoder cache (vision
   features from the old weights) are reset: without the latter the next request with an image
   seen before fails with "Encoder cache miss", because the worker dropped its copy on reload.
3. ``sleep`` / ``wake`` (GPU only): ``LLM.sleep`` offloads the weights (level 1) or drops them
   (level 2) and frees the KV cache while the trainer runs. A sync while asleep wakes the weights
   first. The CPU backend has no sleep mode: both calls are no-ops there.

Log-probs (the binding convention of ``globe.rollout.base`` is ``log_softmax(logits / T)`` over the
full vocabulary). vLLM offers, per engine (``logprobs_mode``):

* ``"raw_logprobs"`` (default): ``log_softmax(logits)`` before temperature, top-k and top-p, i.e.
  exactly the convention when T = 1 (the paper's training temperature), off by the temperature
  otherwise;
* ``"processed_logprobs"``: ``log_softmax`` of the temperature-scaled logits after top-k / top-p
  filtering, i.e. renormalised over the kept tokens: exactly the convention when neither top-k nor
  top-p filters, larger by ``-log(kept mass)`` otherwise (about 0.1 nat per token at top_p 0.9).

A warning is logged once when a call's sampling leaves the convention. Measured mismatch against
``globe.grpo.logprobs.completion_logprobs`` on the CPU: see docs/vllm.md. The trainer's truncated
importance-sampling weights (``globe.grpo.loss``) absorb the residual.

Process-wide side effects of vLLM's CPU worker, worth knowing in a training process: it replaces
``torch.set_num_threads`` by a no-op (threads are bound at start), seeds the global RNGs with
``seed`` and initialises a single-process ``torch.distributed`` group when none exists.
"""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path
from typing import Literal

import torch

from globe.models.backbones import backbone_for
from globe.rollout.base import Completions, PromptBatch, RolloutEngine, SamplingConfig
from globe.rollout.stop_tokens import default_stop_token_ids
from globe.rollout.vllm_weights import hf_named_weights

log = logging.getLogger(__name__)

LogprobsMode = Literal["raw_logprobs", "processed_logprobs"]


def logprobs_follow_convention(logprobs_mode: LogprobsMode, sampling: SamplingConfig) -> bool:
    """Whether vLLM's reported log-probs equal ``log_softmax(logits / T)[token]`` for ``sampling``.

    >>> logprobs_follow_convention("raw_logprobs", SamplingConfig(temperature=1.0, top_p=0.9, top_k=50))
    True
    >>> logprobs_follow_convention("raw_logprobs", SamplingConfig(temperature=0.7))
    False
    >>> logprobs_follow_convention("processed_logprobs", SamplingConfig(temperature=0.7, top_p=1.0, top_k=0))
    True
    """
    if logprobs_mode == "raw_logprobs":
        return sampling.temperature == 1.0
    return sampling.top_p >= 1.0 and sampling.top_k <= 0


def _set_engine_environment(cpu_kvcache_space_gib: int) -> None:
    """Environment vLLM reads when it is imported / started (must precede ``import vllm``)."""
    if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "0") != "0":
        log.warning("VLLM_ENABLE_V1_MULTIPROCESSING=0 forced: weight sync needs the engine in this process")
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    # CPU backend only: the KV cache size in GiB (unset, it takes 6-11 GiB of RAM)
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(cpu_kvcache_space_gib)


def _initialised_world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def _export_torchrun_environment() -> None:
    """vLLM's ``external_launcher`` reads torchrun's variables (``RANK``, ``LOCAL_RANK``,
    ``WORLD_SIZE``); Lightning's own launcher starts the ranks without ``RANK``. Fill them in from
    the initialised process group (values already set are kept)."""
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    os.environ.setdefault("RANK", str(rank))
    os.environ.setdefault("WORLD_SIZE", str(world))
    local_world = torch.cuda.device_count() if torch.cuda.is_available() else world
    os.environ.setdefault("LOCAL_RANK", str(rank % max(local_world, 1)))


def repack_cpu_embedding_gemms(worker) -> int:
    """Run on a vLLM CPU worker after an in-place reload: rebuild the packed GEMM of every layer with
    the embedding method (the LM head), from its current weight. Returns how many were rebuilt.

    Trap (vLLM CPU backend): each linear layer computes through a packed copy of its weight made
    after loading. With tied embeddings the LM head receives no weight of its own on reload, so it
    is not re-processed and keeps multiplying by the OLD packed matrix, although its weight
    parameter (shared with the embedding) holds the new values. Embedding layers keep their weight
    parameter, so re-packing from it is exact.
    """
    from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm
    from vllm.model_executor.layers.vocab_parallel_embedding import UnquantizedEmbeddingMethod

    repacked = 0
    for module in worker.model_runner.get_model().modules():
        if isinstance(getattr(module, "quant_method", None), UnquantizedEmbeddingMethod) and hasattr(module, "cpu_linear"):
            dispatch_cpu_unquantized_gemm(module, remove_weight=False)
            repacked += 1
    return repacked


class VLLMRolloutEngine(RolloutEngine):
    """``RolloutEngine`` on an in-process ``vllm.LLM``.

    Args:
        model_path: the Hugging Face model directory the trainer loads (config, weights, tokenizer,
            the stock processor files of its family).
        dtype: weights / activations dtype in vLLM: ``"auto"`` (the checkpoint's), ``"bfloat16"``,
            ``"float32"``... Use the trainer's dtype for the smallest log-prob mismatch.
        max_model_len: longest prompt + completion in tokens.
        gpu_memory_utilization: fraction of GPU memory vLLM may take (weights + KV cache); colocated
            with training, keep it low (0.3 in TRL's colocate default). Ignored on the CPU.
        tensor_parallel_size: GPUs per engine.
        distributed_executor_backend: ``None``: ``"external_launcher"`` when ``torch.distributed``
            is already initialised with several ranks (torchrun / Lightning DDP: every rank runs its
            own engine, or its share of a tensor-parallel one, inside the existing process group,
            as TRL's colocate mode does; ranks of one tensor-parallel group must submit the same
            prompts), a single in-process worker otherwise.
        enable_sleep_mode: offload vLLM's memory between rollouts (GPU only; ignored on the CPU).
        sleep_level: 1 offloads the weights to CPU RAM, 2 drops them (a sync must follow the wake).
        enforce_eager: no CUDA graphs / torch.compile (fast start; needed on the CPU here).
        cpu_kvcache_space_gib: KV cache size on the CPU backend (``VLLM_CPU_KVCACHE_SPACE``).
        logprobs_mode: ``"raw_logprobs"`` (exact at temperature 1) or ``"processed_logprobs"``
            (exact without top-k / top-p); see the module docstring.
        max_num_seqs: most sequences decoded at once.
        seed: engine seed (vLLM also seeds the process-wide RNGs with it).
        stop_token_ids: tokens that end a completion; default: the family's end-of-turn and
            end-of-text tokens and the tokenizer's EOS (what the transformers engine stops on).
        engine_kwargs: any further ``vllm.LLM`` / ``EngineArgs`` keyword.
    """

    def __init__(
        self,
        model_path: str | Path,
        dtype: str = "auto",
        max_model_len: int = 4096,
        gpu_memory_utilization: float = 0.3,
        tensor_parallel_size: int = 1,
        distributed_executor_backend: str | None = None,
        enable_sleep_mode: bool = False,
        sleep_level: int = 1,
        enforce_eager: bool = True,
        cpu_kvcache_space_gib: int = 1,
        logprobs_mode: LogprobsMode = "raw_logprobs",
        max_num_seqs: int = 256,
        seed: int = 0,
        stop_token_ids: list[int] | None = None,
        engine_kwargs: dict | None = None,
    ) -> None:
        if logprobs_mode not in ("raw_logprobs", "processed_logprobs"):
            raise ValueError(f"logprobs_mode must be raw_logprobs or processed_logprobs, got {logprobs_mode!r}")
        if sleep_level not in (1, 2):
            raise ValueError(f"sleep_level must be 1 or 2, got {sleep_level}")
        _set_engine_environment(cpu_kvcache_space_gib)
        from vllm import LLM
        from vllm.platforms import current_platform

        self.model_path = str(model_path)
        self.backbone = backbone_for(self.model_path)
        self.logprobs_mode: LogprobsMode = logprobs_mode
        self.sleep_level = sleep_level
        self._on_cpu = current_platform.is_cpu()
        self.sleep_enabled = enable_sleep_mode and not self._on_cpu
        if enable_sleep_mode and not self.sleep_enabled:
            log.warning("vLLM has no sleep mode on the CPU: sleep() / wake() do nothing")
        self._owns_process_group = not (torch.distributed.is_available() and torch.distributed.is_initialized())
        if distributed_executor_backend is None and _initialised_world_size() > 1:
            distributed_executor_backend = "external_launcher"
        if distributed_executor_backend == "external_launcher":
            _export_torchrun_environment()
        engine_kwargs = dict(engine_kwargs or {})
        if self._on_cpu:
            # trap: a prefill split over scheduler steps (chunked prefill) rewinds the request's
            # seeded generator with an offset call that CPU generators refuse ("CPU Generator does
            # not use offset"); every rollout here is seeded, so on the CPU prompts are never split
            engine_kwargs.setdefault("enable_chunked_prefill", False)
        self.llm = LLM(
            model=self.model_path,
            dtype=dtype,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            distributed_executor_backend=distributed_executor_backend,
            enable_sleep_mode=self.sleep_enabled,
            enforce_eager=enforce_eager,
            logprobs_mode=logprobs_mode,
            max_num_seqs=max_num_seqs,
            seed=seed,
            limit_mm_per_prompt=dict(self.backbone.vllm_limit_mm_per_prompt),
            **engine_kwargs,
        )
        # Weights go to the workers by reference only when they run in this process.
        self._workers_in_process = distributed_executor_backend in ("uni", "external_launcher") or (
            distributed_executor_backend is None and tensor_parallel_size == 1
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.stop_token_ids = sorted(set(stop_token_ids)) if stop_token_ids is not None else self._default_stop_ids()
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = int(pad) if pad is not None else self.stop_token_ids[0]
        self._asleep: set[str] = set()  # parts of vLLM's memory that are asleep: "weights", "kv_cache"
        self._weights_lost = False  # level-2 sleep dropped the weights; a sync must restore them
        self._warned_convention = False

    def _default_stop_ids(self) -> list[int]:
        return default_stop_token_ids(self.tokenizer, backbone=self.backbone)

    def _sampling_params(self, sampling: SamplingConfig, n: int, seed: int | None):
        from vllm import SamplingParams

        return SamplingParams(
            n=n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else 0,  # 0: no top-k filter
            max_tokens=sampling.max_new_tokens,
            seed=seed,
            logprobs=0,  # the sampled token's log-prob only
            stop_token_ids=self.stop_token_ids,
            detokenize=False,  # decoded below with the tokenizer, as the transformers engine does
        )

    def generate(self, prompts: PromptBatch, n: int, sampling: SamplingConfig) -> Completions:
        """Draw ``n`` completions per prompt; rows ``b * n + j``; CPU tensors."""
        if self._weights_lost:
            raise RuntimeError("the engine slept at level 2 (weights dropped): call sync_weights before generate")
        self.wake()
        for text in prompts.texts:
            self.backbone.check_vllm_prompt(text)
        if not self._warned_convention and not logprobs_follow_convention(self.logprobs_mode, sampling):
            log.warning(
                "vLLM logprobs_mode=%s with temperature=%s top_p=%s top_k=%s: reported log-probs are not "
                "log_softmax(logits / T); the trainer's own log-probs are the reference",
                self.logprobs_mode, sampling.temperature, sampling.top_p, sampling.top_k,
            )
            self._warned_convention = True
        requests = [self.backbone.vllm_request(text, image) for text, image in zip(prompts.texts, prompts.images)]
        params = [
            self._sampling_params(sampling, n, None if sampling.seed is None else sampling.seed + b * n)
            for b in range(len(requests))
        ]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        return self._completions(outputs, n)

    def _completions(self, outputs, n: int) -> Completions:
        """vLLM ``RequestOutput``s (one per prompt, in prompt order) -> padded tensors."""
        rows = []
        for request in outputs:
            samples = sorted(request.outputs, key=lambda s: s.index)
            if len(samples) != n:
                raise RuntimeError(f"vLLM returned {len(samples)} samples for a prompt, expected {n}")
            rows += samples
        width = max(1, max(len(s.token_ids) for s in rows))  # C
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)  # [N, C]
        mask = torch.zeros((len(rows), width), dtype=torch.long)  # [N, C]
        logprobs = torch.zeros((len(rows), width), dtype=torch.float32)  # [N, C]
        for i, sample in enumerate(rows):
            tokens = list(sample.token_ids)  # a stop token, when one ended the sample, is included
            ids[i, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[i, : len(tokens)] = 1
            logprobs[i, : len(tokens)] = torch.tensor(
                [position[token].logprob for position, token in zip(sample.logprobs, tokens)], dtype=torch.float32
            )
        truncated = torch.tensor([s.finish_reason == "length" for s in rows], dtype=torch.bool)  # [N]
        texts = [self.tokenizer.decode(list(s.token_ids), skip_special_tokens=True) for s in rows]
        return Completions(ids=ids, mask=mask, logprobs=logprobs, truncated=truncated, texts=texts)

    @torch.no_grad()
    def sync_weights(self, model: torch.nn.Module) -> None:
        """Load ``model``'s current weights into vLLM (LoRA merged), then drop every cache built
        from the old ones. ``model`` may be a transformers model or a peft ``PeftModel``; FSDP2-sharded
        parameters are gathered one tensor at a time while vLLM loads them (a collective: every
        rank syncs its own engine)."""
        if "weights" in self._asleep:
            self.llm.wake_up(tags=["weights"])
            self._asleep.discard("weights")
        weights = hf_named_weights(model)
        if not self._workers_in_process:
            weights = [(name, tensor.cpu()) for name, tensor in weights]  # pickled to worker processes
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        if self._on_cpu:
            self.llm.collective_rpc(repack_cpu_embedding_gemms)
        self.llm.reset_prefix_cache()
        self.llm.llm_engine.reset_encoder_cache()  # the scheduler's record of cached vision features
        self._weights_lost = False

    @property
    def needs_sync(self) -> bool:
        return self._weights_lost

    def sleep(self) -> None:
        """Offload (level 1) or drop (level 2) weights and free the KV cache (GPU; no-op on the CPU)."""
        if not self.sleep_enabled or self._asleep:
            return
        self.llm.sleep(level=self.sleep_level)
        self._asleep = {"weights", "kv_cache"}
        self._weights_lost = self.sleep_level == 2

    def wake(self) -> None:
        """Re-acquire whatever ``sleep`` released (no-op when awake or on the CPU)."""
        if not self._asleep:
            return
        self.llm.wake_up(tags=sorted(self._asleep))
        self._asleep.clear()

    def close(self) -> None:
        """Shut the engine down and free its memory (and the process group, if vLLM created it)."""
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        engine_core = getattr(llm.llm_engine, "engine_core", None)
        if engine_core is not None and hasattr(engine_core, "shutdown"):
            engine_core.shutdown()
        del self.llm
        from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

        destroy_model_parallel()
        if self._owns_process_group:  # never tear down the trainer's process group
            destroy_distributed_environment()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
