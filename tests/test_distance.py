"""Geodesic vs great-circle distances, hand-worked values."""

import math

import pytest
import torch
from geographiclib.geodesic import Geodesic

from globe.geo.distance import EARTH_RADIUS_KM, geodesic_km, great_circle_km

PARIS = (48.8566, 2.3522)
LONDON = (51.5074, -0.1278)


def test_paris_london_geodesic():
    # geographiclib WGS84 Inverse: s12 = 343923.12 m for these two points
    assert geodesic_km(*PARIS, *LONDON) == pytest.approx(343.923, abs=1e-3)
    assert geodesic_km(*PARIS, *PARIS) == 0.0


def test_great_circle_hand_worked():
    # one degree of longitude on the equator = 2 pi R / 360
    d = great_circle_km(0.0, 0.0, 0.0, 1.0)
    assert d.item() == pytest.approx(2 * math.pi * EARTH_RADIUS_KM / 360, rel=1e-12)
    # equator to pole = a quarter of the circumference
    assert great_circle_km(0.0, 0.0, 90.0, 0.0).item() == pytest.approx(math.pi * EARTH_RADIUS_KM / 2, rel=1e-12)
    # antipodes
    assert great_circle_km(0.0, 0.0, 0.0, 180.0).item() == pytest.approx(math.pi * EARTH_RADIUS_KM, rel=1e-12)
    # Paris-London on the sphere: 343.56 km, 0.1 % shorter than the geodesic
    assert great_circle_km(*PARIS, *LONDON).item() == pytest.approx(343.56, abs=0.01)


def test_great_circle_broadcasts_and_propagates_nan():
    lat2 = torch.tensor([[0.0], [float("nan")]])
    d = great_circle_km(0.0, 0.0, lat2, torch.tensor([1.0, 2.0, 3.0]))
    assert d.shape == (2, 3) and d.dtype == torch.float64
    assert torch.isnan(d[1]).all() and torch.isfinite(d[0]).all()
    assert math.isnan(geodesic_km(float("nan"), 0, 0, 0))


def test_great_circle_within_half_percent_of_geodesic():
    g = torch.Generator().manual_seed(0)
    lat1, lat2 = (torch.rand(300, generator=g, dtype=torch.float64) * 180 - 90 for _ in range(2))
    lon1, lon2 = (torch.rand(300, generator=g, dtype=torch.float64) * 360 - 180 for _ in range(2))
    gc = great_circle_km(lat1, lon1, lat2, lon2)
    ex = torch.tensor([geodesic_km(a, b, c, d) for a, b, c, d in zip(lat1, lon1, lat2, lon2)], dtype=torch.float64)
    rel = ((gc - ex).abs() / ex).max().item()
    assert rel < 0.0056  # the sphere-vs-ellipsoid bound is ~0.56 % (meridian arcs near a pole)
    # and agrees with geographiclib's own call
    assert ex[0].item() == pytest.approx(
        Geodesic.WGS84.Inverse(lat1[0].item(), lon1[0].item(), lat2[0].item(), lon2[0].item())["s12"] / 1000
    )
