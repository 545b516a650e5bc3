"""Trained R_loc on disk: Lightning checkpoints of the trainer (read safely) and exported directories.

- A ``.ckpt`` written by :class:`~globe.rewards.localizability_trainer.LocalizabilityTrainer` is
  read with ``torch.load(weights_only=True)``: tensors, plain Python values and
  :class:`~globe.models.loading.LoraConfigSpec` (the one object Lightning may store among the
  hyper-parameters, a plain dataclass rebuilt field by field, no code run). Anything else in the
  file is refused before it can run (:class:`CheckpointLoadError`), as is a file without a
  ``state_dict`` of tensors and ``hyper_parameters`` naming a ``model_path``. Its
  hyper-parameters hold the :class:`~globe.rewards.localizability_model.LocalizabilitySettings`
  flat (the trainer's init arguments); its ``state_dict`` the model's weights under ``model.``
  (only the trainable ones with ``checkpoint_trainable_only``: the frozen rest is read again
  from ``model_path``).
- An exported directory (:func:`write_export`) holds the backbone (full weights, or the LoRA
  adapter only), its processor and ``globe_localizability.json`` (the scoring settings and, for
  an adapter, the base model's path).
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from globe.models.loading import LoraConfigSpec
from globe.rewards.localizability_model import LocalizabilityModel, LocalizabilitySettings

__all__ = [
    "CheckpointLoadError",
    "SAFE_CHECKPOINT_CLASSES",
    "SETTINGS_FILE",
    "exported_arguments",
    "model_state",
    "read_checkpoint",
    "trained_settings",
    "write_export",
]

SETTINGS_FILE = "globe_localizability.json"
#: the settings an exported directory records (the rest is in its model and adapter files)
EXPORTED_SETTINGS = ("question", "yes_words", "no_words", "text", "max_text_tokens", "keep_last_tokens", "max_image_pixels")


class CheckpointLoadError(ValueError):
    """A checkpoint that cannot be loaded safely, or is not an R_loc checkpoint."""


#: classes a checkpoint may hold besides tensors and plain values (Lightning keeps the init
#: arguments as given: ``lora`` may be this dataclass, rebuilt field by field, no code run)
SAFE_CHECKPOINT_CLASSES = (LoraConfigSpec,)


def read_checkpoint(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(hyper_parameters, state_dict) of a Lightning checkpoint of R_loc, read with
    ``torch.load(weights_only=True)`` (allow-list: :data:`SAFE_CHECKPOINT_CLASSES`).

    Raises :class:`CheckpointLoadError` for a missing file, one that is not a torch
    checkpoint, one holding any other object (its unpickling is refused, never run), and one
    without a ``state_dict`` of tensors or a ``hyper_parameters`` dict with a ``model_path``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointLoadError(f"no checkpoint file at {path}")
    try:
        with torch.serialization.safe_globals(list(SAFE_CHECKPOINT_CLASSES)):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found is None:  # garbage or a truncated file, not a refused object
            raise CheckpointLoadError(f"{path} is not a readable torch checkpoint: {str(e).splitlines()[0]}") from None
        raise CheckpointLoadError(  # weights_only refused a global: unpickling it would run code
            f"{path} cannot be loaded safely: it refers to {found.group(1)}, not a tensor, a plain value or "
            "LoraConfigSpec; refusing to unpickle it"
        ) from None
    except Exception as e:  # noqa: BLE001 - not a zip / not a torch file / truncated
        raise CheckpointLoadError(f"{path} is not a readable torch checkpoint: {type(e).__name__}: {e}") from None
    if not isinstance(ckpt, dict):
        raise CheckpointLoadError(f"{path} is not an R_loc checkpoint (a {type(ckpt).__name__}, not a dict)")
    state, saved = ckpt.get("state_dict"), ckpt.get("hyper_parameters")
    if not isinstance(state, dict):
        raise CheckpointLoadError(f"{path} has no 'state_dict' dict: not a Lightning checkpoint")
    bad = [k for k, v in state.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise CheckpointLoadError(f"{path}: the state_dict must map names to tensors; bad entries: {bad[:3]}")
    if not isinstance(saved, dict) or not isinstance(saved.get("model_path"), str):
        raise CheckpointLoadError(f"{path} has no hyper_parameters with a model_path: not an R_loc checkpoint")
    return saved, state


def model_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The :class:`LocalizabilityModel`'s own keys (``vlm.*``) from a trainer's ``state_dict``
    (``model.vlm.*``). Checkpoints written before the model was a module of its own hold the
    backbone directly under ``model.``: their keys get the ``vlm.`` level."""
    own = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    if own and not any(k.startswith("vlm.") for k in own):
        own = {f"vlm.{k}": v for k, v in own.items()}
    return own


def trained_settings(path: str | Path) -> tuple[LocalizabilitySettings, dict[str, torch.Tensor]]:
    """(settings it was trained with, its model weights: :func:`model_state`) of a trainer checkpoint."""
    saved, state = read_checkpoint(path)
    try:
        settings = LocalizabilitySettings.from_hparams(saved)
    except (TypeError, ValueError) as e:
        raise CheckpointLoadError(f"{path}: its hyper_parameters are not R_loc settings: {e}") from None
    return settings, model_state(state)


def write_export(model: LocalizabilityModel, out_dir: str | Path) -> Path:
    """Write the backbone (full weights, or the LoRA adapter only), its processor and the
    scoring settings to ``out_dir``; :func:`exported_arguments` reads them back."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.vlm.save_pretrained(out)
    model.processor.save_pretrained(out)
    settings = {k: getattr(model.settings, k) for k in EXPORTED_SETTINGS}
    settings["base_model_path"] = str(Path(model.settings.model_path).resolve())
    (out / SETTINGS_FILE).write_text(json.dumps(settings, indent=2))
    return out


def exported_arguments(path: str | Path) -> dict[str, Any]:
    """``LocalizabilityReward`` init arguments for an exported directory: its recorded settings
    and the model to load (the directory itself, or the base model with the directory as adapter).
    Older exports also recorded ``score_batch_size`` and ``name``; they are passed on too."""
    path = Path(path)
    settings_file = path / SETTINGS_FILE
    kwargs: dict[str, Any] = json.loads(settings_file.read_text()) if settings_file.exists() else {}
    base = kwargs.pop("base_model_path", None)
    if (path / "adapter_config.json").exists():
        if base is None:
            base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
        kwargs.update(model_path=str(base), adapter_path=str(path))
    else:
        kwargs.update(model_path=str(path))
    return kwargs
