"""GeoCLIP's released weights: the strict key map, weights-only reading, and parity of the location
encoder with the ``geoclip`` package's own module where that package is installed
(``pip install --no-deps geoclip==1.3.0``; the tests that need it skip without it)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from globe.retrieval.geoclip_weights import (
    GEOCLIP_FILES, IMAGE_MLP_KEY_MAP, GeoCLIPWeightsError, find_geoclip_package, load_geoclip_weights,
    location_key_map, read_geoclip_release,
)
from globe.retrieval.location_encoder import LocationEncoder
from globe.retrieval.projection import equal_earth_projection

SMALL = {"num_frequencies": 4, "hidden": 8, "depth": 3, "embed_dim": 6}  # GeoCLIP's layout, small widths


def _installed_package() -> Path | None:
    try:
        return find_geoclip_package()
    except FileNotFoundError:
        return None


NEEDS_PACKAGE = pytest.mark.skipif(_installed_package() is None,
                                   reason="the geoclip package is not installed (pip install --no-deps geoclip==1.3.0)")


class _GeoCLIPCapsule(nn.Module):
    """The module tree of GeoCLIP's ``LocationEncoderCapsule`` (names only): capsule = [rff, Linear, ReLU] x 3, head."""

    def __init__(self, m: int, hidden: int, embed: int) -> None:
        super().__init__()
        rff = nn.Module()
        rff.b = nn.Parameter(torch.randn(m, 2), requires_grad=False)
        self.capsule = nn.Sequential(rff, nn.Linear(2 * m, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(hidden, embed))


def _fake_package(root: Path, m: int = 4, hidden: int = 8, embed: int = 6, mlp_in: int = 10) -> dict:
    """A directory laid out like the geoclip package, holding GeoCLIP-named random tensors."""
    torch.manual_seed(0)
    location = nn.Module()
    for i in range(3):
        location.add_module(f"LocEnc{i}", _GeoCLIPCapsule(m, hidden, embed))
    mlp = nn.Sequential(nn.Linear(mlp_in, 12), nn.ReLU(), nn.Linear(12, embed))
    files = {
        "location_encoder": location.state_dict(),
        "image_mlp": mlp.state_dict(),
        "logit_scale": torch.tensor(3.5),
    }
    for name, obj in files.items():
        (root / GEOCLIP_FILES[name]).parent.mkdir(parents=True, exist_ok=True)
        torch.save(obj, root / GEOCLIP_FILES[name])
    (root / GEOCLIP_FILES["gallery"]).parent.mkdir(parents=True, exist_ok=True)
    (root / GEOCLIP_FILES["gallery"]).write_text("LAT,LON\n48.85,2.35\n")
    return files


def test_the_key_map_covers_geoclip_names_one_to_one(tmp_path):
    files = _fake_package(tmp_path)
    ours = LocationEncoder(**SMALL)
    mlp = nn.Sequential(nn.Linear(10, 12), nn.ReLU(), nn.Linear(12, 6))
    scale = nn.Parameter(torch.tensor(0.0))
    load_geoclip_weights(ours, mlp, scale, root=tmp_path)

    key_map = location_key_map(3, 3)
    assert set(key_map) == set(files["location_encoder"])  # 3 x (b + 3 Linear + head) = 27 tensors, all mapped
    assert sorted(key_map.values()) == sorted(ours.state_dict())  # and every target tensor filled once
    target = ours.state_dict()
    for src, dst in key_map.items():
        assert torch.equal(target[dst], files["location_encoder"][src]), (src, dst)
    for src, dst in IMAGE_MLP_KEY_MAP.items():
        assert torch.equal(mlp.state_dict()[dst], files["image_mlp"][src])
    assert scale.item() == 3.5


def test_the_real_geoclip_names_are_the_mapped_ones():
    assert sorted(location_key_map(3, 3)) == sorted(
        [f"LocEnc{i}.capsule.0.b" for i in range(3)]
        + [f"LocEnc{i}.capsule.{j}.{w}" for i in range(3) for j in (1, 3, 5) for w in ("weight", "bias")]
        + [f"LocEnc{i}.head.0.{w}" for i in range(3) for w in ("weight", "bias")]
    )


def test_a_missing_or_extra_key_or_a_shape_is_refused(tmp_path):
    files = _fake_package(tmp_path)
    path = tmp_path / GEOCLIP_FILES["location_encoder"]
    state = dict(files["location_encoder"])
    state["LocEnc0.extra.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(GeoCLIPWeightsError, match=r"file keys not mapped \['LocEnc0.extra.weight'\]"):
        load_geoclip_weights(LocationEncoder(**SMALL), root=tmp_path)
    state = dict(files["location_encoder"])
    del state["LocEnc2.head.0.bias"]
    torch.save(state, path)
    with pytest.raises(GeoCLIPWeightsError, match="LocEnc2.head.0.bias"):
        load_geoclip_weights(LocationEncoder(**SMALL), root=tmp_path)
    torch.save(files["location_encoder"], path)
    with pytest.raises(GeoCLIPWeightsError, match="shapes differ"):
        load_geoclip_weights(LocationEncoder(**{**SMALL, "hidden": 16}), root=tmp_path)
    with pytest.raises(GeoCLIPWeightsError, match="target keys not filled"):  # two branches cannot take three
        load_geoclip_weights(LocationEncoder(sigmas=[1.0, 16.0], **SMALL), root=tmp_path)


class _Payload:
    def __reduce__(self):  # what a malicious pickle would run
        return (print, ("unpickled",))


def test_weights_are_read_weights_only(tmp_path, capsys):
    _fake_package(tmp_path)
    torch.save({"LocEnc0.capsule.0.b": _Payload()}, tmp_path / GEOCLIP_FILES["location_encoder"])
    with pytest.raises(GeoCLIPWeightsError, match="cannot be read as weights only"):
        read_geoclip_release(tmp_path)
    assert "unpickled" not in capsys.readouterr().out


def test_a_directory_without_the_files_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a geoclip package directory"):
        find_geoclip_package(tmp_path)


@NEEDS_PACKAGE
def test_the_installed_release_loads_into_geoclip_sized_modules():
    ours = LocationEncoder()  # GeoCLIP's sizes are the defaults
    mlp = nn.Sequential(nn.Linear(768, 768), nn.ReLU(), nn.Linear(768, 512))
    scale = nn.Parameter(torch.tensor(0.0))
    release = load_geoclip_weights(ours, mlp, scale)
    target = ours.state_dict()
    for src, dst in location_key_map(3, 3).items():
        assert torch.equal(target[dst], release.location_encoder[src])
    assert scale.item() == pytest.approx(3.681, abs=1e-3)  # exp: 39.7
    assert sum(1 for _ in release.gallery_csv.open()) == 100_001  # header + 100K points


def _import_package_location_encoder(root: Path) -> types.ModuleType:
    """The package's ``geoclip/model/location_encoder.py`` (and its ``rff``), imported without the
    package ``__init__`` files, which import the image half (transformers CLIP, torchvision via
    ``geoclip.train``, pandas via ``misc``): parent packages are stand-ins whose ``__path__`` is the
    real folder; ``misc`` is a stand-in holding only ``file_dir`` (what the encoder reads from it)."""
    name = "_geoclip_release"
    top, model, misc = (types.ModuleType(f"{name}{s}") for s in ("", ".model", ".model.misc"))
    top.__path__ = [str(root)]
    model.__path__ = [str(root / "model")]
    misc.file_dir = str(root / "model")
    sys.modules.update({top.__name__: top, model.__name__: model, misc.__name__: misc})
    return importlib.import_module(f"{name}.model.location_encoder")


@pytest.fixture
def package_location_encoder():
    root = _installed_package()
    try:
        module = importlib.import_module("geoclip.model.location_encoder")  # works where its dependencies are installed
    except ImportError:
        module = _import_package_location_encoder(root)
    yield module
    for key in [k for k in sys.modules if k.startswith("_geoclip_release")]:
        del sys.modules[key]


@NEEDS_PACKAGE
def test_parity_with_the_package_location_encoder(package_location_encoder):
    theirs = package_location_encoder.LocationEncoder(from_pretrained=True).eval()  # reads its own weights file
    ours = LocationEncoder().eval()
    load_geoclip_weights(ours)
    coords = torch.tensor([[48.8566, 2.3522], [35.6762, 139.6503], [-33.8688, 151.2093], [40.7128, -74.0060],
                           [0.0, 0.0], [89.9, 179.9], [-89.9, -179.9], [-22.9068, -43.1729]])
    coords = torch.cat([coords, torch.rand(56, 2) * torch.tensor([180.0, 360.0]) - torch.tensor([90.0, 180.0])])
    with torch.no_grad():
        a, b = theirs(coords), ours(coords)
    assert a.shape == b.shape == (64, 512)
    diff = (a - b).abs().max().item()
    # same operations in the same order: measured 0.0 (bit for bit); embeddings are ~0.1 in size, and
    # the σ = 256 branch turns any rounding difference in the projection into ~1e-5 here
    assert diff <= 1e-6, f"max abs diff {diff}"
    proj = package_location_encoder.equal_earth_projection(coords)
    assert torch.equal(equal_earth_projection(coords[:, 0], coords[:, 1]), proj)


@NEEDS_PACKAGE
def test_georetrieval_with_geoclip_true_starts_from_the_release():
    from globe.retrieval.module import GeoRetrieval

    # a tiny tower whose projected features have CLIP ViT-L/14's 768 dimensions, which the released MLP reads
    model = GeoRetrieval(vision_config={"projection_dim": 768}, geoclip=True, gallery="geoclip")
    release = read_geoclip_release()
    assert torch.equal(model.location_encoder.branches[2].frequencies, release.location_encoder["LocEnc2.capsule.0.b"])
    assert torch.equal(model.image_encoder.mlp[2].weight, release.image_mlp["2.weight"])
    assert model.logit_scale.item() == release.logit_scale.item()
    assert model._gallery_coordinates().shape == (100_000, 2)
