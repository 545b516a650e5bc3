"""Exact mid-epoch resume of the shard stream through a real Lightning fit (no model: a module
that records the keys it trains on).

A run restored from its step-k checkpoint must train on exactly the batches the uninterrupted
run trained on from step k on, in the same order: no sample twice, none skipped, also across
an epoch boundary, with several DataLoader workers, with and without ``epoch_length``.
"""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from data_modules.geosynth import GeoSynth


class KeyRecorder(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.keys: list[list[str]] = []

    def training_step(self, batch, batch_idx):
        self.keys.append([s.key for s in batch])
        return (self.weight - 1.0).pow(2).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(root, tmp_path, max_steps: int, ckpt_path=None, **data_kwargs) -> tuple[KeyRecorder, GeoSynth]:
    data = GeoSynth(root=str(root), train_size=48, val_size=8, test_size=8, batch_size=5, **data_kwargs)
    module = KeyRecorder()
    trainer = Trainer(
        accelerator="cpu", max_steps=max_steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, default_root_dir=tmp_path,
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="step={step}", auto_insert_metric_name=False,
                                   every_n_train_steps=1, save_top_k=-1)],
    )
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return module, data


@pytest.mark.parametrize(
    "num_workers, epoch_length, stop_at",
    [
        (0, None, 4),  # one pass of 10 batches per epoch: stop mid epoch 0
        (2, None, 7),  # two workers (5 and 5 batches of 24 samples), mid epoch 0, odd step
        (2, 30, 9),  # epoch_length 30 -> 3 + 3 batches per epoch: stop in epoch 1
        (2, 30, 6),  # the last batch of a sized epoch: resume starts epoch 1
        (3, None, 10),  # three workers (5 + 3 + 3 batches): one batch before the epoch's end
        (2, None, 10),  # an unsized epoch's last batch: resume starts epoch 1 (from the position's
                        # ``complete``; its counts alone cannot tell)
    ],
)
def test_resume_trains_exactly_the_uninterrupted_batches(tmp_path, geosynth_root, num_workers, epoch_length, stop_at):
    total = 14
    full, _ = _fit(geosynth_root, tmp_path / "full", total, num_workers=num_workers, epoch_length=epoch_length)
    _fit(geosynth_root, tmp_path / "cut", stop_at, num_workers=num_workers, epoch_length=epoch_length)
    resumed, _ = _fit(geosynth_root, tmp_path / "cut", total, ckpt_path=tmp_path / "cut" / "ckpt" / f"step={stop_at}.ckpt",
                      num_workers=num_workers, epoch_length=epoch_length)
    assert len(full.keys) == total
    assert resumed.keys == full.keys[stop_at:]


def test_without_the_position_a_resume_replays_the_epoch(tmp_path, geosynth_root):
    """The failure the position prevents: dropping it from the checkpoint replays the first batches."""
    full, _ = _fit(geosynth_root, tmp_path / "full", 8)
    _fit(geosynth_root, tmp_path / "cut", 4)
    ckpt = tmp_path / "cut" / "ckpt" / "step=4.ckpt"
    state = torch.load(ckpt, weights_only=False)
    state["GeoSynth"] = {"positions": [], "order_seed": 0}
    torch.save(state, ckpt)
    resumed, _ = _fit(geosynth_root, tmp_path / "cut", 8, ckpt_path=ckpt)
    assert resumed.keys == full.keys[:4]  # steps 4-7 trained on the batches of steps 0-3


def test_data_order_follows_seed_everything(tmp_path, geosynth_root, monkeypatch):
    """``--seed_everything N`` reorders the training stream; the same seed replays it."""
    from lightning.pytorch import seed_everything

    monkeypatch.setenv("PL_GLOBAL_SEED", "0")  # restored after the test
    orders = {}
    for seed in (0, 1, 0):
        seed_everything(seed)
        module, _ = _fit(geosynth_root, tmp_path / f"s{seed}-{len(orders)}", 4)
        orders.setdefault(seed, []).append(module.keys)
    assert orders[0][0] == orders[0][1]
    assert orders[0][0] != orders[1][0]


def test_resume_refuses_another_worker_count(tmp_path, geosynth_root):
    _fit(geosynth_root, tmp_path / "cut", 3, num_workers=2)
    with pytest.raises(Exception, match="same num_workers"):
        _fit(geosynth_root, tmp_path / "cut", 6, ckpt_path=tmp_path / "cut" / "ckpt" / "step=3.ckpt", num_workers=1)
