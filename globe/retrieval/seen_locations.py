"""The distinct training locations seen so far, as a fixed-size buffer (the default gallery).

Each coordinate is kept as one int64 key of its rounding to 1e-5 degrees (about 1 m)::

    key = (round(lat · 1e5) + 9_000_000) · 36_000_001 + (round(lon · 1e5) + 18_000_000)

New keys are appended in the order they are first seen until ``capacity`` keys are held (then
later new places are not added). The buffers (``keys`` ``[capacity]``, ``count``) live in the
module's state, so a checkpoint carries the gallery to ``validate`` / ``test`` and a resumed
run continues it exactly.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SeenLocations", "coordinate_keys", "keys_to_coordinates"]

_LAT_OFFSET = 9_000_000
_LON_OFFSET = 18_000_000
_LON_SPAN = 36_000_001


def coordinate_keys(coordinates: torch.Tensor) -> torch.Tensor:
    """``[N, 2]`` degrees -> ``[N]`` int64 keys (1e-5 degree grid).

    >>> coordinate_keys(torch.tensor([[-90.0, -180.0], [0.0, 0.0]])).tolist()
    [0, 324000027000000]
    """
    scaled = torch.round(coordinates.double() * 1e5).long()
    return (scaled[:, 0] + _LAT_OFFSET) * _LON_SPAN + (scaled[:, 1] + _LON_OFFSET)


def keys_to_coordinates(keys: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`coordinate_keys`: ``[N]`` -> ``[N, 2]`` float64 degrees."""
    lat = torch.div(keys, _LON_SPAN, rounding_mode="floor") - _LAT_OFFSET
    lon = keys % _LON_SPAN - _LON_OFFSET
    return torch.stack((lat, lon), dim=1).double() / 1e5


class SeenLocations(nn.Module):
    """Distinct coordinates seen in training, first-seen order, at most ``capacity``."""

    def __init__(self, capacity: int = 100_000) -> None:
        super().__init__()
        self.capacity = capacity
        self.register_buffer("keys", torch.zeros(capacity, dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def __len__(self) -> int:
        return int(self.count)

    @torch.no_grad()
    def add(self, coordinates: torch.Tensor) -> None:
        n = int(self.count)
        if n >= self.capacity or coordinates.numel() == 0:
            return
        keys = coordinate_keys(coordinates.detach().cpu()).to(self.keys.device)
        fresh: list[int] = []
        held = set(self.keys[:n].tolist()) if n else set()
        for k in keys.tolist():  # first-seen order, duplicates within the batch once
            if k not in held:
                held.add(k)
                fresh.append(k)
        fresh = fresh[: self.capacity - n]
        if fresh:
            self.keys[n:n + len(fresh)] = torch.tensor(fresh, dtype=torch.long, device=self.keys.device)
            self.count.fill_(n + len(fresh))

    def coordinates(self) -> torch.Tensor:
        """``[count, 2]`` float32 degrees."""
        return keys_to_coordinates(self.keys[: int(self.count)].cpu()).float()
