"""GeoCLIP's location encoder: Equal Earth projection -> one RFF + MLP branch per scale -> sum.

For a coordinate g = (lat, lon) in degrees::

    p      = EqualEarth(g)                                   # [2], scaled to x ∈ [-1, 1]
    h_i    = head_i(MLP_i(γ_{B_i}(p)))   for each σ_i          # B_i ~ N(0, σ_i²), [m, 2]
    L(g)   = Σ_i h_i                                          # [embed_dim]

``MLP_i`` is ``depth`` blocks of Linear + ReLU (2m -> hidden -> ... -> hidden) and ``head_i`` one
Linear (hidden -> embed_dim). GeoCLIP's release: σ = (2^0, 2^4, 2^8), m = 256 frequencies
(512 features), hidden 1024, depth 3, embed_dim 512; those are the defaults here, and
:mod:`globe.retrieval.geoclip_weights` maps its released weights onto this module one
tensor to one tensor (``LocEnc{i}.capsule.0.b`` -> ``branches.{i}.frequencies``, ...).

Deviations from GeoCLIP: the frequencies are drawn from a dedicated generator
(``frequency_seed``), so two encoders built with the same arguments are identical whatever the
global RNG did before; the sizes are arguments, so a tiny encoder trains on a CPU. The
output is not normalised here (the loss and the gallery normalise), as in GeoCLIP.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from globe.retrieval.fourier import random_fourier_features, sample_frequencies
from globe.retrieval.projection import equal_earth_projection

__all__ = ["LocationBranch", "LocationEncoder", "GEOCLIP_SIGMAS"]

GEOCLIP_SIGMAS = (2.0**0, 2.0**4, 2.0**8)


class LocationBranch(nn.Module):
    """One scale: fixed random Fourier features of the projected point, an MLP and a head."""

    def __init__(self, frequencies: torch.Tensor, hidden: int, depth: int, embed_dim: int) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.register_buffer("frequencies", frequencies.clone())  # [m, 2], never trained
        layers: list[nn.Module] = []
        width = 2 * frequencies.shape[0]
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.mlp = nn.Sequential(*layers)
        self.head = nn.Linear(hidden, embed_dim)

    def forward(self, projected: torch.Tensor) -> torch.Tensor:  # [N, 2] -> [N, embed_dim]
        features = random_fourier_features(projected, self.frequencies.to(projected.dtype))
        return self.head(self.mlp(features))


class LocationEncoder(nn.Module):
    """(lat, lon) in degrees ``[N, 2]`` -> location embedding ``[N, embed_dim]`` (unnormalised).

    Args:
        sigmas: standard deviation of each branch's frequencies (one branch per value).
        num_frequencies: frequencies per branch (m; the features are 2m wide).
        hidden: width of each branch's MLP.
        depth: Linear + ReLU blocks per branch.
        embed_dim: output size.
        frequency_seed: seed of the generator the frequencies are drawn from.
    """

    def __init__(
        self,
        sigmas: Sequence[float] = GEOCLIP_SIGMAS,
        num_frequencies: int = 256,
        hidden: int = 1024,
        depth: int = 3,
        embed_dim: int = 512,
        frequency_seed: int = 0,
    ) -> None:
        super().__init__()
        if not sigmas:
            raise ValueError("sigmas must name at least one scale")
        generator = torch.Generator().manual_seed(frequency_seed)
        self.sigmas = tuple(float(s) for s in sigmas)
        self.embed_dim = embed_dim
        self.branches = nn.ModuleList(
            LocationBranch(sample_frequencies(s, num_frequencies, generator=generator), hidden, depth, embed_dim)
            for s in self.sigmas
        )

    def forward(self, coordinates: torch.Tensor) -> torch.Tensor:
        dtype = self.branches[0].head.weight.dtype
        projected = equal_earth_projection(coordinates[..., 0], coordinates[..., 1]).to(dtype)  # [N, 2]
        out = self.branches[0](projected)
        for branch in self.branches[1:]:
            out = out + branch(projected)
        return out
