"""The VLM teachers of the distillation: a model directory, generated through a rollout engine.

:class:`Teacher` is the interface (``generate(images, prompt, seed) -> texts``); pick teachers
in YAML with ``class_path`` / ``init_args``, one entry per teacher. :class:`VLMTeacher` loads
any directory ``globe.models.loading.load_vlm`` reads and generates one completion per image
through the project's rollout engines: ``engine: hf`` (transformers ``generate``, the CPU path)
or ``engine: vllm`` (an in-process ``VLLMRolloutEngine``; ``vllm:`` holds its keyword
arguments, e.g. ``tensor_parallel_size``, ``gpu_memory_utilization``, ``max_model_len``). The
HF model is loaded in ``load()`` (the distillation module's ``configure_model``), so Lightning
puts it on the rank's device; the vLLM engine is created on first use, after the process group
exists.

Seeds: each call gets its seed from the caller (a hash of the batch's keys, so a resumed run
redraws the same completions for the same images, whatever rank processes them).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from PIL import Image
from torch import nn

from globe.rollout.base import RolloutEngine, SamplingConfig

__all__ = ["DEFAULT_TEACHER_SAMPLING", "Teacher", "VLMTeacher"]

log = logging.getLogger(__name__)

#: a teacher's default decoding: near-greedy, room for a full chain
DEFAULT_TEACHER_SAMPLING = SamplingConfig(temperature=0.2, top_p=0.9, top_k=50, max_new_tokens=1024)


class Teacher(nn.Module, ABC):
    """A model that answers the distillation prompt for a batch of images.

    Args:
        name: the teacher's name in the provenance and the report (distinct per teacher).
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        if not name:
            raise ValueError("a teacher needs a name")
        self.name = name

    def load(self) -> None:  # noqa: B027 - optional hook
        """Load the weights (called once, before the model is moved to its device)."""

    @abstractmethod
    def generate(self, images: Sequence[Image.Image], prompt: str, seed: int) -> list[str]:
        """One completion per image."""

    def describe(self) -> dict[str, Any]:
        """What identifies this teacher in the run's manifest and the report."""
        return {"name": self.name, "class": type(self).__name__}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free what the teacher holds outside torch (a vLLM engine)."""


class VLMTeacher(Teacher):
    """A local vision-language model directory generating through a rollout engine.

    Args:
        name: the teacher's name (distinct per teacher).
        model_path: the model directory (``load_vlm``: any family ``globe.models.backbones`` adapts).
        engine: ``hf`` (transformers ``generate``) or ``vllm``.
        dtype: ``auto`` (bf16 on a GPU, fp32 on the CPU), ``float32``, ``bfloat16``, ``float16``.
        sampling: decoding of the teacher's completion.
        vllm: keyword arguments of ``VLLMRolloutEngine`` (``engine: vllm``).
        build_tiny_if_missing: build a tiny random model at ``model_path`` when it is absent (the
            CPU demo and the tests): ``true`` for the default family, or a backbone name.
        tiny_seed: the tiny model's initialisation seed (two teachers, two seeds).
    """

    def __init__(
        self,
        name: str,
        model_path: str,
        engine: Literal["hf", "vllm"] = "hf",
        dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto",
        sampling: SamplingConfig = DEFAULT_TEACHER_SAMPLING,
        vllm: dict[str, Any] | None = None,
        build_tiny_if_missing: bool | str = False,
        tiny_seed: int = 0,
    ) -> None:
        super().__init__(name)
        if engine not in ("hf", "vllm"):
            raise ValueError(f"teacher {name}: engine must be hf or vllm, got {engine!r}")
        self.model_path = model_path
        self.engine_name = engine
        self.dtype = dtype
        # jsonargparse may hand dataclass arguments over as dicts
        self.sampling = sampling if isinstance(sampling, SamplingConfig) else SamplingConfig(**sampling)
        self.vllm_kwargs = dict(vllm or {})
        self.build_tiny_if_missing = build_tiny_if_missing
        self.tiny_seed = tiny_seed
        self.model: nn.Module | None = None
        self.processor = None
        self._engine: RolloutEngine | None = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "model_path": str(self.model_path), "engine": self.engine_name,
                "sampling": {k: getattr(self.sampling, k) for k in ("temperature", "top_p", "top_k", "max_new_tokens")}}

    def load(self) -> None:
        if self.processor is not None:
            return
        path = Path(self.model_path)
        if not path.exists():
            if not self.build_tiny_if_missing:
                raise FileNotFoundError(f"teacher {self.name}: model_path {path} does not exist "
                                        "(set build_tiny_if_missing: true for the tiny demo teacher)")
            from globe.models.tiny import build_tiny

            backbone = self.build_tiny_if_missing if isinstance(self.build_tiny_if_missing, str) else None
            build_tiny(path, seed=self.tiny_seed, backbone=backbone)
        from globe.models.loading import load_processor, load_vlm

        if self.engine_name == "hf":
            self.model, self.processor = load_vlm(str(path), dtype=self.dtype)
            self.model.eval().requires_grad_(False)
        else:  # vLLM reads the directory itself; the processor builds the prompt batch
            self.processor = load_processor(path)

    @property
    def engine(self) -> RolloutEngine:
        """The rollout engine, created on first use."""
        if self._engine is None:
            self.load()
            if self.engine_name == "vllm":
                from globe.rollout.vllm_engine import VLLMRolloutEngine

                self._engine = VLLMRolloutEngine(str(self.model_path), **self.vllm_kwargs)
            else:
                from globe.rollout.hf_engine import HFRolloutEngine

                self._engine = HFRolloutEngine(self.model, self.processor)
        return self._engine

    def generate(self, images: Sequence[Image.Image], prompt: str, seed: int) -> list[str]:
        from dataclasses import replace

        from globe.rollout.prompts_batch import build_prompt_batch

        if not images:
            return []
        engine = self.engine
        prompts = build_prompt_batch(self.processor, list(images), prompt)
        completions = engine.generate(prompts, 1, replace(self.sampling, seed=seed))
        return list(completions.texts)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
