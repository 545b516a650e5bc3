"""GeoSynth as a LightningDataModule: generate once into ``root``, then stream the shards.

``prepare_data()`` (rank 0 only, as Lightning calls it) generates the data set unless
``root/manifest.json`` already records the same arguments; ``setup()`` points the inherited
:class:`MP16Reason` pipeline at the generated shards. ``test_format="im2gps3k"`` makes the
test loader read the IM2GPS3K-format copy of the test split (CSV + image folder) through
:class:`IM2GPS3K` instead of the test shards; the predict loader reads the same test split in
the same format (so ``cli.py predict`` rows carry the IM2GPS3K CSV's ``IMG_ID`` that
``python -m globe.score`` matches).
"""

from __future__ import annotations

import json
from pathlib import Path

from torch.utils.data import DataLoader

from ..im2gps3k import IM2GPS3K
from ..mp16_reason import MP16Reason
from .generate import FORMAT_VERSION, option_args, write_geosynth

__all__ = ["GeoSynth"]


class GeoSynth(MP16Reason):
    """Synthetic geo-localization data with real coordinates, streamed like MP16-Reason.

    Args:
        root: directory holding (or receiving) the generated data set.
        train_size / val_size / test_size: images per split.
        seed: generation seed: fixes the data set itself.
        shuffle_seed: order seed of the training stream; ``None`` follows ``seed_everything``
            (``--seed_everything N`` reorders the same data set).
        image_size: side of the square images in pixels.
        shard_size: images per shard (each split has at least ``min_shards`` shards).
        min_shards: shards per split at least, so several ranks x workers can read it.
        nonlocalizable_rate: fraction of close-ups without any location cue.
        test_format: ``"shards"`` or ``"im2gps3k"`` (CSV + image folder copy of the test split),
            for the test and predict loaders.
        layout: ``"cities"`` (every sample at its city's point) or ``"districts"`` (2-4
            districts per city a few km apart, each with its own cues; samples at their
            district: :mod:`data_modules.geosynth.districts`).
        answer_coordinates: end the reasoning's answer with ``coordinates: lat, lon``.
        batch_size, num_workers, shuffle_buffer, epoch_length, max_bad_fraction: as MP16Reason.
    """

    def __init__(
        self,
        root: str = "artifacts/geosynth",
        train_size: int = 2000,
        val_size: int = 200,
        test_size: int = 300,
        seed: int = 0,
        shuffle_seed: int | None = None,
        image_size: int = 128,
        shard_size: int = 250,
        min_shards: int = 4,
        nonlocalizable_rate: float = 0.15,
        test_format: str = "shards",
        layout: str = "cities",
        answer_coordinates: bool = False,
        batch_size: int = 8,
        num_workers: int = 0,
        shuffle_buffer: int = 500,
        epoch_length: int | None = None,
        max_bad_fraction: float = 0.1,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, shuffle_buffer=shuffle_buffer, seed=shuffle_seed,
                         epoch_length=epoch_length, max_bad_fraction=max_bad_fraction)
        if test_format not in ("shards", "im2gps3k"):
            raise ValueError(f"test_format must be 'shards' or 'im2gps3k', got {test_format!r}")
        self.root = Path(root)
        self.generation_args = {
            "train": train_size, "val": val_size, "test": test_size, "seed": seed, "size": image_size,
            "shard_size": shard_size, "min_shards": min_shards, "nonlocalizable_rate": nonlocalizable_rate,
            "version": FORMAT_VERSION, **option_args(layout, answer_coordinates),  # options only when not default
        }
        self.test_format = test_format
        self._im2gps3k: IM2GPS3K | None = None

    def _manifest(self) -> dict | None:
        path = self.root / "manifest.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None

    def is_generated(self) -> bool:
        """True when ``root`` holds a complete data set made with exactly these arguments."""
        manifest = self._manifest()
        if manifest is None or manifest.get("args") != self.generation_args:
            return False
        return all((self.root / split / name).is_file() for split, names in manifest["shards"].items() for name in names)

    def prepare_data(self) -> None:
        if not self.is_generated():
            args = dict(self.generation_args)
            args.pop("version")
            write_geosynth(self.root, **args)

    def setup(self, stage: str | None = None) -> None:
        manifest = self._manifest()
        if manifest is None or manifest.get("args") != self.generation_args:
            raise RuntimeError(f"GeoSynth: no data for these arguments in {self.root}; call prepare_data() first")
        for split in ("train", "val", "test"):
            names = manifest["shards"][split]
            setattr(self, f"{split}_shards", [str(self.root / split / n) for n in names] if names else None)
        if self.test_format == "im2gps3k":
            self._im2gps3k = IM2GPS3K(csv_path=str(self.root / manifest["im2gps3k"]["csv"]),
                                      images=str(self.root / manifest["im2gps3k"]["images"]),
                                      batch_size=self.batch_size, num_workers=self.num_workers,
                                      max_bad_fraction=self.max_bad_fraction)
            self.stats["test"] = self._im2gps3k.stats

    def test_dataloader(self) -> DataLoader:
        if self._im2gps3k is not None:
            self._im2gps3k.trainer = self.trainer
            return self._im2gps3k.test_dataloader()
        return super().test_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()  # the test split, in test_format
