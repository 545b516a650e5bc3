"""Random Fourier features (Tancik et al., 2020), the positional encoding of GeoCLIP's branches.

For an input v ∈ R^d and a fixed frequency matrix B ∈ R^{m x d} drawn from N(0, σ²)::

    γ(v) = [cos(2π B v), sin(2π B v)] ∈ R^{2m}

σ sets the spatial scale a branch resolves: GeoCLIP uses σ ∈ {2^0, 2^4, 2^8} on the scaled
Equal Earth coordinates (x ∈ [-1, 1]), i.e. features that vary over the whole map, over
about a sixteenth of it, and over a 256th of it (a few tens of km). B is drawn once and
never trained (GeoCLIP stores it as a parameter with ``requires_grad=False``; here it is a
buffer).
"""

from __future__ import annotations

import math

import torch

__all__ = ["random_fourier_features", "sample_frequencies"]


def random_fourier_features(v: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """γ(v) = [cos(2π v Bᵀ), sin(2π v Bᵀ)]; ``v`` ``[..., d]``, ``b`` ``[m, d]`` -> ``[..., 2m]``.

    >>> [round(x, 6) for x in random_fourier_features(torch.tensor([[0.125, 3.0]]), torch.tensor([[1.0, 0.0]]))[0].tolist()]
    [0.707107, 0.707107]
    """
    angles = (2 * math.pi * v) @ b.T  # [..., m]; this order is GeoCLIP's (same float32 rounding)
    return torch.cat((torch.cos(angles), torch.sin(angles)), dim=-1)


def sample_frequencies(sigma: float, m: int, d: int = 2, generator: torch.Generator | None = None) -> torch.Tensor:
    """B ``[m, d]`` with entries from N(0, sigma²) (GeoCLIP's ``sample_b``)."""
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma must be a positive finite number, got {sigma}")
    return torch.randn((m, d), generator=generator) * sigma
