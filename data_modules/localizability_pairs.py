"""(image, reasoning, label) pairs for training the localizability reward model R_loc.

Built on the fly from any data module that yields ``list[GeoSample]`` with reasoning
(MP16-Reason shards, GeoSynth), as a stream of stages:

1. ``source``'s train / val loader          -> GeoSample batches
2. per sample, in stream order:
   - localizable sample                      -> positive ``(its image, its reasoning, 1)``
   - non-localizable sample                  -> negative ``(its image, its reasoning, 0)``
   - non-localizable sample, with probability ``claim_fraction``
                                             -> negative ``(its image, the reasoning of an
     earlier localizable sample, 0)``: a confident reasoning does not make a close-up of a
     wall localizable, so the model has to look at the image, not only at the text
   - localizable sample, with probability ``swap_fraction``
                                             -> negative ``(its image, the reasoning of an
     earlier sample from a *different country*, 0)``, the partner drawn from a reservoir of
     the last ``reservoir_size`` localizable samples (``swap_scope="any"``: any other sample)
3. pairs                                     -> batches of ``batch_size`` (collate = list)

The random draws use ``random.Random((seed, split, epoch))``: validation pairs are the same
every epoch, training pairs change with the epoch. Each pair records its ``kind``
(``positive``, ``non_localizable``, ``non_localizable_claim``, ``swapped``) so the model can log
what it learns about each.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from lightning.pytorch import LightningDataModule
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset

from .sample import GeoSample

__all__ = ["LocalizabilityPair", "LocalizabilityPairs", "PairStream", "make_pairs"]


@dataclass
class LocalizabilityPair:
    """One training example of R_loc: is ``image`` localizable from ``reasoning``?"""

    key: str
    image: Image.Image
    reasoning: str
    label: int  # 1 localizable from this reasoning, 0 not
    kind: str  # "positive" | "non_localizable" | "non_localizable_claim" | "swapped"


def make_pairs(
    samples: Iterable[GeoSample],
    rng: random.Random,
    swap_fraction: float = 0.5,
    swap_scope: Literal["country", "any"] = "country",
    reservoir_size: int = 256,
    claim_fraction: float = 1.0,
) -> Iterator[LocalizabilityPair]:
    """The pairs of a sample stream (module docstring, stage 2). Samples without reasoning are skipped."""
    reservoir: deque[GeoSample] = deque(maxlen=reservoir_size)
    for s in samples:
        if not s.reasoning:
            continue
        if not s.localizable:
            yield LocalizabilityPair(s.key, s.image, s.reasoning, 0, "non_localizable")
            if reservoir and rng.random() < claim_fraction:
                partner = rng.choice(reservoir)
                yield LocalizabilityPair(f"{s.key}|{partner.key}", s.image, partner.reasoning, 0, "non_localizable_claim")
            continue
        yield LocalizabilityPair(s.key, s.image, s.reasoning, 1, "positive")
        if reservoir and rng.random() < swap_fraction:
            partners = [p for p in reservoir if p.key != s.key and (swap_scope == "any" or p.country != s.country)]
            if partners:
                partner = rng.choice(partners)
                yield LocalizabilityPair(f"{s.key}|{partner.key}", s.image, partner.reasoning, 0, "swapped")
        reservoir.append(s)


class PairStream(IterableDataset):
    """Pairs built from a fresh pass over a GeoSample loader each time it is iterated."""

    def __init__(self, loader_fn: Callable[[], Iterable[list[GeoSample]]], split: str, seed: int,
                 swap_fraction: float, swap_scope: str, reservoir_size: int, claim_fraction: float = 1.0) -> None:
        self.loader_fn = loader_fn
        self.split = split
        self.seed = seed
        self.swap_fraction = swap_fraction
        self.swap_scope = swap_scope
        self.reservoir_size = reservoir_size
        self.claim_fraction = claim_fraction
        self.epoch = 0

    def __iter__(self) -> Iterator[LocalizabilityPair]:
        epoch = self.epoch if self.split == "train" else 0
        self.epoch += 1
        rng = random.Random(f"{self.seed}:{self.split}:{epoch}")
        samples = (s for batch in self.loader_fn() for s in batch)
        yield from make_pairs(samples, rng, self.swap_fraction, self.swap_scope, self.reservoir_size, self.claim_fraction)


class LocalizabilityPairs(LightningDataModule):
    """R_loc training data: pairs made from another data module's GeoSample stream.

    Args:
        source: a data module yielding ``list[GeoSample]`` with reasoning (``MP16Reason``
            shards, ``GeoSynth``); its own ``batch_size`` only sets how it reads.
        batch_size: pairs per batch.
        swap_fraction: probability that a localizable sample also yields a swapped negative.
        swap_scope: partner of a swapped negative from a different country ("country") or any sample.
        reservoir_size: recent localizable samples kept as swap partners.
        claim_fraction: probability that a non-localizable sample also yields a negative with
            a localizable sample's reasoning.
        seed: seed of the pair draws.
    """

    def __init__(
        self,
        source: LightningDataModule,
        batch_size: int = 8,
        swap_fraction: float = 0.5,
        swap_scope: Literal["country", "any"] = "country",
        reservoir_size: int = 256,
        claim_fraction: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for arg, value in (("swap_fraction", swap_fraction), ("claim_fraction", claim_fraction)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{arg} must be in [0, 1], got {value}")
        if swap_scope not in ("country", "any"):
            raise ValueError(f"swap_scope must be 'country' or 'any', got {swap_scope!r}")
        self.source = source
        self.batch_size = batch_size
        self.swap_fraction = swap_fraction
        self.swap_scope = swap_scope
        self.reservoir_size = reservoir_size
        self.claim_fraction = claim_fraction
        self.seed = seed
        self._streams: dict[str, PairStream] = {}

    def prepare_data(self) -> None:
        self.source.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        self.source.trainer = self.trainer  # the source shards its stream by the trainer's ranks
        self.source.setup(stage)

    def _loader(self, split: str) -> DataLoader:
        if split not in self._streams:
            loader_fn = getattr(self.source, f"{split}_dataloader")
            self._streams[split] = PairStream(loader_fn, split, self.seed, self.swap_fraction, self.swap_scope,
                                              self.reservoir_size, self.claim_fraction)
        # the source's loader does the reading (and its workers); pairing is cheap, done here
        return DataLoader(self._streams[split], batch_size=self.batch_size, collate_fn=list, num_workers=0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")
