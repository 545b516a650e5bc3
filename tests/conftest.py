"""Shared fixtures: one tiny Qwen2.5-VL and one small GeoSynth set per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """One intra-op thread for the whole session: the tiny models are overhead-bound, and on
    shared CPUs spinning threads cost more than they give."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Qwen2.5-VL saved as a Hugging Face directory (built in ~2 s)."""
    from globe.models.tiny import build_tiny_qwen2_5_vl

    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny-qwen2.5-vl"))


@pytest.fixture(scope="session")
def geosynth_root(tmp_path_factory):
    """A small GeoSynth set: 48 train / 8 val / 8 test images (shards + IM2GPS3K format)."""
    from data_modules.geosynth.generate import write_geosynth

    root = tmp_path_factory.mktemp("geosynth")
    write_geosynth(root, train=48, val=8, test=8, seed=0)
    return root
