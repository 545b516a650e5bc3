"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for a Hugging Face VLM policy, and the helpers a
GRPO loop needs around sharded parameters.

Under Lightning's ``ModelParallelStrategy`` the policy shards itself in ``configure_model``
(``GRPOPolicy`` calls ``shard_vlm`` with the strategy's data-parallel mesh). The units:

1. every block the model lists in ``_no_split_modules`` (e.g. each decoder layer and each vision
   block), the unit peers shard too (accelerate, TRL);
2. the vision side, as one unit: the vision tower (``visual`` / ``vision_tower`` /
   ``vision_model``) with its patch embedding and merger, and a separate projector into the
   language model where the model has one (``multi_modal_projector``): a GRPO step encodes images
   by calling ``get_image_features`` directly (outside the model's ``forward``), so these must
   gather their own parameters;
3. the input embeddings and the LM head together (one group: they may be tied, and a tied
   parameter must live in one group); the log-prob code embeds token ids directly too;
4. the whole transformers model (what remains: final norms); under peft the transformers model
   inside the wrapper, because ``PeftModel.generate`` calls it directly.

Traps handled here and in the callers:
- FSDP2 decides which module is the root on the first forward it sees; if a sub-unit runs first
  (``generate`` and ``completion_logprobs`` encode images before the model's forward) it refuses.
  ``shard_vlm`` therefore runs one one-token forward through the root (collective: every rank).
- Parameter all-gathers are collectives: every rank must run the same number of forwards.
  ``generate`` must run with ``synced_gpus=True`` (ranks whose sequences are done keep
  stepping until all are), see ``globe.rollout.hf_engine``; evaluation with the transformers
  engine needs the same number of batches on every rank. A data-dependent branch that calls a
  unit (``completion_logprobs`` embeds the ids itself when a completion holds a vision
  placeholder token) is decided over all ranks.
- Sharded parameters are ``DTensor`` shards; anything that reads whole weights (the vLLM weight
  sync, the Hugging Face export, checksums) gathers them with ``full_tensor`` (a collective too).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

VISION_TOWER_NAMES = ("visual", "vision_tower", "vision_model")
VISION_PROJECTOR_NAMES = ("multi_modal_projector",)


def is_dtensor(tensor: torch.Tensor) -> bool:
    """True for a ``torch.distributed.tensor.DTensor`` (a sharded parameter)."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch built without distributed support
        return False
    return isinstance(tensor, DTensor)


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor: gathered from every rank for a ``DTensor`` (collective), else itself."""
    return tensor.full_tensor() if is_dtensor(tensor) else tensor


def is_sharded(model: torch.nn.Module) -> bool:
    """True when ``model`` holds FSDP2-sharded (``DTensor``) parameters."""
    return any(is_dtensor(p) for p in model.parameters())


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside a peft wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def vision_tower(model: torch.nn.Module) -> torch.nn.Module | None:
    """The vision encoder submodule (e.g. ``model.visual``), or ``None`` for a text model."""
    for name, module in _unwrap(model).named_modules():
        if name.rsplit(".", 1)[-1] in VISION_TOWER_NAMES:
            return module
    return None


def vision_side(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The vision tower and the vision projector (the outermost module of each name), in module order."""
    names = VISION_TOWER_NAMES + VISION_PROJECTOR_NAMES
    found: list[tuple[str, torch.nn.Module]] = []
    for name, module in _unwrap(model).named_modules():
        if name.rsplit(".", 1)[-1] in names and not any(name.startswith(f"{outer}.") for outer, _ in found):
            found.append((name, module))
    return [module for _, module in found]


def block_modules(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The model's repeated blocks (``_no_split_modules`` classes), in module order."""
    base = _unwrap(model)
    names = set(getattr(base, "_no_split_modules", None) or [])
    if not names:
        raise ValueError(f"{type(base).__name__} lists no _no_split_modules: cannot choose FSDP units")
    for module in base.modules():
        if type(module).__name__ in names:
            yield module


def shard_vlm(model: torch.nn.Module, mesh, reshard_after_forward: bool = True, mp_policy=None) -> torch.nn.Module:
    """Shard ``model`` in place with FSDP2 over ``mesh`` (a 1-D data-parallel ``DeviceMesh``).

    Units as in the module docstring. ``mp_policy``: a ``MixedPrecisionPolicy`` (e.g. bf16
    compute with fp32 gradient reduction); ``None`` keeps the parameters' dtype. Returns ``model``
    (whose transformers model is an ``FSDPModule`` now). Collective: every rank of ``mesh`` must
    call it.
    """
    from torch.distributed.fsdp import fully_shard

    kwargs = {"mesh": mesh, "reshard_after_forward": reshard_after_forward}
    if mp_policy is not None:
        kwargs["mp_policy"] = mp_policy
    for block in list(block_modules(model)):
        fully_shard(block, **kwargs)
    vision = vision_side(model)
    if vision:  # one unit (a single module stays a plain unit, as a list of one would not)
        fully_shard(vision[0] if len(vision) == 1 else vision, **kwargs)
    root = _unwrap(model)  # under peft, generate() calls the transformers model, not the wrapper
    embeddings, head = root.get_input_embeddings(), root.get_output_embeddings()
    fully_shard([embeddings, head] if head is not None else embeddings, **kwargs)
    fully_shard(root, **kwargs)
    # FSDP2 names the root on the first forward it sees: make it the model's own
    device = next(root.parameters()).device
    with torch.no_grad():
        root(input_ids=torch.zeros(1, 1, dtype=torch.long, device=device), use_cache=False)
    return model
