"""GeoCLIP's dynamic GPS queue: a FIFO of past batches' coordinates used as extra negatives.

Each training step contrasts the batch's images with the batch's locations *and* every
location in the queue (encoded afresh by the current location encoder), then pushes the
batch's coordinates in, overwriting the oldest (GeoCLIP's ``dequeue_and_enqueue``: a ring
buffer with a write pointer; a batch at least as large as the queue replaces it with its last
``size`` rows).

The state is four buffers, so a Lightning checkpoint holds it and a resumed run draws exactly
the negatives the uninterrupted run would have: ``coordinates`` ``[size, 2]`` (degrees),
``pointer`` (next row to write), ``filled`` (rows holding a real coordinate) and ``pushes``
(batches pushed so far, which seeds the jitter).

Deviations from GeoCLIP: the queue starts empty and only its filled rows are negatives
(GeoCLIP starts with 4,096 random unit vectors read as degrees, i.e. points near (0, 0));
optional jitter moves each pushed coordinate by Gaussian noise of ``jitter_km`` standard
deviation (north-south and east-west), drawn from a generator seeded by ``(seed, pushes)``, so
it is the same after a resume. GeoCLIP's released training loop pushes coordinates
unchanged (``jitter_km = 0``, the default).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from globe.geo.distance import EARTH_RADIUS_KM

__all__ = ["GPSQueue", "jitter_coordinates", "KM_PER_DEGREE"]

KM_PER_DEGREE = EARTH_RADIUS_KM * math.pi / 180  # one degree of a great circle: 111.195 km


def jitter_coordinates(coordinates: torch.Tensor, sigma_km: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Coordinates ``[N, 2]`` moved by N(0, sigma_km²) km along the meridian and the parallel.

    Latitudes are clamped to [-90, 90]; longitudes wrapped to [-180, 180).
    """
    if sigma_km <= 0:
        return coordinates.clone()
    noise = torch.randn(coordinates.shape, generator=generator, dtype=torch.float64)
    lat = coordinates[:, 0].double()
    lon = coordinates[:, 1].double()
    cos_lat = torch.cos(torch.deg2rad(lat)).clamp(min=1e-3)  # a degree of longitude shrinks towards the poles
    new_lat = (lat + noise[:, 0] * sigma_km / KM_PER_DEGREE).clamp(-90.0, 90.0)
    new_lon = torch.remainder(lon + noise[:, 1] * sigma_km / (KM_PER_DEGREE * cos_lat) + 180.0, 360.0) - 180.0
    return torch.stack((new_lat, new_lon), dim=1).to(coordinates.dtype)


class GPSQueue(nn.Module):
    """FIFO of ``size`` coordinates (degrees), saved with the module's state.

    Args:
        size: rows in the queue (GeoCLIP: 4096); 0 disables it.
        jitter_km: standard deviation of the noise added to pushed coordinates (0: none).
        seed: seed of the jitter.
    """

    def __init__(self, size: int = 4096, jitter_km: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        if size < 0:
            raise ValueError(f"queue size must be >= 0, got {size}")
        self.size, self.jitter_km, self.seed = size, float(jitter_km), seed
        self.register_buffer("coordinates", torch.zeros(size, 2))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self.register_buffer("pushes", torch.zeros((), dtype=torch.long))

    def negatives(self) -> torch.Tensor:
        """The filled rows ``[filled, 2]`` (storage order)."""
        return self.coordinates[: int(self.filled)]

    @torch.no_grad()
    def push(self, coordinates: torch.Tensor) -> None:
        """Write a batch ``[B, 2]`` over the oldest rows."""
        if self.size == 0:
            return
        coordinates = coordinates.detach().to(self.coordinates.device, self.coordinates.dtype)
        if self.jitter_km > 0:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.pushes))
            coordinates = jitter_coordinates(coordinates.cpu(), self.jitter_km, generator).to(self.coordinates.device)
        self.pushes += 1
        b = coordinates.shape[0]
        if b >= self.size:
            self.coordinates.copy_(coordinates[-self.size:])
            self.pointer.zero_()
            self.filled.fill_(self.size)
            return
        start = int(self.pointer)
        rows = torch.arange(start, start + b, device=self.coordinates.device) % self.size
        self.coordinates[rows] = coordinates
        self.pointer.fill_((start + b) % self.size)
        self.filled.fill_(min(self.size, int(self.filled) + b))

    def extra_repr(self) -> str:
        return f"size={self.size}, jitter_km={self.jitter_km}"
