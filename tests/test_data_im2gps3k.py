"""IM2GPS3K: CSV + image folder, missing / unreadable images counted and reported."""

from __future__ import annotations

import csv
import io
import logging

import pytest
from PIL import Image

from data_modules import IM2GPS3K

REAL_CSV = "/work/shared/data/im2gps3k_places365.csv"
HEADER = ["IMG_ID", "AUTHOR", "LAT", "LON", "S3_Label", "S16_Label", "S365_Label", "Prob_indoor", "Prob_natural", "Prob_urban"]


def _folder(tmp_path, n=6):
    images = tmp_path / "images"
    images.mkdir()
    with open(tmp_path / "gt.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i in range(n):
            w.writerow([f"img{i}.jpg", "a", 40.0 + i, -70.0 - i, 1, 2, 3, 0.1, 0.2, 0.7])
    for i in range(n):
        if i in (1, 4):
            continue  # missing
        if i == 2:
            (images / f"img{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
            continue
        buf = io.BytesIO()
        Image.new("RGB", (12, 12), (i * 30, 0, 0)).save(buf, "JPEG")
        (images / f"img{i}.jpg").write_bytes(buf.getvalue())
    return str(tmp_path / "gt.csv"), str(images)


def test_missing_images_are_counted_and_logged(tmp_path, caplog):
    csv_path, images = _folder(tmp_path)
    dm = IM2GPS3K(csv_path=csv_path, images=images, batch_size=2, max_bad_fraction=0.5)
    with caplog.at_level(logging.WARNING, logger="data_modules"):
        dm.setup("test")
    assert dm.summary["rows"] == 6 and dm.summary["missing"] == 2 and dm.summary["usable"] == 4
    assert dm.summary["missing_examples"] == ["img1", "img4"]
    assert "4 of 6 images usable; 2 missing (e.g. img1, img4)" in caplog.text
    samples = [s for b in dm.test_dataloader() for s in b]
    # the unreadable one is found while streaming: skipped and counted with its key
    assert [s.key for s in samples] == ["img0", "img3", "img5"]
    assert dm.stats.counts["corrupt_image"] == 1 and dm.stats.bad_keys == [("corrupt_image", "img2")]
    s = samples[1]
    assert (s.lat, s.lon, s.country, s.city) == (43.0, -73.0, "", "") and s.extra["S3_Label"] == "1"


def test_verify_images_counts_unreadable_up_front(tmp_path):
    csv_path, images = _folder(tmp_path)
    dm = IM2GPS3K(csv_path=csv_path, images=images, verify_images=True)
    dm.setup("test")
    assert (dm.summary["missing"], dm.summary["unreadable"], dm.summary["usable"]) == (2, 1, 3)
    assert dm.summary["unreadable_examples"] == ["img2"]


def test_real_csv_without_images_fails_with_counts(tmp_path):
    dm = IM2GPS3K(csv_path=REAL_CSV, images=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="none of the 2997 images"):
        dm.setup("test")
    assert dm.summary["missing"] == 2997 and dm.summary["bad_coordinates"] == 0


def test_needs_a_source():
    with pytest.raises(ValueError, match="csv_path and images, or shards"):
        IM2GPS3K()


def _jpeg(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 12), color).save(buf, "JPEG")
    return buf.getvalue()


def test_ids_that_leave_the_image_folder_are_skipped_and_reported(tmp_path, caplog):
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    (images / "good.jpg").write_bytes(_jpeg((200, 0, 0)))
    (images / "sub/nested.jpg").write_bytes(_jpeg((200, 0, 0)))
    outside = tmp_path / "outside.jpg"  # a valid image outside the folder: must never be read
    outside.write_bytes(_jpeg((0, 0, 200)))
    (images / "link.jpg").symlink_to(outside)
    ids = ["good.jpg", "../outside.jpg", str(outside), "sub/nested.jpg", "link.jpg", "../../../etc/passwd", "a\0.jpg"]
    with open(tmp_path / "gt.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for img_id in ids:
            w.writerow([img_id, "a", 10, 20, 1, 2, 3, 0.1, 0.2, 0.7])
    dm = IM2GPS3K(csv_path=str(tmp_path / "gt.csv"), images=str(images), max_bad_fraction=0.9)
    with caplog.at_level(logging.WARNING, logger="data_modules"):
        dm.setup("test")
    # IM2GPS3K ids are plain file names: a separator is refused too (sub/nested.jpg)
    assert (dm.summary["rows"], dm.summary["usable"], dm.summary["unsafe_ids"], dm.summary["missing"]) == (7, 1, 6, 0)
    assert dm.summary["unsafe_id_examples"][:2] == ["../outside.jpg", str(outside)]
    assert "6 with unsafe ids" in caplog.text
    samples = [s for b in dm.test_dataloader() for s in b]
    assert [s.key for s in samples] == ["good"] and samples[0].image.getpixel((6, 6))[0] > 150


def test_latin1_csv_is_a_clear_error(tmp_path):
    (tmp_path / "gt.csv").write_bytes((",".join(HEADER) + "\nS\u00e3o_Paulo.jpg,a,1,2,1,2,3,0,0,1\n").encode("latin-1"))
    dm = IM2GPS3K(csv_path=str(tmp_path / "gt.csv"), images=str(tmp_path))
    with pytest.raises(ValueError, match=r"gt\.csv: not UTF-8 at byte offset 89 \(line 2\).*re-encode"):
        dm.setup("test")


def test_row_the_csv_module_rejects_is_counted_not_fatal(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(_jpeg((9, 9, 9)))
    with open(tmp_path / "gt.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerow(["b.jpg", "x" * 200_000, 1, 2, 1, 2, 3, 0, 0, 1])  # over csv's 131,072-character field limit
        w.writerow(["a.jpg", "a", 1, 2, 1, 2, 3, 0, 0, 1])
    dm = IM2GPS3K(csv_path=str(tmp_path / "gt.csv"), images=str(images))
    dm.setup("test")
    assert (dm.summary["rows"], dm.summary["usable"], dm.summary["bad_rows"]) == (2, 1, 1)
    assert dm.summary["bad_row_examples"] == ["line 2"]
