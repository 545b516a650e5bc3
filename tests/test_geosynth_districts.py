"""GeoSynth's districts layout: deterministic, districts distinct and a few km apart, their cues
different and drawn, samples at their district so 1 km and 25 km accuracy differ; the default
``cities`` layout unchanged."""

from __future__ import annotations

import hashlib
import itertools
import json
import tarfile

import numpy as np
import pytest
import torch

from data_modules.geosynth import CITIES, GeoSynth, generate_record, mentioned_entities, write_geosynth
from data_modules.geosynth.district_drawing import DISTRICT_DRAWERS
from data_modules.geosynth.districts import (
    AWNING_COLORS, DISTRICT_LANDMARKS, JITTER_KM, MAX_OFFSET_KM, MIN_OFFSET_KM, districts_of,
)
from data_modules.geosynth.drawing import render
from data_modules.geosynth.scene import Element, Scene
from globe.answer import parse_answer
from globe.geo.distance import great_circle_km


def km(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(great_circle_km(torch.tensor(a[0]), torch.tensor(a[1]), torch.tensor(b[0]), torch.tensor(b[1])))


def _digest(root, split):
    h = hashlib.sha256()
    for tar_path in sorted((root / split).glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for m in tar.getmembers():
                h.update(m.name.encode())
                h.update(tar.extractfile(m).read())
    return h.hexdigest()


@pytest.fixture(scope="module")
def records():
    return [generate_record(0, "train", i, layout="districts", answer_coordinates=True) for i in range(300)]


# ---------------------------------------------------------------------- the districts
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_every_city_has_two_to_four_distinct_districts_a_few_km_apart(seed):
    counts = set()
    for city in CITIES:
        ds = districts_of(city, seed)
        counts.add(len(ds))
        assert 2 <= len(ds) <= 4
        for d in ds:
            # offsets on the haversine's sphere: the drawn distance comes back (rounding: 5 decimals, ~1 m)
            assert MIN_OFFSET_KM - 0.01 <= km((d.lat, d.lon), (city.lat, city.lon)) <= MAX_OFFSET_KM + 0.01
            assert km((d.lat, d.lon), (city.lat, city.lon)) == pytest.approx(d.offset_km, abs=0.01)
        for a, b in itertools.combinations(ds, 2):  # >= 2 x 2 km x sin(35 deg) = 2.29 km, <= 12 km
            assert 2.25 < km((a.lat, a.lon), (b.lat, b.lon)) <= 2 * MAX_OFFSET_KM + 0.02
        assert len({d.name for d in ds}) == len(ds)  # compass names, distinct
    assert counts == {2, 3, 4}


def test_districts_are_chosen_by_the_seed():
    city = CITIES[0]
    assert districts_of(city, 0) == districts_of(city, 0)
    others = [districts_of(city, s) for s in range(1, 6)]
    assert all([(d.lat, d.lon) for d in o] != [(d.lat, d.lon) for d in districts_of(city, 0)] for o in others)


def test_cues_differ_between_the_districts_of_a_city():
    for city in CITIES:
        ds = districts_of(city, 0)
        assert len({d.landmark for d in ds}) == len(ds) and len({d.awning for d in ds}) == len(ds)
        assert {d.landmark for d in ds} <= set(DISTRICT_LANDMARKS) and {d.awning for d in ds} <= set(AWNING_COLORS)


def test_each_district_cue_draws_its_own_pixels():
    """Every landmark changes the picture, and no two landmarks (or two awning colours) look alike."""
    city = CITIES[0]
    base = Scene(city, True, "street", horizon=0.5, ground="grass", ground_rgb=(90, 150, 70))
    blank = np.asarray(render(base, 128, _rng()), dtype=np.int16)
    drawn = {}
    for name in DISTRICT_LANDMARKS:
        scene = Scene(city, True, "street", horizon=0.5, ground="grass", ground_rgb=(90, 150, 70),
                      elements=[Element(name, 0.5, 0.6, 1.0, role="district")])
        drawn[name] = np.asarray(render(scene, 128, _rng()), dtype=np.int16)
        assert (np.abs(drawn[name] - blank).sum(axis=2) > 30).sum() > 60, name  # a visible shape
    for a, b in itertools.combinations(DISTRICT_LANDMARKS, 2):
        assert (np.abs(drawn[a] - drawn[b]).sum(axis=2) > 30).sum() > 60, (a, b)
    awnings = []
    for color in AWNING_COLORS.values():
        scene = Scene(city, True, "street", horizon=0.5, ground="grass", ground_rgb=(90, 150, 70),
                      elements=[Element("awning", 0.5, 0.8, 1.0, color, role="district")])
        awnings.append(np.asarray(render(scene, 128, _rng()), dtype=np.int16))
    for a, b in itertools.combinations(awnings, 2):
        assert (np.abs(a - b).sum(axis=2) > 60).sum() > 30
    assert set(DISTRICT_DRAWERS) == {*DISTRICT_LANDMARKS, "awning"}


def _rng():
    import random

    return random.Random("district-cue")


# ---------------------------------------------------------------------- the samples
def test_samples_lie_at_their_district_so_1km_and_25km_differ(records):
    to_district, to_centre = [], []
    for r in records:
        m = r.meta
        city = next(c for c in CITIES if c.name == m["city"])
        district = next(d for d in districts_of(city, 0) if d.name == m["district"])
        assert (m["district_lat"], m["district_lon"]) == (district.lat, district.lon) and m["layout"] == "districts"
        to_district.append(km((m["lat"], m["lon"]), (district.lat, district.lon)))
        to_centre.append(km((m["lat"], m["lon"]), (city.lat, city.lon)))
        # the nearest district point is the sample's own
        nearest = min(districts_of(city, 0), key=lambda d: km((m["lat"], m["lon"]), (d.lat, d.lon)))
        assert nearest.name == m["district"]
    assert max(to_district) <= JITTER_KM + 0.001 and np.mean(to_district) > 0.05  # jittered, inside the disc
    assert min(to_centre) >= MIN_OFFSET_KM - JITTER_KM - 0.01 and max(to_centre) <= MAX_OFFSET_KM + JITTER_KM + 0.01
    # every district is used
    used = {(r.meta["city"], r.meta["district"]) for r in records}
    assert len(used) > 60  # of the 90 districts of seed 0, with 300 samples


def test_city_answers_score_25km_not_1km_and_district_answers_both(tmp_path):
    from globe.score import score_predictions

    write_geosynth(tmp_path / "d", train=0, val=0, test=60, seed=0, layout="districts", min_shards=1)
    rows = [r for r in _csv(tmp_path / "d/im2gps3k/im2gps3k.csv")]
    metas = {f"test-{i:06d}.jpg": generate_record(0, "test", i, layout="districts").meta for i in range(60)}
    city_of = {c.name: c for c in CITIES}
    at_city = [{"IMG_ID": k, "pred_lat": str(city_of[m["city"]].lat), "pred_lon": str(city_of[m["city"]].lon)}
               for k, m in metas.items()]
    at_district = [{"IMG_ID": k, "pred_lat": str(m["district_lat"]), "pred_lon": str(m["district_lon"])} for k, m in metas.items()]
    by_city = score_predictions(at_city, rows)
    by_district = score_predictions(at_district, rows)
    assert (by_city["acc@1km"], by_city["acc@25km"]) == (0.0, 1.0)
    assert (by_district["acc@1km"], by_district["acc@25km"]) == (1.0, 1.0)


def _csv(path):
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_reasoning_names_the_district_cue_and_ends_with_its_coordinates(records):
    named = 0
    for r in records:
        m = r.meta
        parsed = parse_answer(m["reasoning"])
        assert parsed.well_formed and (parsed.country, parsed.city) == (m["country"], m["city"])
        assert parsed.coordinates == (round(m["district_lat"], 4), round(m["district_lon"], 4))
        assert mentioned_entities(m["reasoning"]) <= set(m["entities"])
        if not m["localizable"]:
            continue
        city = next(c for c in CITIES if c.name == m["city"])
        district = next(d for d in districts_of(city, 0) if d.name == m["district"])
        think = m["reasoning"].split("</think>")[0]
        cues = [e for e in m["entities"] if e in (*DISTRICT_LANDMARKS, "awning")]
        assert set(cues) <= {district.landmark, "awning"}  # only its own district's cues are drawn
        if district.landmark in cues:
            assert f"{district.landmark}" in think and f"marks the {district.name} district of {city.name}" in think
        if "awning" in cues:
            assert f"{district.awning} awnings mark the {district.name} district" in think
        if cues:
            named += 1
            assert f"place the image in the {district.name} district of {city.name}" in think
        else:
            assert "Nothing marks the district" in think
    assert named > 150  # most street scenes show a district cue (P(neither) = 0.2 x 0.4)


def test_reasoning_is_fully_grounded_for_r_vis(records):
    from globe.rewards.visual_grounding import VisualGroundingReward

    head = VisualGroundingReward()
    assert [head.score_one(r.meta["reasoning"], r.meta["entities"]) for r in records[:80]] == [1.0] * 80


def test_districts_layout_is_deterministic(tmp_path):
    a = generate_record(3, "train", 5, layout="districts")
    b = generate_record(3, "train", 5, layout="districts")
    assert a.json_bytes() == b.json_bytes() and a.image.tobytes() == b.image.tobytes()
    assert generate_record(4, "train", 5, layout="districts").json_bytes() != a.json_bytes()
    for name in ("x", "y"):
        write_geosynth(tmp_path / name, train=12, val=4, test=4, seed=0, layout="districts", answer_coordinates=True)
    for split in ("train", "val", "test"):
        assert _digest(tmp_path / "x", split) == _digest(tmp_path / "y", split)
    args = json.loads((tmp_path / "x/manifest.json").read_text())["args"]
    assert args["layout"] == "districts" and args["answer_coordinates"] is True


# ---------------------------------------------------------------------- the cities layout, unchanged
# sha256 of generate_record(0, split, i).json_bytes() for train 0..199 then test 0..49, written by
# the generator before the layout option existed (pure Python: no image library in it)
CITIES_LAYOUT_JSON_SHA256 = "1565b12800fd2d30ff2cb1d25338663b69a76be32c13bf77e53dc988e432fccb"


def test_cities_layout_records_are_what_they_were():
    h = hashlib.sha256()
    for split, n in (("train", 200), ("test", 50)):
        for i in range(n):
            h.update(generate_record(0, split, i).json_bytes())
    assert h.hexdigest() == CITIES_LAYOUT_JSON_SHA256
    r = generate_record(0, "train", 0)
    assert "district" not in r.meta and "layout" not in r.meta and "coordinates" not in r.meta["reasoning"]
    assert (r.meta["lat"], r.meta["lon"]) in {(c.lat, c.lon) for c in CITIES}


def test_cities_layout_files_byte_identical_and_manifest_without_the_options(tmp_path):
    write_geosynth(tmp_path / "default", train=12, val=4, test=4, seed=0)
    generate_record(0, "train", 0, layout="districts")  # the other layout in the same process changes nothing
    write_geosynth(tmp_path / "explicit", train=12, val=4, test=4, seed=0, layout="cities", answer_coordinates=False)
    files = sorted(p.relative_to(tmp_path / "default") for p in (tmp_path / "default").rglob("*") if p.is_file())
    assert len(files) > 12
    for f in files:
        assert (tmp_path / "default" / f).read_bytes() == (tmp_path / "explicit" / f).read_bytes(), f
    args = json.loads((tmp_path / "default/manifest.json").read_text())["args"]
    assert "layout" not in args and "answer_coordinates" not in args  # old data sets still count as generated


def test_cities_layout_can_end_with_the_city_coordinates():
    r = generate_record(0, "train", 1, answer_coordinates=True)
    plain = generate_record(0, "train", 1)
    assert parse_answer(r.meta["reasoning"]).coordinates == (round(r.meta["lat"], 4), round(r.meta["lon"], 4))
    assert r.meta["reasoning"].split("</think>")[0] == plain.meta["reasoning"].split("</think>")[0]
    assert r.image.tobytes() == plain.image.tobytes()


def test_datamodule_options_and_bad_layout(tmp_path):
    dm = GeoSynth(root=str(tmp_path / "gs"), train_size=8, val_size=2, test_size=4, min_shards=1, batch_size=4,
                  layout="districts", answer_coordinates=True, test_format="im2gps3k")
    dm.prepare_data()
    assert dm.is_generated()
    assert not GeoSynth(root=str(tmp_path / "gs"), train_size=8, val_size=2, test_size=4, min_shards=1).is_generated()
    dm.setup("predict")
    predicted = [s for b in dm.predict_dataloader() for s in b]  # the test split in test_format: IM2GPS3K ids
    assert [s.extra["img_id"] for s in predicted] == [f"test-{i:06d}.jpg" for i in range(4)]
    with pytest.raises(ValueError, match="layout"):
        generate_record(0, "train", 0, layout="suburbs")
