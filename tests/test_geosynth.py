"""GeoSynth: determinism, entities/reasoning consistency, files, data module."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import tarfile

import pytest

from data_modules.geosynth import CITIES, ENTITIES, GeoSynth, generate_record, mentioned_entities, write_geosynth
from data_modules.geosynth.generate import IM2GPS3K_HEADER
from globe.answer import parse_answer


def _digest(root, split):
    """sha256 of every member of a split's tars (names + bytes)."""
    h = hashlib.sha256()
    for tar_path in sorted((root / split).glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for m in tar.getmembers():
                h.update(m.name.encode())
                h.update(tar.extractfile(m).read())
    return h.hexdigest()


def test_same_seed_same_bytes_different_seed_different(tmp_path):
    a = generate_record(7, "train", 3)
    b = generate_record(7, "train", 3)
    c = generate_record(8, "train", 3)
    assert a.json_bytes() == b.json_bytes() and a.image.tobytes() == b.image.tobytes() and a.jpeg() == b.jpeg()
    assert a.image.tobytes() != c.image.tobytes()
    write_geosynth(tmp_path / "x", train=12, val=4, test=4, seed=0)
    write_geosynth(tmp_path / "y", train=12, val=4, test=4, seed=0)
    write_geosynth(tmp_path / "z", train=12, val=4, test=4, seed=1)
    for split in ("train", "val", "test"):
        assert _digest(tmp_path / "x", split) == _digest(tmp_path / "y", split)
        assert _digest(tmp_path / "x", split) != _digest(tmp_path / "z", split)
    # whole tar files are reproducible too (fixed mtime)
    assert (tmp_path / "x/train/train-000000.tar").read_bytes() == (tmp_path / "y/train/train-000000.tar").read_bytes()


def test_sample_does_not_depend_on_split_sizes():
    # index 5 of train is the same whatever the other sizes: it depends on (seed, split, index) only
    assert generate_record(0, "train", 5).json_bytes() == generate_record(0, "train", 5).json_bytes()
    assert generate_record(0, "train", 5).json_bytes() != generate_record(0, "test", 5).json_bytes()


@pytest.fixture(scope="module")
def records():
    return [generate_record(0, "train", i) for i in range(300)]


def test_entities_are_vocabulary_and_reasoning_names_only_drawn_ones(records):
    for r in records:
        ents = r.meta["entities"]
        assert len(ents) == len(set(ents)) and set(ents) <= set(ENTITIES), ents
        mentioned = mentioned_entities(r.meta["reasoning"])
        assert mentioned <= set(ents), (r.key, mentioned - set(ents))


def test_reasoning_is_in_answer_format_with_the_label(records):
    for r in records:
        parsed = parse_answer(r.meta["reasoning"])
        assert parsed.well_formed
        assert (parsed.country, parsed.city) == (r.meta["country"], r.meta["city"])


def test_localizable_images_mention_their_cues_and_others_say_so(records):
    loc = [r for r in records if r.meta["localizable"]]
    nonloc = [r for r in records if not r.meta["localizable"]]
    assert 0.07 < len(nonloc) / len(records) < 0.25  # nonlocalizable_rate = 0.15
    for r in nonloc:
        assert "cannot be determined confidently" in r.meta["reasoning"]
        assert r.meta["scene"] in ("sky", "wall", "ground")
        assert not any(e.endswith(" flag") or e.endswith(" text") for e in r.meta["entities"])
    for r in loc:
        think = r.meta["reasoning"]
        assert r.meta["country"] in think.split("</think>")[0]
        # every country/city cue drawn is explained (distractors may stay unmentioned)
        mentioned = mentioned_entities(think)
        assert len(mentioned & set(r.meta["entities"])) >= 2


def test_cues_depend_on_the_country(records):
    """Country-level cues appear only with their country (apart from borrowed distractors)."""
    by_country: dict[str, set[str]] = {}
    for r in records:
        if r.meta["localizable"]:
            by_country.setdefault(r.meta["country"], set()).update(r.meta["entities"])
    assert "pagoda roof" in by_country["Japan"] and "onion dome" in by_country["Russia"]
    flags = {c: {e for e in ents if e.endswith(" flag")} for c, ents in by_country.items()}
    for country, fl in flags.items():
        assert len(fl) <= 1, (country, fl)  # a country only ever shows its own flag


def test_left_driving_countries_say_left(records):
    for r in records:
        if "car" in r.meta["entities"]:
            side = "left" if r.meta["country"] in ("Japan", "Australia", "India") else "right"
            assert f"drives on the {side} side" in r.meta["reasoning"]


def test_vocabulary_names_are_unambiguous():
    names = list(ENTITIES)
    assert all(n == n.lower() for n in names)
    for a in names:
        for b in names:
            if a != b:
                assert not re.search(rf"(?<![\w-]){re.escape(a)}(?![\w-])", b), (a, b)


def test_files_layout_manifest_and_im2gps3k_csv(tmp_path):
    manifest = write_geosynth(tmp_path, train=10, val=3, test=5, seed=0, shard_size=4, min_shards=2)
    assert manifest["shards"] == {"train": ["train-000000.tar", "train-000001.tar", "train-000002.tar"],
                                  "val": ["val-000000.tar", "val-000001.tar"],
                                  "test": ["test-000000.tar", "test-000001.tar"]}
    with open(tmp_path / "im2gps3k/im2gps3k.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == IM2GPS3K_HEADER and len(rows) == 6
    first = generate_record(0, "test", 0)
    assert rows[1][:4] == ["test-000000.jpg", "geosynth", str(first.meta["lat"]), str(first.meta["lon"])]
    assert (tmp_path / "im2gps3k/images/test-000000.jpg").read_bytes() == first.jpeg()
    saved = json.loads((tmp_path / "manifest.json").read_text())
    assert saved["args"]["seed"] == 0 and saved["counts"]["test"] == 5


def test_datamodule_generates_once_and_streams(tmp_path):
    dm = GeoSynth(root=str(tmp_path / "gs"), train_size=16, val_size=4, test_size=6, batch_size=4, min_shards=2)
    dm.prepare_data()
    stamp = (tmp_path / "gs/manifest.json").stat().st_mtime_ns
    GeoSynth(root=str(tmp_path / "gs"), train_size=16, val_size=4, test_size=6, min_shards=2).prepare_data()
    assert (tmp_path / "gs/manifest.json").stat().st_mtime_ns == stamp  # same args: not regenerated
    dm.setup("fit")
    train = [s for b in dm.train_dataloader() for s in b]
    assert sorted(s.key for s in train) == [f"train-{i:06d}" for i in range(16)]
    assert {(s.city, s.lat, s.lon) for s in train} <= {(c.name, c.lat, c.lon) for c in CITIES}
    assert sum(len(b) for b in dm.val_dataloader()) == 4
    dm.setup("test")
    test = [s for b in dm.test_dataloader() for s in b]
    assert [s.key for s in test] == [f"test-{i:06d}" for i in range(6)]
    other = GeoSynth(root=str(tmp_path / "gs"), train_size=20, val_size=4, test_size=6, min_shards=2)
    assert not other.is_generated()  # different sizes -> regenerate


def test_datamodule_im2gps3k_test_format(tmp_path):
    dm = GeoSynth(root=str(tmp_path / "gs"), train_size=4, val_size=2, test_size=6, batch_size=4, min_shards=1,
                  test_format="im2gps3k")
    dm.prepare_data()
    dm.setup("test")
    test = [s for b in dm.test_dataloader() for s in b]
    shard_test = [generate_record(0, "test", i) for i in range(6)]
    assert [s.key for s in test] == [r.key for r in shard_test]
    assert [(s.lat, s.lon) for s in test] == [(r.meta["lat"], r.meta["lon"]) for r in shard_test]
    assert test[0].country == "" and test[0].extra["AUTHOR"] == "geosynth"  # IM2GPS3K has no names
