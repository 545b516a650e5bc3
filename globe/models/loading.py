"""Load a local Hugging Face vision-language model and its processor, optionally with LoRA adapters.

- Any directory ``AutoModelForImageTextToText`` reads; the families with an adapter
  (``globe.models.backbones``: the chat prompt, extra inputs, stop tokens...) are the ones the
  trainer runs. Nothing is downloaded.
- ``dtype="auto"``: bfloat16 when a GPU is present, float32 on the CPU (bf16 matmuls are slow there).
- Processor: the family's (``VLMBackbone.load_processor``: image-only without a working
  torchvision, whose absence breaks the stock processors' video half); ``AutoProcessor`` for a
  directory of no registered family.
- LoRA (peft) on the language model's attention and MLP projections only. Vision towers have
  modules with the same names (``visual.blocks.*.mlp.gate_proj``...), so the default target is the
  family's regular expression that excludes its tower (``VLMBackbone.lora_target_modules``).
- Gradient checkpointing uses non-reentrant checkpoints (no ``enable_input_require_grads`` needed
  under LoRA, where the embeddings are frozen).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from globe.models.backbones import backbone_for

# Attention and MLP projections of the language model; anything under a vision tower is excluded
# (the common tower names; each family's own regex is ``VLMBackbone.lora_target_modules``).
# peft full-matches a string target against every module name, e.g.
# "model.language_model.layers.0.self_attn.q_proj" (in) vs "model.visual.blocks.0.mlp.gate_proj" (out).
LANGUAGE_MODEL_PROJECTIONS = (
    r"^(?!.*\b(?:visual|vision_tower|vision_model)\b).*\.(?:q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
)

Dtype = Literal["auto", "float32", "bfloat16", "float16"]


@dataclass
class LoraConfigSpec:
    """LoRA adapters for the policy."""

    r: int = 16
    """Adapter rank."""
    alpha: int = 32
    """Scaling numerator: the update is ``(alpha / r) * B @ A``."""
    dropout: float = 0.0
    """Dropout on the adapter input (training only). 0 by default: under RL, dropout makes the
    rollout-time and training-time log-probs differ for the same weights (ratio != 1), as TRL's
    ``disable_dropout`` notes; set it for supervised training (e.g. the reward model)."""
    target_modules: str | list[str] | None = None
    """Module-name regex (full match) or list of name suffixes; ``None``: the language model's
    projections, outside the vision tower of the model's family."""


def resolve_dtype(dtype: Dtype | torch.dtype) -> torch.dtype:
    """``"auto"`` -> bfloat16 with a GPU, float32 without; names -> ``torch`` dtypes."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in names:
        raise ValueError(f"dtype must be one of auto, {', '.join(names)}; got {dtype!r}")
    return names[dtype]


@functools.cache
def torchvision_works() -> bool:
    """True when torchvision imports (the registry's CUDA build fails beside a CPU torch)."""
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401
    except Exception:  # any import-time failure means: do not use it
        return False
    return True


def load_processor(path: str | Path):
    """The processor of a local model directory: its family's (image-only without torchvision),
    ``AutoProcessor``'s for a family without an adapter."""
    backbone = backbone_for(path, default=None)
    if backbone is None:
        return AutoProcessor.from_pretrained(str(path))
    return backbone.load_processor(path)


def apply_lora(model: torch.nn.Module, lora: LoraConfigSpec) -> torch.nn.Module:
    """Wrap ``model`` in a peft ``PeftModel`` whose only trainable parameters are the adapters."""
    from peft import LoraConfig, get_peft_model

    target_modules = lora.target_modules
    if target_modules is None:
        backbone = backbone_for(model, default=None)
        target_modules = backbone.lora_target_modules if backbone is not None else LANGUAGE_MODEL_PROJECTIONS
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=target_modules,
        bias="none",
    )
    return get_peft_model(model, config)


def load_vlm(
    path: str | Path,
    dtype: Dtype | torch.dtype = "auto",
    lora: LoraConfigSpec | None = None,
    gradient_checkpointing: bool = False,
    attn_implementation: str | None = None,
    device: str | torch.device | None = None,
) -> tuple[torch.nn.Module, object]:
    """Load ``(model, processor)`` from a local Hugging Face directory.

    Args:
        path: model directory (config, weights, tokenizer, processor files).
        dtype: ``"auto"`` (bf16 on GPU, fp32 on CPU), ``"float32"``, ``"bfloat16"``, ``"float16"``.
        lora: adapters to add (the returned model is then a ``PeftModel``); ``None``: full fine-tuning.
        gradient_checkpointing: recompute activations in the backward pass (non-reentrant).
        attn_implementation: ``"sdpa"``, ``"eager"``, ``"flash_attention_2"``...; ``None``: the default.
        device: where to put the model; ``None`` leaves it on the CPU (Lightning moves it).
    """
    kwargs: dict = {"dtype": resolve_dtype(dtype)}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    model = AutoModelForImageTextToText.from_pretrained(str(path), **kwargs)
    if device is not None:
        model = model.to(device)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if lora is not None:
        model = apply_lora(model, lora)
    return model, load_processor(path)
