"""Equal Earth projection of (latitude, longitude), as GeoCLIP feeds its location encoder.

Equal Earth (Šavrič, Patterson and Jenny, 2018) is an equal-area pseudocylindrical
projection. With latitude φ and longitude λ in radians::

    θ = asin(√3/2 · sin φ)
    x = 2√3 · λ · cos θ / (3 · (9 A4 θ⁸ + 7 A3 θ⁶ + 3 A2 θ² + A1))
    y = A4 θ⁹ + A3 θ⁷ + A2 θ³ + A1 θ

with A1 = 1.340264, A2 = -0.081106, A3 = 0.000893, A4 = 0.003796. GeoCLIP then multiplies
both coordinates by ``SF / 180`` with ``SF = 66.50336``, which maps longitude ±180° on the
equator to x = ±1 (so x ∈ [-1, 1] and y ∈ [-0.4866, 0.4866]). :func:`equal_earth_projection`
reproduces GeoCLIP's ``equal_earth_projection`` exactly, including that scale.
"""

from __future__ import annotations

import torch

__all__ = ["A1", "A2", "A3", "A4", "SF", "SCALE", "equal_earth_projection"]

A1 = 1.340264
A2 = -0.081106
A3 = 0.000893
A4 = 0.003796
SF = 66.50336
SCALE = SF / 180.0  # x(lat 0, lon ±180) = ±1


def equal_earth_projection(lat: torch.Tensor, lon: torch.Tensor) -> torch.Tensor:
    """(x, y) of the scaled Equal Earth projection, shape ``lat.shape + (2,)``.

    Inputs are degrees (any float dtype; the output has the inputs' dtype).

    >>> [round(v, 6) for v in equal_earth_projection(torch.tensor([0.0]), torch.tensor([180.0]))[0].tolist()]
    [1.0, 0.0]
    """
    # the operations and their order are GeoCLIP's, so float32 results agree bit for bit: the
    # σ = 256 branch multiplies the projection by ~1,600 rad, where rounding differences show
    phi = torch.deg2rad(lat)
    lam = torch.deg2rad(lon)
    sqrt3 = torch.sqrt(torch.tensor(3.0, dtype=lat.dtype, device=lat.device))
    theta = torch.asin((sqrt3 / 2) * torch.sin(phi))
    denominator = 3 * (9 * A4 * theta**8 + 7 * A3 * theta**6 + 3 * A2 * theta**2 + A1)
    x = (2 * sqrt3 * lam * torch.cos(theta)) / denominator
    y = A4 * theta**9 + A3 * theta**7 + A2 * theta**3 + A1 * theta
    return (torch.stack((x, y), dim=-1) * SF) / 180
