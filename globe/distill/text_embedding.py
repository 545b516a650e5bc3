"""Sentence embeddings of reasoning chains, for the agreement filter's ``reasoning: embedding``.

Any local Hugging Face encoder directory (``AutoTokenizer`` + ``AutoModel``: a
sentence-transformers model such as all-MiniLM, BERT, E5...), mean-pooled over the attention
mask and L2-normalised, as sentence-transformers does for its mean-pooling models; the cosine
of two chains is then their dot product. Nothing is downloaded: the directory must exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

__all__ = ["TextEmbedder", "mean_pool"]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` [B, T, D] over the positions where ``mask`` [B, T] is 1 -> [B, D].

    >>> mean_pool(torch.tensor([[[1.0], [3.0], [100.0]]]), torch.tensor([[1, 1, 0]])).tolist()
    [[2.0]]
    """
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)


class TextEmbedder(nn.Module):
    """Args:
    model_path: local encoder directory (tokenizer + model).
    max_length: tokens kept of each text.
    batch_size: texts per forward pass.
    """

    def __init__(self, model_path: str, max_length: int = 256, batch_size: int = 16) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        if not Path(model_path).is_dir():
            raise FileNotFoundError(f"embedding model {model_path!r} is not a local directory")
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModel.from_pretrained(model_path).eval()
        self.model.requires_grad_(False)
        self.max_length, self.batch_size = max_length, batch_size

    @torch.no_grad()
    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-norm embeddings ``[N, D]`` (float32, CPU)."""
        device = next(self.model.parameters()).device
        out = []
        for start in range(0, len(texts), self.batch_size):
            tok = self.tokenizer(list(texts[start:start + self.batch_size]), padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(device)
            hidden = self.model(**tok).last_hidden_state  # [B, T, D]
            out.append(torch.nn.functional.normalize(mean_pool(hidden, tok["attention_mask"]).float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, 0)

    def similarities_to(self, texts: Sequence[str], kept: int) -> list[float]:
        """Cosine of ``texts[kept]`` with every other text, in order."""
        if len(texts) < 2:
            return []
        emb = self.embed(texts)  # [N, D]
        sims = (emb @ emb[kept]).tolist()  # [N]
        return [s for j, s in enumerate(sims) if j != kept]
