"""GPS gallery: top-k from both backends equals brute force; CSV reading; the training-location gallery."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from globe.retrieval.gallery import GPSGallery, MatmulIndex
from globe.retrieval.gallery_csv import read_gallery_csv, unique_coordinates
from globe.retrieval.location_encoder import LocationEncoder
from globe.retrieval.seen_locations import SeenLocations, coordinate_keys, keys_to_coordinates


def _random_gallery(n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    coords = torch.stack([torch.rand(n, generator=g) * 180 - 90, torch.rand(n, generator=g) * 360 - 180], dim=1)
    return coords, torch.randn(n, d, generator=g)


@pytest.mark.parametrize("backend", ["matmul", "faiss"])
def test_top_k_equals_brute_force(backend):
    coords, emb = _random_gallery(500, 16)
    queries = torch.randn(7, 16, generator=torch.Generator().manual_seed(1))
    gallery = GPSGallery(coords, emb, backend=backend)
    hits = gallery.search(queries, k=5)

    cos = F.normalize(queries, dim=1) @ F.normalize(emb, dim=1).T  # [7, 500]
    order = torch.argsort(cos, dim=1, descending=True)[:, :5]  # random floats: no ties
    assert torch.equal(hits.indices, order)
    torch.testing.assert_close(hits.scores, torch.gather(cos, 1, order), atol=1e-5, rtol=0)
    assert torch.equal(hits.coordinates, coords[order]) and hits.coordinates.shape == (7, 5, 2)


def test_matmul_chunks_give_the_same_answer():
    _, emb = _random_gallery(300, 8)
    emb = F.normalize(emb, dim=1)
    queries = F.normalize(torch.randn(50, 8), dim=1)
    whole = MatmulIndex(emb).search(queries, 3)
    chunked = MatmulIndex(emb, chunk_bytes=4 * 300 * 7).search(queries, 3)  # 7 queries per block
    assert torch.equal(whole[1], chunked[1])
    torch.testing.assert_close(whole[0], chunked[0])  # blocked products may round differently


def test_encode_and_search_finds_the_encoded_location_itself():
    enc = LocationEncoder(num_frequencies=16, hidden=32, depth=1, embed_dim=16)
    coords = torch.tensor([[48.85, 2.35], [35.68, 139.69], [-33.87, 151.21], [40.71, -74.0]])
    gallery = GPSGallery.encode(coords, enc, batch_size=3)
    hits = gallery.search(enc(coords), k=1)
    assert hits.indices[:, 0].tolist() == [0, 1, 2, 3]
    assert hits.scores[:, 0].tolist() == pytest.approx([1.0] * 4, abs=1e-5)


def test_bad_arguments_are_clear_errors():
    coords, emb = _random_gallery(4, 3)
    with pytest.raises(ValueError, match="k must be"):
        GPSGallery(coords, emb).search(torch.randn(1, 3), k=5)
    with pytest.raises(ValueError, match="backend"):
        GPSGallery(coords, emb, backend="annoy")
    with pytest.raises(ValueError, match="empty"):
        GPSGallery(coords[:0], emb[:0])


def test_read_gallery_csv(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("id,Latitude,LON\na,48.85,2.35\nb,-33.87,151.21\n")
    torch.testing.assert_close(read_gallery_csv(path), torch.tensor([[48.85, 2.35], [-33.87, 151.21]]))
    path.write_text("LAT,LON\n48.85,2.35\n91.0,0\n")
    with pytest.raises(ValueError, match=r"g.csv:3: coordinate out of range"):
        read_gallery_csv(path)
    path.write_text("x,y\n1,2\n")
    with pytest.raises(ValueError, match="no lat/latitude column"):
        read_gallery_csv(path)


def test_unique_coordinates_rounds_to_a_metre():
    c = torch.tensor([[1.0, 2.0], [1.000001, 2.0], [1.0001, 2.0]])
    assert unique_coordinates(c).shape == (2, 2)


def test_seen_locations_keeps_first_seen_order_and_capacity():
    keys = coordinate_keys(torch.tensor([[12.34567, -98.76543], [-90.0, 180.0]]))
    assert keys_to_coordinates(keys).tolist() == [[12.34567, -98.76543], [-90.0, 180.0]]
    seen = SeenLocations(capacity=3)
    seen.add(torch.tensor([[1.0, 1.0], [2.0, 2.0], [1.0, 1.0]]))
    seen.add(torch.tensor([[2.0, 2.0], [3.0, 3.0], [4.0, 4.0]]))  # 4th place: over capacity, not kept
    assert seen.coordinates().tolist() == [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]


def test_predict_returns_top_k_from_the_gallery_of_seen_locations():
    from PIL import Image

    from globe.retrieval.module import GeoRetrieval
    from globe.sample import GeoSample

    model = GeoRetrieval(vision_config={"image_size": 32, "patch_size": 16}, image_mlp_hidden=16, embed_dim=8,
                         num_frequencies=4, location_hidden=8, location_depth=1, queue_size=4, top_k=3)
    batch = [GeoSample(key=f"k{i}", image=Image.new("RGB", (40, 32), (60 * i, 0, 0)), lat=10.0 * i, lon=-5.0 * i,
                       country="", city="") for i in range(4)]
    model.training_step(batch, 0)
    model.on_predict_epoch_start()
    rows = model.predict_step(batch[:2], 0)
    seen = {tuple(c) for c in model.seen.coordinates().tolist()}
    assert [r.IMG_ID for r in rows] == ["k0", "k1"] and len(seen) == 4
    for r, s in zip(rows, batch):
        assert len(r.top_k) == 3 and r.scores == sorted(r.scores, reverse=True)
        assert all(tuple(c) in seen for c in r.top_k) and [r.pred_lat, r.pred_lon] == r.top_k[0]
        # a coordinates-only predictions row: no names, so nothing to judge
        assert r.pred_level == "coordinates" and (r.LAT, r.LON) == (s.lat, s.lon) and r.pred_text == ""
        assert math.isnan(r.country_ok) and math.isnan(r.city_ok)
