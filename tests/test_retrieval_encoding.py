"""Equal Earth projection, random Fourier features and the location encoder, with hand-worked numbers."""

from __future__ import annotations

import math

import pytest
import torch

from globe.retrieval.fourier import random_fourier_features, sample_frequencies
from globe.retrieval.location_encoder import LocationEncoder
from globe.retrieval.projection import equal_earth_projection


def _project(lat: float, lon: float) -> list[float]:
    return equal_earth_projection(torch.tensor([lat], dtype=torch.float64), torch.tensor([lon], dtype=torch.float64))[0].tolist()


def test_equal_earth_origin_and_equator_edge():
    assert _project(0.0, 0.0) == [0.0, 0.0]
    # lat 0: theta = 0, x = 2√3·π / (3·A1) = 10.882796 / 4.020792 = 2.706630; times SF/180 = 0.369463 -> 1.0
    x, y = _project(0.0, 180.0)
    assert x == pytest.approx(1.0, abs=1e-6) and y == 0.0
    assert _project(0.0, -180.0)[0] == pytest.approx(-1.0, abs=1e-6)


def test_equal_earth_pole():
    # lat 90: sin(theta) = √3/2, theta = π/3 = 1.047198; cos(theta) = 1/2 but lambda = 0 -> x = 0
    # y = A1·θ + A2·θ³ + A3·θ⁷ + A4·θ⁹ = 1.340264·1.047198 - 0.081106·1.148381 + 0.000893·1.381021 + 0.003796·1.514459
    #   = 1.403522 - 0.093141 + 0.001233 + 0.005749 = 1.317363; times 0.369463 -> 0.486717
    x, y = _project(90.0, 0.0)
    assert x == 0.0 and y == pytest.approx(0.486717, abs=1e-6)
    assert _project(-90.0, 0.0)[1] == pytest.approx(-0.486717, abs=1e-6)


def test_equal_earth_mid_latitude():
    # lat 45, lon -90: sin(theta) = √3/2 · √2/2 = 0.612372, theta = 0.659058, cos(theta) = 0.790569
    # denominator = 3·(9·A4·θ⁸ + 7·A3·θ⁶ + 3·A2·θ² + A1) = 3·(9·0.003796·0.035595 + 7·0.000893·0.081949
    #               - 3·0.081106·0.434357 + 1.340264) = 3.708916
    # x = 2√3 · (-π/2) · 0.790569 / 3.708916 = -1.159854 -> ·0.369463 = -0.428523
    # y = A1·θ + A2·θ³ + A3·θ⁷ + A4·θ⁹ = 0.860231 -> ·0.369463 = 0.317824
    x, y = _project(45.0, -90.0)
    assert x == pytest.approx(-0.428523, abs=1e-6) and y == pytest.approx(0.317824, abs=1e-6)


def test_projection_batches_and_keeps_the_dtype():
    lat = torch.tensor([[0.0, 90.0], [45.0, -90.0]])
    out = equal_earth_projection(lat, torch.zeros_like(lat))
    assert out.shape == (2, 2, 2) and out.dtype == torch.float32


def test_random_fourier_features_hand_worked():
    b = torch.tensor([[1.0, 0.0], [0.0, 0.5], [0.25, 0.25]])
    v = torch.tensor([[0.25, 0.5]])
    # B v = [0.25, 0.25, 0.1875]; 2π B v = [π/2, π/2, 3π/8]
    # cos = [0, 0, 0.382683], sin = [1, 1, 0.923880]
    expected = [0.0, 0.0, 0.382683, 1.0, 1.0, 0.923880]
    assert random_fourier_features(v, b)[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_frequencies_have_the_asked_scale():
    g = torch.Generator().manual_seed(0)
    b = sample_frequencies(16.0, 20000, generator=g)
    assert b.shape == (20000, 2) and b.std().item() == pytest.approx(16.0, rel=0.02)
    with pytest.raises(ValueError, match="sigma"):
        sample_frequencies(0.0, 4)


def test_location_encoder_is_the_sum_of_its_branches():
    enc = LocationEncoder(sigmas=[1.0, 16.0], num_frequencies=8, hidden=16, depth=2, embed_dim=4)
    coords = torch.tensor([[48.8566, 2.3522], [-33.87, 151.21]])
    projected = equal_earth_projection(coords[:, 0], coords[:, 1])
    by_hand = enc.branches[0](projected) + enc.branches[1](projected)
    torch.testing.assert_close(enc(coords), by_hand)
    assert enc(coords).shape == (2, 4)


def test_frequencies_come_from_the_seed_not_the_global_rng():
    torch.manual_seed(1)
    a = LocationEncoder(num_frequencies=8, hidden=8, depth=1, embed_dim=4, frequency_seed=3)
    torch.manual_seed(2)
    b = LocationEncoder(num_frequencies=8, hidden=8, depth=1, embed_dim=4, frequency_seed=3)
    for x, y in zip(a.branches, b.branches):
        assert torch.equal(x.frequencies, y.frequencies)
    # each branch's frequencies are scaled by its own sigma (1, 16, 256)
    ratios = [branch.frequencies.abs().mean().item() for branch in a.branches]
    assert ratios[0] < ratios[1] < ratios[2]
    assert not any(p is a.branches[0].frequencies for p in a.parameters())  # a buffer, never trained
    assert math.isclose(len(list(a.buffers())), 3)
