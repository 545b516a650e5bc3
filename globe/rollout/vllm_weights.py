"""The trained weights, named as the Hugging Face checkpoint names them, for a vLLM weight reload.

vLLM's model classes load Hugging Face checkpoint names (``model.language_model.layers.0...``,
``model.visual...``, ``lm_head.weight``) and map them to their own fused parameters (qkv,
gate_up) themselves. So a weight sync only has to produce ``(hf_name, tensor)`` pairs:

* a plain ``transformers`` model: its parameters as they are (tied parameters once);
* a ``peft`` LoRA model: every adapted layer's merged weight ``W + scale * B @ A`` (computed
  per layer with peft's own ``get_delta_weight``, so fan-in/fan-out layouts and rsLoRA scaling
  are peft's), the training model left untouched; names lose the ``base_model.model.`` prefix
  and the ``.base_layer`` infix; ``modules_to_save`` copies replace the originals; adapter
  matrices themselves are not sent.

Tensors are yielded one at a time, so a merged copy of one layer at most exists at once.
FSDP2-sharded parameters (``DTensor``, ``globe.models.sharding``) are gathered one at a time
(``full_tensor``, a collective: every rank must iterate the same weights in the same order, which
holds because every rank syncs its own engine from the same module structure).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from globe.models.sharding import full_tensor

PEFT_PREFIX = "base_model.model."
# Parameter name parts that belong to adapters, never to the base checkpoint.
ADAPTER_PARTS = (".lora_A.", ".lora_B.", ".lora_embedding_A.", ".lora_embedding_B.", ".lora_magnitude_vector.")


def is_peft_model(model: torch.nn.Module) -> bool:
    """True for a ``peft.PeftModel`` (its parameters carry the ``base_model.model.`` prefix)."""
    return any(name.startswith(PEFT_PREFIX) for name, _ in model.named_parameters())


def base_name(peft_name: str) -> str:
    """The base checkpoint name of a peft parameter name.

    >>> base_name("base_model.model.model.language_model.layers.0.mlp.up_proj.base_layer.weight")
    'model.language_model.layers.0.mlp.up_proj.weight'
    >>> base_name("base_model.model.lm_head.modules_to_save.default.weight")
    'lm_head.weight'
    """
    name = peft_name.removeprefix(PEFT_PREFIX).replace(".base_layer.", ".")
    if ".modules_to_save." in name:
        head, tail = name.split(".modules_to_save.", 1)
        name = head + "." + tail.split(".", 1)[1]  # drop the adapter name
    return name


def _lora_modules(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """peft LoRA layers keyed by the full name of their base layer's weight parameter."""
    from peft.tuners.lora import LoraLayer

    found = {}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            if any(module.use_dora.get(a, False) for a in module.active_adapters):
                raise NotImplementedError(f"DoRA adapters are not merged for vLLM ({name})")
            found[f"{name}.base_layer.weight"] = module
    return found


def _merged_weight(module: torch.nn.Module) -> torch.Tensor:
    """``W + sum_a scale_a * B_a @ A_a`` over the active adapters, without touching ``module``.

    Adapters already merged into the base weight (``module.merged_adapters``) are not added twice.
    """
    weight = module.get_base_layer().weight
    merged = full_tensor(weight.detach()).clone()
    for adapter in module.active_adapters:
        if adapter in module.merged_adapters or adapter not in module.scaling:
            continue
        merged += full_tensor(module.get_delta_weight(adapter)).to(merged.dtype)
    return merged


@torch.no_grad()
def hf_named_weights(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``(hf_checkpoint_name, tensor)`` for every weight vLLM needs from ``model``.

    For a plain model this is ``named_parameters()`` (detached, tied parameters once). For a
    peft LoRA model the adapted layers come merged and every name is the base checkpoint's.
    """
    if not is_peft_model(model):
        for name, param in model.named_parameters():
            yield name, full_tensor(param.detach())
        return
    lora = _lora_modules(model)
    for name, param in model.named_parameters():
        if any(part in name for part in ADAPTER_PARTS) or ".original_module." in name:
            continue
        if name in lora:
            yield base_name(name), _merged_weight(lora[name])
        else:
            yield base_name(name), full_tensor(param.detach())
