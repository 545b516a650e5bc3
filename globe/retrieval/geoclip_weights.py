"""GeoCLIP's released weights, read from the files of the ``geoclip`` package, weights only.

The ``geoclip`` package (1.3.0) ships, under its package directory:

| file | content |
|---|---|
| ``model/weights/location_encoder_weights.pth`` | location encoder state dict: 3 branches x (``capsule.0.b`` [256, 2] RFF frequencies, ``capsule.{1,3,5}`` Linear 512->1024->1024->1024, ``head.0`` Linear 1024->512) |
| ``model/weights/image_encoder_mlp_weights.pth`` | image MLP state dict: ``0`` Linear 768->768, ``2`` Linear 768->512 (on CLIP ViT-L/14's 768-d image features) |
| ``model/weights/logit_scale_weights.pth`` | the learnt log-temperature, a scalar (3.681: scale 39.7) |
| ``model/gps_gallery/coordinates_100K.csv`` | the 100K-point GPS gallery, ``LAT,LON`` |

The CLIP ViT-L/14 backbone itself is not in the package (GeoCLIP fetches it from a model hub).

The package is found with ``importlib.util.find_spec("geoclip")``, which locates it without
running its ``__init__`` (that imports torchvision, pandas and geopy, which this project does
not install). Install it without its dependencies: ``pip install --no-deps geoclip==1.3.0``.
Each ``.pth`` is read with ``torch.load(weights_only=True)``: tensors and plain containers
only, never arbitrary pickled objects.

The tensors are mapped onto :class:`~globe.retrieval.location_encoder.LocationEncoder` and
:class:`~globe.retrieval.image_encoder.ImageEncoder`'s MLP by an explicit key map
(:func:`location_key_map`, :data:`IMAGE_MLP_KEY_MAP`), strictly: every file key must be mapped,
every target parameter and buffer must be filled, and every shape must agree, else
:class:`GeoCLIPWeightsError` says which keys or shapes differ.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

__all__ = [
    "GEOCLIP_FILES", "IMAGE_MLP_KEY_MAP", "GeoCLIPRelease", "GeoCLIPWeightsError", "find_geoclip_package",
    "load_geoclip_weights", "location_key_map", "read_geoclip_release", "remap_strict",
]

GEOCLIP_FILES = {
    "location_encoder": "model/weights/location_encoder_weights.pth",
    "image_mlp": "model/weights/image_encoder_mlp_weights.pth",
    "logit_scale": "model/weights/logit_scale_weights.pth",
    "gallery": "model/gps_gallery/coordinates_100K.csv",
}
INSTALL_HINT = "pip install --no-deps geoclip==1.3.0  (without --no-deps pip would also install a torchvision build that breaks CPU torch)"

#: GeoCLIP's image MLP (``nn.Sequential(Linear, ReLU, Linear)``) has the same layout as ours
IMAGE_MLP_KEY_MAP = {"0.weight": "0.weight", "0.bias": "0.bias", "2.weight": "2.weight", "2.bias": "2.bias"}


class GeoCLIPWeightsError(ValueError):
    """The GeoCLIP files are missing, unreadable, or do not fit the target module exactly."""


class GeoCLIPRelease(NamedTuple):
    root: Path  # the geoclip package directory
    location_encoder: dict[str, torch.Tensor]
    image_mlp: dict[str, torch.Tensor]
    logit_scale: torch.Tensor  # scalar, log of the inverse temperature
    gallery_csv: Path


def find_geoclip_package(root: str | Path | None = None) -> Path:
    """The ``geoclip`` package directory: ``root`` if given, else the installed package's."""
    if root is None:
        spec = importlib.util.find_spec("geoclip")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"the geoclip package is not installed; install it with: {INSTALL_HINT}")
        root = next(iter(spec.submodule_search_locations))
    root = Path(root)
    missing = [rel for rel in GEOCLIP_FILES.values() if not (root / rel).is_file()]
    if missing:
        raise FileNotFoundError(f"{root} is not a geoclip package directory: missing {missing}")
    return root


def _load_tensors(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - refused object, truncated file, not a torch file
        raise GeoCLIPWeightsError(f"{path} cannot be read as weights only: {type(e).__name__}: {str(e).splitlines()[0]}") from None


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    state = _load_tensors(path)
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise GeoCLIPWeightsError(f"{path} is not a state dict of tensors")
    return state


def read_geoclip_release(root: str | Path | None = None) -> GeoCLIPRelease:
    """Read the three weight files (weights only) and locate the gallery CSV."""
    root = find_geoclip_package(root)
    scale = _load_tensors(root / GEOCLIP_FILES["logit_scale"])
    if not isinstance(scale, torch.Tensor) or scale.numel() != 1:
        raise GeoCLIPWeightsError(f"{root / GEOCLIP_FILES['logit_scale']} is not a scalar tensor")
    return GeoCLIPRelease(
        root=root,
        location_encoder=_state_dict(root / GEOCLIP_FILES["location_encoder"]),
        image_mlp=_state_dict(root / GEOCLIP_FILES["image_mlp"]),
        logit_scale=scale.reshape(()),
        gallery_csv=root / GEOCLIP_FILES["gallery"],
    )


def location_key_map(num_branches: int = 3, depth: int = 3) -> dict[str, str]:
    """GeoCLIP ``LocationEncoder`` key -> :class:`LocationEncoder` key.

    >>> m = location_key_map(1, 1)
    >>> m["LocEnc0.capsule.0.b"], m["LocEnc0.capsule.1.weight"], m["LocEnc0.head.0.bias"]
    ('branches.0.frequencies', 'branches.0.mlp.0.weight', 'branches.0.head.bias')
    """
    out: dict[str, str] = {}
    for i in range(num_branches):
        out[f"LocEnc{i}.capsule.0.b"] = f"branches.{i}.frequencies"
        for j in range(depth):  # GeoCLIP: [rff, Linear, ReLU, Linear, ReLU, ...]; ours: [Linear, ReLU, ...]
            for kind in ("weight", "bias"):
                out[f"LocEnc{i}.capsule.{2 * j + 1}.{kind}"] = f"branches.{i}.mlp.{2 * j}.{kind}"
        for kind in ("weight", "bias"):
            out[f"LocEnc{i}.head.0.{kind}"] = f"branches.{i}.head.{kind}"
    return out


def remap_strict(source: dict[str, torch.Tensor], key_map: dict[str, str], target: nn.Module) -> dict[str, torch.Tensor]:
    """``source`` renamed by ``key_map``; raises unless keys and shapes match ``target`` exactly."""
    expected = target.state_dict()
    unmapped = sorted(set(source) - set(key_map))
    absent = sorted(set(key_map) - set(source))
    unfilled = sorted(set(expected) - set(key_map.values()))
    foreign = sorted(set(key_map.values()) - set(expected))
    if unmapped or absent or unfilled or foreign:
        raise GeoCLIPWeightsError(
            f"key map does not fit: file keys not mapped {unmapped[:5]}, mapped keys not in the file {absent[:5]}, "
            f"target keys not filled {unfilled[:5]}, mapped to keys the target lacks {foreign[:5]}"
        )
    out = {key_map[k]: v for k, v in source.items()}
    shapes = [(k, tuple(v.shape), tuple(expected[k].shape)) for k, v in out.items() if v.shape != expected[k].shape]
    if shapes:
        raise GeoCLIPWeightsError(f"shapes differ (key, file, target): {shapes[:5]}")
    return out


def _branch_layout(state: dict[str, torch.Tensor]) -> tuple[int, int]:
    branches = {int(m.group(1)) for k in state if (m := re.match(r"LocEnc(\d+)\.", k))}
    linears = {int(m.group(1)) for k in state if (m := re.match(r"LocEnc0\.capsule\.(\d+)\.weight$", k))}
    return len(branches), len(linears)


def load_geoclip_weights(location_encoder: nn.Module, image_mlp: nn.Module | None = None,
                         logit_scale: torch.Tensor | None = None, root: str | Path | None = None) -> GeoCLIPRelease:
    """Copy GeoCLIP's weights into ``location_encoder`` (and ``image_mlp``, ``logit_scale`` if given)."""
    release = read_geoclip_release(root)
    num_branches, depth = _branch_layout(release.location_encoder)
    location_encoder.load_state_dict(remap_strict(release.location_encoder, location_key_map(num_branches, depth), location_encoder), strict=True)
    if image_mlp is not None:
        image_mlp.load_state_dict(remap_strict(release.image_mlp, IMAGE_MLP_KEY_MAP, image_mlp), strict=True)
    if logit_scale is not None:
        with torch.no_grad():
            logit_scale.copy_(release.logit_scale)
    return release
