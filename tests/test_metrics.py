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


# ------------------------------------------------------------------ metric_inputs (evaluation)
def _prediction(country_ok: float, city_ok: float, pred=(48.8566, 2.3522), true=(48.8566, 2.3522)):
    from globe.evaluation import Prediction

    return Prediction(
        IMG_ID="x", pred_country="", pred_city="", pred_lat=pred[0], pred_lon=pred[1], pred_level="city",
        LAT=true[0], LON=true[1], country="", city="", country_ok=country_ok, city_ok=city_ok, pred_text="",
    )


def test_metric_inputs_excludes_only_the_samples_without_a_name_check():
    from globe.evaluation import metric_inputs

    preds = [
        _prediction(1.0, 1.0),  # right country and city, 0 km
        _prediction(NAN, NAN, pred=(NAN, NAN)),  # truth's country unresolved: no name check, still a distance miss
        _prediction(1.0, 0.0, pred=(34.6937, 135.5022), true=(35.6762, 139.6503)),  # Osaka for Tokyo
        _prediction(0.0, NAN),  # wrong country; the truth has no city name
    ]
    inputs = metric_inputs(preds)
    assert inputs["country_ok"].tolist() == [True, True, False]  # the NaN sample alone is left out
    assert inputs["city_ok"].tolist() == [True, False]
    m = GeoAccuracy()
    m.update(**inputs)
    r = m.compute()
    assert r["country_acc"].item() == pytest.approx(2 / 3)  # (1 + 1 + 0) / 3
    assert r["city_acc"].item() == pytest.approx(1 / 2)  # (1 + 0) / 2
    assert r["n"].item() == 4 and r["n_unresolved"].item() == 1  # distances keep every sample
    assert r["acc@1km"].item() == pytest.approx(2 / 4)
    # no sample with a name check: the keys stay NaN (never given), as for IM2GPS3K
    none = metric_inputs([_prediction(NAN, NAN), _prediction(NAN, NAN)])
    assert none["country_ok"] is None and none["city_ok"] is None


def test_metric_inputs_after_evaluate_completions_with_an_unknown_true_country():
    from PIL import Image

    from data_modules.sample import GeoSample
    from globe.evaluation import evaluate_completions, metric_inputs
    from globe.geo.gazetteer import Gazetteer

    image = Image.new("RGB", (8, 8))
    samples = [
        GeoSample(key="p", image=image, lat=48.8566, lon=2.3522, country="France", city="Paris"),
        GeoSample(key="a", image=image, lat=10.0, lon=-30.0, country="Atlantis", city="Poseidonia"),
        GeoSample(key="t", image=image, lat=35.6762, lon=139.6503, country="Japan", city="Tokyo"),
    ]
    texts = [
        "<answer>country: France\ncity: Paris</answer>",
        "<answer>country: Portugal\ncity: Lisbon</answer>",
        "<answer>country: Japan\ncity: Osaka</answer>",
    ]
    preds = evaluate_completions(Gazetteer.load(), samples, texts)
    assert math.isnan(preds[1].country_ok) and math.isnan(preds[1].city_ok)
    m = GeoAccuracy()
    m.update(**metric_inputs(preds))
    r = m.compute()
    # before: one unresolvable true country dropped the whole batch from both accuracies (NaN)
    assert r["country_acc"].item() == 1.0  # France, Japan
    assert r["city_acc"].item() == 0.5  # Paris right, Osaka for Tokyo
    assert r["n"].item() == 3


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


@pytest.mark.parametrize("thresholds", [(float("inf"),), (0,), (-25,), (float("nan"),), ()])
def test_non_positive_or_infinite_thresholds_are_rejected(thresholds):
    # with inf, unresolved predictions (distance +inf) would count as hits at that threshold
    with pytest.raises(ValueError, match="positive finite"):
        GeoAccuracy(thresholds)
