"""The GPS queue: FIFO order, wrap-around, jitter, and its round trip through a checkpoint."""

from __future__ import annotations

import torch
from PIL import Image

from globe.sample import GeoSample
from globe.retrieval.module import GeoRetrieval
from globe.retrieval.queue import KM_PER_DEGREE, GPSQueue, jitter_coordinates
from globe.geo.distance import great_circle_km


def _rows(*values: float) -> torch.Tensor:
    return torch.tensor([[v, -v] for v in values])


def test_fifo_fills_then_overwrites_the_oldest():
    q = GPSQueue(size=4)
    assert q.negatives().shape == (0, 2)  # starts empty: no made-up negatives
    q.push(_rows(1, 2, 3))
    assert q.negatives()[:, 0].tolist() == [1, 2, 3] and int(q.pointer) == 3
    q.push(_rows(4, 5))  # row 3 <- 4, wrap: row 0 <- 5
    assert q.coordinates[:, 0].tolist() == [5, 2, 3, 4] and int(q.pointer) == 1 and int(q.filled) == 4
    q.push(_rows(6, 7, 8, 9, 10))  # a batch at least as large as the queue keeps its last 4 rows
    assert q.coordinates[:, 0].tolist() == [7, 8, 9, 10] and int(q.pointer) == 0
    assert int(q.pushes) == 3


def test_size_zero_disables_the_queue():
    q = GPSQueue(size=0)
    q.push(_rows(1, 2))
    assert q.negatives().shape == (0, 2)


def test_jitter_is_seeded_by_the_push_count_and_has_the_asked_scale():
    a, b = GPSQueue(size=8, jitter_km=10.0, seed=1), GPSQueue(size=8, jitter_km=10.0, seed=1)
    for q in (a, b):
        q.push(_rows(10, 20))
        q.push(_rows(30, 40))
    assert torch.equal(a.coordinates, b.coordinates)
    assert not torch.equal(a.negatives(), torch.cat([_rows(10, 20), _rows(30, 40)]))
    far_north = torch.tensor([[60.0, 10.0]]).repeat(20000, 1)
    moved = jitter_coordinates(far_north, 10.0, torch.Generator().manual_seed(0))
    # 10 km in each direction at 60°N: 10/111.2 degrees of latitude, twice as many of longitude
    assert abs(moved[:, 0].std().item() - 10 / KM_PER_DEGREE) < 0.003
    assert abs(moved[:, 1].std().item() - 20 / KM_PER_DEGREE) < 0.006
    d = great_circle_km(far_north[:, 0], far_north[:, 1], moved[:, 0], moved[:, 1])
    assert 11.0 < d.mean().item() < 14.0  # Rayleigh mean: 10 km · sqrt(π/2) = 12.5 km


def test_jitter_keeps_coordinates_valid():
    edge = torch.tensor([[89.99, 179.99], [-89.99, -179.99]]).repeat(100, 1)
    moved = jitter_coordinates(edge, 50.0, torch.Generator().manual_seed(0))
    assert (moved[:, 0].abs() <= 90).all() and (moved[:, 1] >= -180).all() and (moved[:, 1] < 180).all()


def _tiny(**kw) -> GeoRetrieval:
    return GeoRetrieval(vision_config={"image_size": 32, "patch_size": 16}, image_mlp_hidden=16, embed_dim=8,
                        num_frequencies=4, location_hidden=8, location_depth=1, queue_size=5, **kw)


def _batch(lat0: float) -> list[GeoSample]:
    return [GeoSample(key=str(i), image=Image.new("RGB", (32, 32), (10 * i, 0, 0)), lat=lat0 + i, lon=2.0 * i,
                      country="", city="") for i in range(3)]


def test_queue_round_trip_through_a_checkpoint(tmp_path):
    model = _tiny(queue_jitter_km=5.0)
    model.training_step(_batch(0.0), 0)
    model.training_step(_batch(10.0), 1)  # 6 rows into 5: wrapped
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": model.state_dict()}, path)

    restored = _tiny(queue_jitter_km=5.0)
    restored.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    for name in ("coordinates", "pointer", "filled", "pushes"):
        assert torch.equal(getattr(restored.queue, name), getattr(model.queue, name)), name
    assert int(restored.queue.filled) == 5 and int(restored.queue.pointer) == 1
    # the next step draws the same negatives and pushes the same jittered rows
    model.training_step(_batch(20.0), 2)
    restored.training_step(_batch(20.0), 2)
    assert torch.equal(restored.queue.coordinates, model.queue.coordinates)
    assert torch.equal(restored.seen.keys, model.seen.keys) and len(restored.seen) == 9
