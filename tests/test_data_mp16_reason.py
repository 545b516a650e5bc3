"""MP16Reason: shards -> list[GeoSample], rank/worker splitting, epochs, bad data."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import pytest
import webdataset as wds
from PIL import Image

from data_modules import BadDataError, GeoSample, MP16Reason, TooFewShardsError
from data_modules.shard_stream import ShardStream


def _jpeg(value: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (value, 255 - value, 0)).save(buf, "JPEG")
    return buf.getvalue()


def _meta(i: int, **override) -> bytes:
    meta = {"lat": 10.0 + i, "lon": -20.0 - i, "country": "France", "city": "Paris", "localizable": i % 2 == 0,
            "reasoning": f"r{i}", "entities": ["sign"], "teacher": "t"}
    meta.update(override)
    return json.dumps({k: v for k, v in meta.items() if v is not None}).encode()


def write_shards(tmp_path, n: int, per_shard: int, prefix: str = "train") -> str:
    """``n`` samples s000000.. in shards of ``per_shard``; returns a brace pattern."""
    with wds.ShardWriter(str(tmp_path / f"{prefix}-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
        for i in range(n):
            sink.write({"__key__": f"s{i:06d}", "jpg": _jpeg(i % 256), "json": _meta(i)})
    last = (n - 1) // per_shard
    return str(tmp_path / f"{prefix}-{{000000..{last:06d}}}.tar")


def _keys(loader) -> list[str]:
    return [s.key for batch in loader for s in batch]


def test_samples_round_trip_fields(tmp_path):
    spec = write_shards(tmp_path, 6, 3)
    dm = MP16Reason(test_shards=spec, batch_size=4)
    batches = list(dm.test_dataloader())
    assert [len(b) for b in batches] == [4, 2]  # one worker: 6 samples in batches of 4
    s = batches[0][1]
    assert isinstance(s, GeoSample) and s.key == "s000001"
    assert (s.lat, s.lon, s.country, s.city, s.localizable) == (11.0, -21.0, "France", "Paris", False)
    assert s.reasoning == "r1" and s.entities == ["sign"] and s.extra["teacher"] == "t"
    assert s.image.mode == "RGB" and s.image.size == (8, 8)
    assert dm.stats["test"].counts["ok"] == 6


def test_every_sample_once_across_two_ranks_and_two_workers(tmp_path):
    spec = write_shards(tmp_path, 40, 5)  # 8 shards for 2 ranks x 2 workers
    seen: list[str] = []
    for rank in range(2):
        dm = MP16Reason(train_shards=spec, batch_size=3, num_workers=2, shuffle_buffer=8, seed=1)
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)  # what a DDP Trainer reports
        keys = _keys(dm.train_dataloader())
        assert len(keys) == 20
        seen += keys
    assert sorted(seen) == [f"s{i:06d}" for i in range(40)]


def test_too_few_shards_is_a_readable_error(tmp_path):
    spec = write_shards(tmp_path, 9, 3)  # 3 shards
    dm = MP16Reason(train_shards=spec, num_workers=2)
    dm.trainer = SimpleNamespace(global_rank=0, world_size=2)
    with pytest.raises(TooFewShardsError, match=r"3 shard\(s\) for 2 rank\(s\) x 2 DataLoader worker\(s\) = 4 readers"):
        dm.train_dataloader()


def test_shuffle_is_deterministic_per_epoch(tmp_path):
    spec = write_shards(tmp_path, 30, 5)
    def order(epoch, seed=0):
        dm = MP16Reason(train_shards=spec, batch_size=4, shuffle_buffer=10, seed=seed)
        dm.set_epoch(epoch)
        return _keys(dm.train_dataloader())
    assert order(0) == order(0)
    assert order(0) != order(1)
    assert order(0, seed=0) != order(0, seed=5)
    assert sorted(order(1)) == sorted(order(0))
    # without set_epoch, each iteration advances the epoch: epoch 0 then epoch 1
    dm = MP16Reason(train_shards=spec, batch_size=4, shuffle_buffer=10)
    loader = dm.train_dataloader()
    assert [_keys(loader), _keys(loader)] == [order(0), order(1)]
    # Lightning calls loader.sampler.set_epoch before each epoch
    loader.sampler.set_epoch(1)
    assert _keys(loader) == order(1)


def test_epoch_length_gives_exact_samples_and_len(tmp_path):
    spec = write_shards(tmp_path, 8, 2)  # 4 shards, 8 samples
    dm = MP16Reason(train_shards=spec, batch_size=3, num_workers=2, epoch_length=19)
    loader = dm.train_dataloader()
    sizes = [len(b) for b in loader]
    # worker quotas 10 and 9 -> batches 3,3,3,1 and 3,3,3 (shards repeat to fill the quota)
    assert sum(sizes) == 19 and len(loader) == len(sizes) == 7


def _bad_shards(tmp_path):
    with wds.TarWriter(str(tmp_path / "a.tar")) as sink:
        sink.write({"__key__": "good0", "jpg": _jpeg(1), "json": _meta(0)})
        sink.write({"__key__": "corrupt", "jpg": _jpeg(2)[:60], "json": _meta(1)})
        sink.write({"__key__": "nolat", "jpg": _jpeg(3), "json": _meta(2, lat=None)})
        sink.write({"__key__": "nojson", "jpg": _jpeg(4)})
        sink.write({"__key__": "badjson", "jpg": _jpeg(5), "json": b"{not json"})
    with wds.TarWriter(str(tmp_path / "b.tar")) as sink:
        for i in range(6):
            sink.write({"__key__": f"b{i}", "jpg": _jpeg(i) + b"\0" * 3000, "json": _meta(i)})
    data = (tmp_path / "b.tar").read_bytes()
    (tmp_path / "b.tar").write_bytes(data[: len(data) // 2 + 100])  # cut inside b3's image
    return [str(tmp_path / "a.tar"), str(tmp_path / "b.tar")]


def test_bad_samples_are_skipped_counted_and_keyed(tmp_path):
    dm = MP16Reason(test_shards=_bad_shards(tmp_path), batch_size=4, max_bad_fraction=0.9)
    assert _keys(dm.test_dataloader()) == ["good0", "b0", "b1", "b2"]
    stats = dm.stats["test"]
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    assert stats.counts == {"ok": 4, "corrupt_image": 1, "missing_image": 0, "missing_json": 1, "bad_json": 1,
                            "missing_field": 1, "bad_value": 0, "bad_shard": 1}
    assert stats.bad_keys == [("corrupt_image", f"{a}:corrupt"), ("missing_field", f"{a}:nolat"),
                              ("missing_json", f"{a}:nojson"), ("bad_json", f"{a}:badjson"),
                              ("bad_shard", f"{b}:b3.jpg")]
    assert dm.data_stats()["data/test/bad_fraction"] == pytest.approx(5 / 9)


def test_bad_counts_reach_the_main_process_from_workers(tmp_path):
    paths = _bad_shards(tmp_path)
    dm = MP16Reason(test_shards=paths, batch_size=4, num_workers=2, max_bad_fraction=0.9)
    assert sorted(_keys(dm.test_dataloader())) == ["b0", "b1", "b2", "good0"]
    assert dm.stats["test"].counts["corrupt_image"] == 1 and dm.stats["test"].bad == 5


def test_mostly_broken_shards_stop_with_a_clear_error(tmp_path):
    with wds.TarWriter(str(tmp_path / "broken.tar")) as sink:
        for i in range(30):
            sink.write({"__key__": f"x{i}", "jpg": b"not an image", "json": _meta(i)})
        for i in range(2):
            sink.write({"__key__": f"ok{i}", "jpg": _jpeg(i), "json": _meta(i)})
    dm = MP16Reason(train_shards=str(tmp_path / "broken.tar"), shuffle_buffer=0, max_bad_fraction=0.5,
                     min_samples_before_check=20)
    with pytest.raises(BadDataError, match=r"train: 20 of 20 samples are unusable \(corrupt_image=20\)"):
        list(dm.train_dataloader())


def test_all_bad_small_set_fails_at_end_of_pass(tmp_path):
    with wds.TarWriter(str(tmp_path / "broken.tar")) as sink:
        sink.write({"__key__": "x", "jpg": b"junk", "json": _meta(0)})
    dm = MP16Reason(val_shards=str(tmp_path / "broken.tar"))  # 1 sample: below min_samples_before_check
    with pytest.raises(BadDataError, match="1 of 1 samples are unusable"):
        list(dm.val_dataloader())


def test_stream_len_undefined_without_epoch_length(tmp_path):
    spec = write_shards(tmp_path, 4, 2)
    stream = MP16Reason(train_shards=spec).stream("train")
    assert isinstance(stream, ShardStream)
    with pytest.raises(TypeError):
        len(stream)


def test_lightning_fit_sees_list_of_geosamples_and_new_order_each_epoch(tmp_path):
    import lightning.pytorch as pl
    import torch

    spec = write_shards(tmp_path, 12, 3)

    class Probe(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.keys: dict[int, list[str]] = {}

        def training_step(self, batch, batch_idx):
            assert all(isinstance(s, GeoSample) for s in batch)
            self.keys.setdefault(self.current_epoch, []).extend(s.key for s in batch)
            return (self.w * 0).sum() + self.w.sum() * 0

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    model = Probe()
    dm = MP16Reason(train_shards=spec, batch_size=4, shuffle_buffer=6)  # one pass per epoch
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    assert sorted(model.keys[0]) == sorted(model.keys[1]) == [f"s{i:06d}" for i in range(12)]
    assert model.keys[0] != model.keys[1]
