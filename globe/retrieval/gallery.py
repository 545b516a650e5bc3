"""A GPS gallery: candidate locations, their embeddings, and a top-k inner-product index.

GeoCLIP predicts by retrieval over a gallery of locations (100K MP-16 training coordinates in
its release): every gallery point is encoded once by the location encoder, and an image's
prediction is the gallery point whose normalised embedding has the largest inner product
(cosine) with the image's::

    scores = normalize(V(image)) · normalize(L(gallery))ᵀ     # [Q, N]
    top-k  = argsort(scores)[:, :k]                            # coordinates [Q, k, 2], scores [Q, k]

Two interchangeable exact backends (``benchmarks/gallery_index.py`` measures both, figures in
docs/retrieval.md):

* ``"matmul"``: a torch matrix product and ``topk``, the queries processed in chunks so the
  score block stays under ``chunk_bytes`` (256 MiB by default); runs on any device.
* ``"faiss"``: ``faiss.IndexFlatIP`` (the ``faiss-cpu`` package), exact inner product on the CPU.

Scores are cosines in [-1, 1]; multiply by the model's ``exp(logit_scale)`` and softmax over
the gallery for GeoCLIP's probabilities (:meth:`GPSGallery.search` does not, so top-k from
both backends compare directly).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GPSGallery", "GalleryHits", "MatmulIndex", "FaissIndex", "Backend"]

Backend = Literal["matmul", "faiss"]


class GalleryHits(NamedTuple):
    coordinates: torch.Tensor  # [Q, k, 2] degrees (lat, lon)
    scores: torch.Tensor  # [Q, k] cosine, best first
    indices: torch.Tensor  # [Q, k] rows of the gallery


class MatmulIndex:
    """Exact top-k by ``queries @ embeddingsᵀ`` and ``torch.topk``, chunked over the queries."""

    def __init__(self, embeddings: torch.Tensor, chunk_bytes: int = 256 * 2**20) -> None:
        self.embeddings = embeddings.contiguous()  # [N, D], normalised
        self.chunk_bytes = chunk_bytes

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.embeddings.shape[0]
        rows = max(1, self.chunk_bytes // (4 * max(n, 1)))
        queries = queries.to(self.embeddings.device, self.embeddings.dtype)
        scores, indices = [], []
        for start in range(0, queries.shape[0], rows):
            block = queries[start:start + rows] @ self.embeddings.T  # [rows, N]
            top = torch.topk(block, k, dim=1)
            scores.append(top.values)
            indices.append(top.indices)
        if not scores:
            return torch.zeros(0, k), torch.zeros(0, k, dtype=torch.long)
        return torch.cat(scores), torch.cat(indices)


class FaissIndex:
    """Exact top-k with ``faiss.IndexFlatIP`` (float32, CPU)."""

    def __init__(self, embeddings: torch.Tensor) -> None:
        try:
            import faiss
        except ImportError as e:  # pragma: no cover - faiss-cpu is a dependency
            raise ImportError("the 'faiss' gallery backend needs the faiss-cpu package (pip install faiss-cpu)") from e
        data = embeddings.detach().to("cpu", torch.float32).contiguous().numpy()
        self.index = faiss.IndexFlatIP(data.shape[1])
        self.index.add(data)

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        q = queries.detach().to("cpu", torch.float32).contiguous().numpy()
        scores, indices = self.index.search(q, k)
        return torch.from_numpy(scores), torch.from_numpy(indices).long()


class GPSGallery:
    """Gallery coordinates ``[N, 2]`` (degrees) with normalised embeddings ``[N, D]`` and an index.

    Args:
        coordinates: gallery locations (lat, lon) in degrees.
        embeddings: their location embeddings (normalised here).
        backend: ``"matmul"`` or ``"faiss"``.
    """

    def __init__(self, coordinates: torch.Tensor, embeddings: torch.Tensor, backend: Backend = "matmul") -> None:
        if coordinates.ndim != 2 or coordinates.shape[1] != 2:
            raise ValueError(f"coordinates must be [N, 2] (lat, lon), got {tuple(coordinates.shape)}")
        if embeddings.shape[0] != coordinates.shape[0]:
            raise ValueError(f"{embeddings.shape[0]} embeddings for {coordinates.shape[0]} coordinates")
        if coordinates.shape[0] == 0:
            raise ValueError("an empty gallery cannot answer a query")
        self.coordinates = coordinates
        self.backend = backend
        self.dim = embeddings.shape[1]
        normalised = F.normalize(embeddings.detach().float(), dim=-1)
        if backend == "matmul":
            self.index: MatmulIndex | FaissIndex = MatmulIndex(normalised)
        elif backend == "faiss":
            self.index = FaissIndex(normalised)  # faiss keeps its own copy; ours is dropped
        else:
            raise ValueError(f"backend must be 'matmul' or 'faiss', got {backend!r}")

    def __len__(self) -> int:
        return self.coordinates.shape[0]

    @classmethod
    @torch.no_grad()
    def encode(cls, coordinates: torch.Tensor, location_encoder: nn.Module, backend: Backend = "matmul",
               batch_size: int = 8192) -> "GPSGallery":
        """Encode ``coordinates`` with ``location_encoder`` (in batches, no gradient) and index them."""
        param = next(location_encoder.parameters())
        chunks = [location_encoder(coordinates[i:i + batch_size].to(param.device, torch.float32))
                  for i in range(0, coordinates.shape[0], batch_size)]
        embeddings = torch.cat(chunks) if chunks else torch.zeros(0, 1)
        return cls(coordinates, embeddings, backend)

    def search(self, queries: torch.Tensor, k: int = 1) -> GalleryHits:
        """Top-k gallery points of each query embedding ``[Q, D]`` (normalised here)."""
        if not 1 <= k <= len(self):
            raise ValueError(f"k must be between 1 and the gallery size {len(self)}, got {k}")
        scores, indices = self.index.search(F.normalize(queries.detach().float(), dim=-1), k)
        indices = indices.to(self.coordinates.device)
        return GalleryHits(self.coordinates[indices], scores, indices)

    def nbytes(self) -> int:
        """Bytes of the indexed embeddings (float32, one copy in either backend)."""
        return len(self) * self.dim * 4
