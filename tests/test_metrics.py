"""GeoAccuracy: hand-worked values, NaN handling, and sync across two processes."""

import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from globe.metrics import GeoAccuracy, median_with_inf, threshold_key

NAN = float("nan")


def _four_points():
    # pred vs truth: identical (0 km); 1 deg of longitude on the equator (111.195 km);
    # unresolved (NaN); London vs Paris (343.56 km on the sphere)
    pred_lat = torch.tensor([48.8566, 0.0, NAN, 51.5074])
    pred_lon = torch.tensor([2.3522, 0.0, NAN, -0.1278])
    true_lat = torch.tensor([48.8566, 0.0, 10.0, 48.8566])
    true_lon = torch.tensor([2.3522, 1.0, 10.0, 2.3522])
    return pred_lat, pred_lon, true_lat, true_lon


def test_four_hand_made_points():
    m = GeoAccuracy()
    m.update(*_four_points(), country_ok=torch.tensor([True, False, False, True]))
    r = m.compute()
    assert r["acc@1km"].item() == 0.25  # only the exact hit
    assert r["acc@25km"].item() == 0.25
    assert r["acc@200km"].item() == 0.5  # + the 111 km one
    assert r["acc@750km"].item() == 0.75  # + Paris-London
    assert r["acc@2500km"].item() == 0.75  # the NaN is a miss everywhere
    # sorted: 0, 111.195, 343.56, inf -> median = (111.195 + 343.56) / 2
    assert r["median_km"].item() == pytest.approx((111.195 + 343.56) / 2, abs=0.01)
    assert r["n"].item() == 4 and r["n_unresolved"].item() == 1
    assert r["country_acc"].item() == 0.5
    assert math.isnan(r["city_acc"].item())  # never given


def test_batches_accumulate_and_reset():
    m = GeoAccuracy(thresholds_km=(0.5, 150))
    pl, po, tl, to = _four_points()
    m.update(pl[:2], po[:2], tl[:2], to[:2], city_ok=torch.tensor([1, 0]))
    m.update(pl[2:], po[2:], tl[2:], to[2:], city_ok=torch.tensor([0, 1]))
    r = m.compute()
    assert set(r) >= {"acc@0.5km", "acc@150km", "median_km", "n", "n_unresolved"}
    assert r["acc@0.5km"].item() == 0.25 and r["acc@150km"].item() == 0.5
    assert r["city_acc"].item() == 0.5
    m.reset()
    m.update(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0]))
    assert m.compute()["n"].item() == 1


def test_all_unresolved_median_is_inf():
    m = GeoAccuracy()
    m.update(torch.tensor([NAN, NAN]), torch.tensor([NAN, 1.0]), torch.tensor([0.0, 0.0]), torch.tensor([0.0, 0.0]))
    r = m.compute()
    assert r["median_km"].item() == math.inf and r["acc@2500km"].item() == 0.0
    assert r["n_unresolved"].item() == 2


def test_threshold_key_and_median():
    assert threshold_key(25) == "acc@25km" and threshold_key(0.5) == "acc@0.5km"
    assert median_with_inf(torch.tensor([5.0, 1.0, 3.0])).item() == 3.0
    assert median_with_inf(torch.tensor([1.0, math.inf])).item() == math.inf


# ------------------------------------------------------------------ distributed
def _shard(rank: int):
    g = torch.Generator().manual_seed(7)
    n = 13
    pl = torch.rand(n, generator=g) * 120 - 60
    po = torch.rand(n, generator=g) * 360 - 180
    tl = (pl + torch.randn(n, generator=g) * 3).clamp(-90, 90)
    to = po + torch.randn(n, generator=g) * 3
    pl[[2, 9]] = NAN
    ok = torch.rand(n, generator=g) > 0.5
    cut = 8  # uneven shards: 8 and 5 samples
    sl = slice(0, cut) if rank == 0 else slice(cut, n)
    if rank < 0:
        sl = slice(0, n)
    return pl[sl], po[sl], tl[sl], to[sl], ok[sl]


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    m = GeoAccuracy()
    pl, po, tl, to, ok = _shard(rank)
    m.update(pl, po, tl, to, country_ok=ok)
    r = m.compute()  # syncs across ranks
    torch.save({k: v.cpu() for k, v in r.items()}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.distributed
@pytest.mark.slow  # two spawned interpreters importing torch: ~10 s on 2 busy cores
def test_distributed_sync_equals_single_process(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    single = GeoAccuracy()
    pl, po, tl, to, ok = _shard(-1)
    single.update(pl, po, tl, to, country_ok=ok)
    expected = single.compute()
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert set(got) == set(expected)
        for k, v in expected.items():
            assert torch.allclose(got[k].double(), v.double(), equal_nan=True), (rank, k, got[k], v)
    assert expected["n"].item() == 13 and expected["n_unresolved"].item() == 2
