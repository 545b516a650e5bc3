"""Image-to-location InfoNCE, as GeoCLIP trains it, with optional false-negative masking.

For a batch of B images with embeddings v_i and candidate locations whose embeddings are
l_j (j < B: the batch's own locations, l_i the positive of image i; j >= B: the GPS queue's
negatives), all L2-normalised, and the learnable log-temperature t::

    logits_ij = exp(t) · <v_i, l_j>                      # [B, B + Q]
    loss      = (1/B) Σ_i -log softmax_j(logits_i)_i       # cross-entropy with target i

Only the image -> location direction is trained (GeoCLIP's released loop does the same: a
queue of locations has no images to contrast the other way). ``exp(t)`` is clamped to
``max_logit_scale`` (CLIP's 100; GeoCLIP does not clamp).

Deviation: ``negative_mask`` (True = not a negative) removes candidates from image i's
softmax; :func:`false_negative_mask` marks the candidates within ``radius_km`` of image i's own
location (other images of the same place in the batch, the same place earlier in the queue),
which would otherwise be pushed away from it. GeoCLIP has no such mask; its gallery of
MP-16 photos rarely repeats a coordinate, while a data set of a few cities always does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from globe.geo.distance import great_circle_km

__all__ = ["contrastive_logits", "contrastive_loss", "false_negative_mask"]


def contrastive_logits(image_emb: torch.Tensor, location_emb: torch.Tensor, logit_scale: torch.Tensor,
                       max_logit_scale: float = 100.0) -> torch.Tensor:
    """``exp(t) · cos(v_i, l_j)``: ``[B, D] x [M, D] -> [B, M]``."""
    scale = logit_scale.exp().clamp(max=max_logit_scale)
    return scale * F.normalize(image_emb, dim=-1) @ F.normalize(location_emb, dim=-1).T


def contrastive_loss(image_emb: torch.Tensor, location_emb: torch.Tensor, logit_scale: torch.Tensor,
                     negative_mask: torch.Tensor | None = None, max_logit_scale: float = 100.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, logits ``[B, M]``); row i's positive is column i, columns >= B are negatives only.

    >>> v = torch.eye(2)   # two images, each equal to its own location: logits [[1, 0], [0, 1]]
    >>> round(contrastive_loss(v, v, torch.tensor(0.0))[0].item(), 5)   # log(1 + e^-1)
    0.31326
    """
    b = image_emb.shape[0]
    if location_emb.shape[0] < b:
        raise ValueError(f"{location_emb.shape[0]} locations for {b} images: the first B must be the positives")
    logits = contrastive_logits(image_emb, location_emb, logit_scale, max_logit_scale)
    if negative_mask is not None:
        own = torch.zeros_like(negative_mask)
        own[torch.arange(b), torch.arange(b)] = True
        logits = logits.masked_fill(negative_mask & ~own, -math.inf)  # a positive is never masked
    return F.cross_entropy(logits, torch.arange(b, device=logits.device)), logits


def false_negative_mask(positives: torch.Tensor, candidates: torch.Tensor, radius_km: float) -> torch.Tensor:
    """``[B, M]`` True where candidate j is within ``radius_km`` of image i's location (j != i).

    >>> p = torch.tensor([[48.85, 2.35], [35.68, 139.69]])
    >>> false_negative_mask(p, torch.cat([p, p[:1]]), 1.0).tolist()   # Paris again in the queue
    [[False, False, True], [False, False, False]]
    """
    d = great_circle_km(positives[:, None, 0], positives[:, None, 1], candidates[None, :, 0], candidates[None, :, 1])
    mask = d <= radius_km
    b = positives.shape[0]
    mask[torch.arange(b), torch.arange(b)] = False
    return mask.to(positives.device)
