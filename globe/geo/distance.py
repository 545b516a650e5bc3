"""Distances between points on the Earth, in kilometres.

* :func:`geodesic_km` — exact shortest path on the WGS84 ellipsoid (Karney's algorithm from
  ``geographiclib``, accurate to nanometres); one pair at a time, ~20 us per call.
* :func:`great_circle_km` — haversine distance on a sphere of the IUGG mean Earth radius
  R1 = 6371.0088 km, vectorised in torch with broadcasting (float64). It differs from the
  geodesic by at most ~0.5 % (the sphere is too long along meridians near the poles and too short near
  the equator); docs/geo.md has the measured figures. Accuracy thresholds (1 / 25 / 200 /
  750 / 2500 km) are evaluated with it in batches, as IM2GPS-style benchmarks usually do.

NaN coordinates give NaN distances in both functions (callers treat them as unresolved).
"""

from __future__ import annotations

import math
from typing import Union

import torch
from geographiclib.geodesic import Geodesic

__all__ = ["EARTH_RADIUS_KM", "geodesic_km", "great_circle_km"]

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius R1 = (2a + b) / 3 of WGS84
_WGS84 = Geodesic.WGS84
Coord = Union[float, int, torch.Tensor, "numpy.ndarray", list]  # noqa: F821


def geodesic_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Exact WGS84 geodesic distance in km (geographiclib); NaN if any coordinate is NaN.

    >>> round(geodesic_km(48.8566, 2.3522, 51.5074, -0.1278), 3)
    343.923
    """
    lat1, lon1, lat2, lon2 = float(lat1), float(lon1), float(lat2), float(lon2)
    if math.isnan(lat1 + lon1 + lat2 + lon2):
        return math.nan
    return _WGS84.Inverse(lat1, lon1, lat2, lon2, Geodesic.DISTANCE)["s12"] / 1000.0


def _as_tensor(x: Coord) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(torch.float64)
    return torch.as_tensor(x, dtype=torch.float64)


def great_circle_km(lat1: Coord, lon1: Coord, lat2: Coord, lon2: Coord) -> torch.Tensor:
    """Haversine distance in km on a sphere of radius 6371.0088 km; inputs broadcast.

    Uses ``2 R asin(sqrt(h))`` with ``h`` clamped to [0, 1], which is well conditioned for
    small distances (unlike the spherical law of cosines). Returns float64.

    >>> [round(d, 3) for d in great_circle_km([0.0, 0.0], [0.0, 0.0], [0.0, 90.0], [1.0, 0.0]).tolist()]
    [111.195, 10007.557]
    """
    p1, l1, p2, l2 = (torch.deg2rad(_as_tensor(v)) for v in (lat1, lon1, lat2, lon2))
    h = torch.sin((p2 - p1) / 2) ** 2 + torch.cos(p1) * torch.cos(p2) * torch.sin((l2 - l1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * torch.asin(torch.sqrt(h.clamp(0.0, 1.0)))
