"""Shard writer: CSV + images and parquet -> shards -> data modules, values equal."""

from __future__ import annotations

import csv
import io
import json

import pytest
from PIL import Image

from data_modules import IM2GPS3K, MP16Reason
from data_modules.row_sources import sanitize_key
from data_modules.shard_writer import main, write_shards
from data_modules.row_sources import csv_records


def _image(color, fmt="JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (10, 6), color).save(buf, fmt)
    return buf.getvalue()


def _samples(spec, **kw):
    dm = MP16Reason(test_shards=spec, batch_size=100, **kw)
    return [s for b in dm.test_dataloader() for s in b], dm


def test_mp16_csv_round_trip(tmp_path, capsys):
    images = tmp_path / "img"
    (images / "a1").mkdir(parents=True)
    rows = [  # MP-16 style: IMG_ID is a relative path, city/country among other columns
        {"IMG_ID": "a1/1001.jpg", "AUTHOR": "x", "LAT": "48.85", "LON": "2.35", "city": "Paris", "country": "France", "continent": "Europe"},
        {"IMG_ID": "a1/1002.png", "AUTHOR": "y", "LAT": "35.68", "LON": "139.69", "city": "Tokyo", "country": "Japan", "continent": "Asia"},
        {"IMG_ID": "a1/1003.jpg", "AUTHOR": "z", "LAT": "1", "LON": "2", "city": "", "country": "", "continent": ""},  # no file
        {"IMG_ID": "a1/1004.jpg", "AUTHOR": "w", "LAT": "1", "LON": "2", "city": "", "country": "", "continent": ""},  # corrupt
        {"IMG_ID": "a1/1005.jpg", "AUTHOR": "v", "LAT": "north", "LON": "2", "city": "", "country": "", "continent": ""},
    ]
    (images / "a1/1001.jpg").write_bytes(_image((200, 0, 0)))
    (images / "a1/1002.png").write_bytes(_image((0, 0, 200), "PNG"))
    (images / "a1/1004.jpg").write_bytes(b"\xff\xd8 broken")
    with open(tmp_path / "mp16.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = main(["csv", "--csv", str(tmp_path / "mp16.csv"), "--images", str(images), "--out", str(tmp_path / "out"),
                    "--shard-size", "1", "--prefix", "mp16", "--no-progress"])
    assert summary["written"] == 2 and summary["shards"] == ["mp16-000000.tar", "mp16-000001.tar"]
    assert summary["skipped"] == {"bad_value": 1, "corrupt_image": 1, "missing_image": 1}
    assert summary["skipped_examples"]["missing_image"] == ["a1_1003"]
    assert '"written": 2' in capsys.readouterr().out
    samples, _ = _samples(summary["shard_pattern"])
    by_key = {s.key: s for s in samples}
    paris, tokyo = by_key["a1_1001"], by_key["a1_1002"]
    assert (paris.lat, paris.lon, paris.country, paris.city, paris.localizable) == (48.85, 2.35, "France", "Paris", True)
    assert paris.extra["img_id"] == "a1/1001.jpg" and paris.extra["AUTHOR"] == "x" and paris.extra["continent"] == "Europe"
    assert paris.image.getpixel((5, 3))[0] > 150  # the red JPEG, stored as is
    assert tokyo.image.getpixel((5, 3)) == pytest.approx((0, 0, 200), abs=8)  # PNG re-encoded as JPEG


def test_im2gps3k_csv_to_shards_equals_folder(tmp_path):
    header = ["IMG_ID", "AUTHOR", "LAT", "LON", "S3_Label", "S16_Label", "S365_Label", "Prob_indoor", "Prob_natural", "Prob_urban"]
    images = tmp_path / "img"
    images.mkdir()
    with open(tmp_path / "im2gps3k.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i in range(4):
            name = f"{1000 + i}_ab_{i}@N00.jpg"
            (images / name).write_bytes(_image((60 * i, 10, 10)))
            w.writerow([name, f"{i}@N00", 10 + i, 20 - i, 2, 12, 353, 0.2, 0.1, 0.7])
    summary = write_shards(csv_records(tmp_path / "im2gps3k.csv", images), tmp_path / "out", "im2gps3k", 2, progress=False)
    from_shards = [s for b in IM2GPS3K(shards=summary["shard_pattern"], batch_size=3).test_dataloader() for s in b]
    folder = IM2GPS3K(csv_path=str(tmp_path / "im2gps3k.csv"), images=str(images), batch_size=3)
    from_folder = [s for b in folder.test_dataloader() for s in b]
    assert [s.key for s in from_shards] == [s.key for s in from_folder] == [sanitize_key(f"{1000 + i}_ab_{i}@N00.jpg") for i in range(4)]
    for a, b in zip(from_shards, from_folder):
        assert (a.lat, a.lon, a.country, a.city) == (b.lat, b.lon, "", "")
        assert a.image.tobytes() == b.image.tobytes()  # JPEG bytes copied, same decode
        assert a.extra["S365_Label"] == b.extra["S365_Label"] == "353"


def _parquet(tmp_path, rows, name="part-0.parquet"):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / name)
    return str(tmp_path / name)


def test_parquet_round_trip(tmp_path):
    rows = [
        {"images": [{"bytes": _image((250, 0, 0)), "path": "mp16/12345.jpg"}], "response": "A red wall.",
         "solution": "<country>France</country><city>Paris</city>", "entities": [{"text": "wall"}, {"text": "sign"}],
         "LAT": 48.85341, "LON": 2.3488, "localizable": True, "teacher_score": 0.9},
        {"images": [{"bytes": _image((0, 250, 0)), "path": "mp16/12346.jpg"}], "response": "Green.",
         "solution": "<country>Japan</country><city>Tokyo</city>", "entities": [{"text": "tree"}],
         "LAT": 35.6895, "LON": 139.69171, "localizable": False, "teacher_score": 0.5},
        {"images": [{"bytes": b"garbage", "path": "mp16/12347.jpg"}], "response": "x",
         "solution": "<country>Egypt</country><city>Cairo</city>", "entities": [], "LAT": 30.0, "LON": 31.2,
         "localizable": True, "teacher_score": 0.1},
        {"images": [], "response": "x", "solution": "<country>Egypt</country><city>Cairo</city>", "entities": [],
         "LAT": 30.0, "LON": 31.2, "localizable": True, "teacher_score": 0.1},
    ]
    path = _parquet(tmp_path, rows)
    summary = main(["parquet", "--parquet", path, "--out", str(tmp_path / "out"), "--no-progress"])
    assert summary["written"] == 2 and summary["skipped"] == {"corrupt_image": 1, "missing_image": 1}
    samples, _ = _samples(summary["shard_pattern"])
    a, b = samples
    assert a.key == "mp16_12345" and (a.lat, a.lon, a.country, a.city) == (48.85341, 2.3488, "France", "Paris")
    assert a.reasoning == "<think>A red wall.</think><answer>country: France\ncity: Paris</answer>"
    assert a.entities == ["wall", "sign"] and a.localizable is True and a.extra["teacher_score"] == 0.9
    assert b.localizable is False and b.entities == ["tree"] and b.city == "Tokyo"
    assert a.image.getpixel((5, 3))[0] > 200


def test_parquet_without_coordinates_needs_a_geocoder(tmp_path):
    from data_modules.row_sources import parquet_records

    rows = [{"images": [{"bytes": _image((1, 2, 3))}], "response": "r", "solution": "<country>Norway</country><city>Oslo</city>",
             "entities": [{"text": "water"}]}]
    path = _parquet(tmp_path, rows)
    skipped = write_shards(parquet_records([path]), tmp_path / "a", progress=False)
    assert skipped["written"] == 0 and skipped["skipped"] == {"missing_coordinates": 1} and skipped["shards"] == []
    geocoded = write_shards(parquet_records([path], geocode=lambda city, country: (59.91273, 10.74609)),
                            tmp_path / "b", progress=False)
    samples, _ = _samples(geocoded["shard_pattern"])
    assert (samples[0].key, samples[0].lat, samples[0].city, samples[0].localizable) == ("mp16r-000-00000001", 59.91273, "Oslo", True)


def test_duplicate_keys_are_skipped(tmp_path):
    rows = [{"images": [{"bytes": _image((9, 9, 9)), "path": "same.jpg"}], "solution": "<country>France</country><city>Lyon</city>",
             "lat": 45.7, "lon": 4.8}] * 2
    summary = write_shards(__import__("data_modules.row_sources", fromlist=["x"]).parquet_records([_parquet(tmp_path, rows)]),
                           tmp_path / "o", progress=False)
    assert summary["written"] == 1 and summary["skipped"] == {"duplicate_key": 1}
    assert json.loads((tmp_path / "o/train-summary.json").read_text())["written"] == 1
