"""Batches drawn inside ``training_step`` (``globe.train_batches.FitLoopBatches``, what dynamic
sampling refills with) through a real Lightning fit, no model: a module that records the keys of
every batch a step consumes.

An epoch's batches are consumed in the loader's order, each once, whatever the steps draw (the
same batches as a run that draws nothing), the epoch ends after the step that drew its last batch, and a run restored from its step-k checkpoint consumes exactly the
uninterrupted run's batches from step k on (also when step k drew the epoch's last batch).
"""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from data_modules.geosynth import GeoSynth
from globe.train_batches import FitLoopBatches

EXTRA = (1, 0, 2, 0, 1, 3)  # batches drawn by step i: EXTRA[i % len(EXTRA)]


class DrawingRecorder(LightningModule):
    def __init__(self, extra: tuple[int, ...] = EXTRA) -> None:
        super().__init__()
        self.extra = extra
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.steps: list[tuple[int, list[list[str]]]] = []  # (epoch, keys of each consumed batch)

    def training_step(self, batch, batch_idx):
        batches = FitLoopBatches(self.trainer)
        consumed = [[s.key for s in batch]]
        for _ in range(self.extra[self.global_step % len(self.extra)]):
            more = batches.draw()
            if more is None:
                break
            consumed.append([s.key for s in more])
        self.steps.append((self.current_epoch, consumed))
        return (self.weight - 1.0).pow(2).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(root, tmp_path, max_steps: int, ckpt_path=None, extra: tuple[int, ...] = EXTRA, **data_kwargs) -> DrawingRecorder:
    data = GeoSynth(root=str(root), train_size=48, val_size=8, test_size=8, batch_size=4, **data_kwargs)
    module = DrawingRecorder(extra)
    trainer = Trainer(
        accelerator="cpu", max_steps=max_steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, default_root_dir=tmp_path,
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="step={step}", auto_insert_metric_name=False,
                                   every_n_train_steps=1, save_top_k=-1)],
    )
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return module


def _epochs(steps) -> dict[int, list[str]]:
    keys: dict[int, list[str]] = {}
    for epoch, batches in steps:
        keys.setdefault(epoch, []).extend(k for b in batches for k in b)
    return keys


@pytest.mark.parametrize("num_workers, epoch_length", [(0, None), (2, None), (2, 24)])
def test_draws_consume_the_loaders_batches_in_order(tmp_path, geosynth_root, num_workers, epoch_length):
    kwargs = {"num_workers": num_workers, "epoch_length": epoch_length}
    drawing = _epochs(_fit(geosynth_root, tmp_path / "drawing", 14, **kwargs).steps)
    plain = _epochs(_fit(geosynth_root, tmp_path / "plain", 30, extra=(0,), **kwargs).steps)
    per_epoch = 48 if epoch_length is None else epoch_length
    assert len(drawing) >= 3  # draws end epochs early: 14 steps cover more than two epochs
    for epoch, keys in list(drawing.items())[:-1]:  # the last epoch is cut by max_steps
        assert len(keys) == per_epoch and keys == plain[epoch], epoch
    if epoch_length is None:  # one pass per epoch: every sample once
        assert all(len(set(keys)) == 48 for keys in list(drawing.values())[:-1])


@pytest.mark.parametrize(
    "num_workers, epoch_length, stop_at",
    [
        (0, None, 3),  # mid epoch 0 (steps 0-2 drew 6 of its 12 batches)
        (2, None, 4),  # two workers, mid epoch 0
        (2, None, 6),  # step 5 drew epoch 0's last batch: the resume starts epoch 1
        (2, 24, 3),  # sized epochs of 6 batches: step 2 drew epoch 0's last one
        (2, 24, 5),  # mid epoch 1: steps 3-4 drew 3 batches, the resumed fetcher must know it
    ],
)
def test_resume_consumes_exactly_the_uninterrupted_batches(tmp_path, geosynth_root, num_workers, epoch_length, stop_at):
    total = 10
    kwargs = {"num_workers": num_workers, "epoch_length": epoch_length}
    full = _fit(geosynth_root, tmp_path / "full", total, **kwargs)
    _fit(geosynth_root, tmp_path / "cut", stop_at, **kwargs)
    resumed = _fit(geosynth_root, tmp_path / "cut", total, ckpt_path=tmp_path / "cut" / "ckpt" / f"step={stop_at}.ckpt", **kwargs)
    assert len(full.steps) == total
    assert resumed.steps == full.steps[stop_at:]
