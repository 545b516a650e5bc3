"""The registry of vision-language model families (``VLMBackbone`` adapters, one file each).

A backbone is chosen from what is at hand: a model directory (its ``config.json`` ``model_type``),
a config, a model (peft wrappers included), a processor, a registry name or a ``model_type``::

    backbone = backbone_for("artifacts/tiny-qwen3-vl")     # or backbone_for(model), (processor)...
    text = backbone.chat_prompt(processor, GEO_PROMPT)
    inputs = backbone.encode(processor, [text], [image])

| name | ``model_type`` | file |
|---|---|---|
| ``qwen2_5_vl`` | ``qwen2_5_vl`` | ``qwen2_5_vl.py`` (the paper's backbone, the default) |
| ``qwen3_vl`` | ``qwen3_vl`` | ``qwen3_vl.py`` |
| ``internvl3`` | ``internvl`` (transformers' InternVL, e.g. ``OpenGVLab/InternVL3-8B-hf``) | ``internvl3.py`` |

A new family: a module with a ``VLMBackbone`` subclass, added to :data:`BACKBONES`.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from globe.models.backbones.base import VLMBackbone

__all__ = ["BACKBONES", "DEFAULT_BACKBONE", "DEFAULT_TINY_PATH", "VLMBackbone", "backbone_for", "backbone_for_inputs", "get_backbone", "names"]

#: registry name -> "module:class"
BACKBONES: dict[str, str] = {
    "qwen2_5_vl": "globe.models.backbones.qwen2_5_vl:Qwen2_5_VLBackbone",
    "qwen3_vl": "globe.models.backbones.qwen3_vl:Qwen3VLBackbone",
    "internvl3": "globe.models.backbones.internvl3:InternVL3Backbone",
}
#: the paper's backbone: what a tiny model is built as when nothing else is said
DEFAULT_BACKBONE = "qwen2_5_vl"
#: where the demo's tiny model of the default family lives
DEFAULT_TINY_PATH = "artifacts/tiny-qwen2.5-vl"

_RAISE = object()


def names() -> list[str]:
    """Registry names, the default first."""
    return [DEFAULT_BACKBONE] + [n for n in BACKBONES if n != DEFAULT_BACKBONE]


@functools.cache
def get_backbone(name: str) -> VLMBackbone:
    """The backbone registered as ``name`` (one instance per process)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; registered: {', '.join(names())}")
    module, cls = BACKBONES[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def _by_model_type(model_type: str | None) -> VLMBackbone | None:
    for name in names():
        backbone = get_backbone(name)
        if model_type in backbone.model_types:
            return backbone
    return None


def _model_type_of(obj: Any) -> str | None:
    if isinstance(obj, (str, Path)):
        config = Path(obj) / "config.json"
        return json.loads(config.read_text()).get("model_type") if config.exists() else None
    model_type = getattr(obj, "model_type", None)
    if isinstance(model_type, str):  # a config
        return model_type
    config = getattr(obj, "config", None)  # a model (peft forwards its base model's config)
    return getattr(config, "model_type", None) if config is not None else None


def backbone_for(obj: Any, default: Any = _RAISE) -> VLMBackbone:
    """The backbone of ``obj``: a ``VLMBackbone``, a registry name, a ``model_type``, a model
    directory, a config, a model or a processor. ``default`` is returned when none fits (without
    it, a ``ValueError`` names the registered families)."""
    if isinstance(obj, VLMBackbone):
        return obj
    if isinstance(obj, str) and obj in BACKBONES:
        return get_backbone(obj)
    found = _by_model_type(obj) if isinstance(obj, str) else None
    if found is None:
        found = _by_model_type(_model_type_of(obj))
    if found is None and not isinstance(obj, (str, Path)):
        found = next((get_backbone(n) for n in names() if isinstance(obj, get_backbone(n).processor_classes())), None)
    if found is not None:
        return found
    if default is not _RAISE:
        return default
    raise ValueError(
        f"no backbone for {type(obj).__name__} {str(obj)[:200]!r} (model_type {_model_type_of(obj)!r}); "
        f"registered: {', '.join(names())}"
    )


def backbone_for_inputs(inputs: Mapping[str, Any], default: Any = _RAISE) -> VLMBackbone:
    """The backbone whose processor produced ``inputs`` (by the tensors it holds)."""
    found = next((get_backbone(n) for n in names() if get_backbone(n).owns_inputs(inputs)), None)
    if found is not None:
        return found
    if default is not _RAISE:
        return default
    raise ValueError(f"no backbone produces inputs with keys {sorted(inputs)}; registered: {', '.join(names())}")


def exported_name(name: str, module: str):
    """``name`` from the first backbone module (the default first) that exports it, for modules
    whose family-specific names moved here (``module.__getattr__``)."""
    if not name.startswith("__"):
        for backbone in names():
            source = importlib.import_module(BACKBONES[backbone].split(":")[0])
            if name in getattr(source, "__all__", ()):
                return getattr(source, name)
    raise AttributeError(f"module {module!r} has no attribute {name!r}")
