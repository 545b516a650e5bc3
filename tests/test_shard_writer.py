"""Shard writer: CSV + images and parquet -> shards -> data modules, values equal."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

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


def _csv(path, rows, header=("IMG_ID", "LAT", "LON")):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def _tar_keys(path) -> list[str]:
    import tarfile

    with tarfile.open(path) as tar:  # a truncated tar raises here
        return [m.name for m in tar.getmembers()]


def test_ids_that_leave_the_image_folder_are_skipped_and_counted(tmp_path):
    images = tmp_path / "img"
    (images / "a1").mkdir(parents=True)
    (images / "a1/ok.jpg").write_bytes(_image((200, 0, 0)))
    (images / "a1/noext.jpg").write_bytes(_image((0, 200, 0)))
    outside = tmp_path / "secret.jpg"  # a readable image outside the folder: must never be read
    outside.write_bytes(_image((0, 0, 200)))
    (images / "link.jpg").symlink_to(outside)  # a link that leads out of the folder
    rows = [
        ["a1/ok.jpg", 1, 2],
        ["../../../etc/passwd", 1, 2],
        ["../secret.jpg", 1, 2],
        [str(outside), 1, 2],  # absolute
        ["a1/../../secret.jpg", 1, 2],
        ["link.jpg", 1, 2],
        ["a1\\..\\..\\secret.jpg", 1, 2],
        ["a1/nul\0.jpg", 1, 2],
        ["a1/noext", 3, 4],  # subfolder id without extension: a1/noext.jpg
    ]
    out = tmp_path / "out"
    summary = main(["csv", "--csv", _csv(tmp_path / "x.csv", rows), "--images", str(images), "--out", str(out),
                    "--shard-size", "1", "--no-progress"])
    assert summary["written"] == 2 and summary["skipped"] == {"unsafe_id": 7}
    assert summary["skipped_examples"]["unsafe_id"][0] == sanitize_key("../../../etc/passwd")
    assert [_tar_keys(out / name) for name in summary["shards"]] == [["a1_ok.jpg", "a1_ok.json"],
                                                                     ["a1_noext.jpg", "a1_noext.json"]]
    assert json.loads((out / "train-summary.json").read_text())["skipped"] == {"unsafe_id": 7}
    samples, _ = _samples(summary["shard_pattern"])
    assert all(s.image.getpixel((5, 3))[2] < 100 for s in samples)  # the blue outside image never got in


def test_shards_appear_under_their_final_name_only_when_complete(tmp_path):
    images = tmp_path / "img"
    images.mkdir()
    rows = []
    for i in range(5):
        (images / f"{i}.jpg").write_bytes(_image((i * 40, 0, 0)))
        rows.append([f"{i}.jpg", i, i])
    out = tmp_path / "out"
    seen_during: list[list[str]] = []

    def records():
        for i, record in enumerate(csv_records(_csv(tmp_path / "x.csv", rows), images)):
            seen_during.append(sorted(p.name for p in out.glob("*.tar")))  # what a reader could pick up now
            yield record
            if i == 2:  # shard 1 holds one of its two samples
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_shards(records(), out, shard_size=2, progress=False)
    assert seen_during == [[], [], ["train-000000.tar"]]
    assert sorted(p.name for p in out.iterdir()) == ["train-000000.tar", "train-summary.json"]  # no temp file left
    assert _tar_keys(out / "train-000000.tar") == ["0.jpg", "0.json", "1.jpg", "1.json"]
    summary = json.loads((out / "train-summary.json").read_text())
    assert summary["complete"] is False and summary["written"] == 2 and summary["shards"] == ["train-000000.tar"]
    assert "KeyboardInterrupt" in summary["error"]


def test_latin1_csv_is_a_clear_error_before_any_work(tmp_path):
    images = tmp_path / "img"
    images.mkdir()
    (images / "a.jpg").write_bytes(_image((1, 1, 1)))
    data = "IMG_ID,LAT,LON,city\na.jpg,1,2,Paris\nb.jpg,1,2,Besan\u00e7on\n".encode("latin-1")
    (tmp_path / "x.csv").write_bytes(data)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"x\.csv: not UTF-8 at byte offset 51 \(line 3\).*iconv -f latin1 -t utf-8"):
        main(["csv", "--csv", str(tmp_path / "x.csv"), "--images", str(images), "--out", str(out), "--no-progress"])
    assert not out.exists() or not any(out.iterdir())  # nothing written, no summary


def test_utf8_bom_csv_is_read(tmp_path):
    images = tmp_path / "img"
    images.mkdir()
    (images / "a.jpg").write_bytes(_image((1, 1, 1)))
    (tmp_path / "x.csv").write_bytes("\ufeffIMG_ID,LAT,LON,city\na.jpg,1,2,Besan\u00e7on\n".encode("utf-8"))
    summary = write_shards(csv_records(tmp_path / "x.csv", images), tmp_path / "out", progress=False)
    samples, _ = _samples(summary["shard_pattern"], required_fields=("lat", "lon"))
    assert summary["written"] == 1 and samples[0].city == "Besan\u00e7on"


def test_oversized_csv_field_is_a_counted_skip(tmp_path):
    images = tmp_path / "img"
    images.mkdir()
    for name in ("a.jpg", "c.jpg"):
        (images / name).write_bytes(_image((1, 1, 1)))
    rows = [["a.jpg", 1, 2, "x"], ["b.jpg", 1, 2, "y" * 200_000], ["c.jpg", 3, 4, "z"]]  # csv's field limit is 131,072
    summary = write_shards(csv_records(_csv(tmp_path / "x.csv", rows, ("IMG_ID", "LAT", "LON", "note")), images),
                           tmp_path / "out", progress=False)
    assert summary["written"] == 2 and summary["skipped"] == {"bad_row": 1}
    assert summary["skipped_examples"]["bad_row"] == ["line 3"]


def test_deeply_nested_entities_cell_is_a_counted_skip(tmp_path):
    images = tmp_path / "img"
    images.mkdir()
    (images / "a.jpg").write_bytes(_image((1, 1, 1)))
    rows = [["a.jpg", 1, 2, "[" * 50_000 + "]" * 50_000], ["a.jpg", 1, 2, '["sign"]']]
    summary = write_shards(csv_records(_csv(tmp_path / "x.csv", rows, ("IMG_ID", "LAT", "LON", "entities")), images),
                           tmp_path / "out", progress=False)
    assert summary["written"] == 1 and summary["skipped"] == {"bad_value": 1}


def test_output_folder_is_checked_before_the_long_work(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OSError, match=r"output (directory|folder) .*file/out"):
        main(["csv", "--csv", str(tmp_path / "missing.csv"), "--images", str(tmp_path), "--out",
              str(tmp_path / "file/out"), "--no-progress"])  # fails on --out before it opens the CSV
    with pytest.raises(OSError, match=r"output (directory|folder) .*file.* not a directory"):
        write_shards([], tmp_path / "file", progress=False)


def test_read_only_output_folder_is_a_clear_error(tmp_path):
    import os

    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
    else:  # root writes into any chmod-ed folder; sysfs refuses new files even to root
        ro = Path("/sys/kernel")
        if not ro.is_dir():
            pytest.skip("no read-only folder available to root here")
    with pytest.raises(OSError, match=rf"output folder {ro} is not writable \(Permission denied\)"):
        write_shards([], ro, progress=False)
