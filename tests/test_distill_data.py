"""RawImages: the distillation's input in chunks; ids kept inside their folder, bad images skipped
and counted, chunks split over ranks and workers, done chunks not read again."""

from __future__ import annotations

import io
import os
from types import SimpleNamespace

import pytest
from PIL import Image

from data_modules.raw_images import RawImages, index_csv
from globe.distill.batch import ChunkBatch, DistillSample


def _jpeg(color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), color).save(buf, "JPEG")
    return buf.getvalue()


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 0, 255)).save(buf, "PNG")
    return buf.getvalue()


def _batches(dm: RawImages, rank: int = 0, world_size: int = 1) -> list[ChunkBatch]:
    dm.trainer = SimpleNamespace(global_rank=rank, world_size=world_size)
    return list(dm.predict_dataloader())


@pytest.fixture
def folder(tmp_path):
    """Images (one in a sub-folder, one PNG, one corrupt) and a CSV with hostile ids."""
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    (images / "a.jpg").write_bytes(_jpeg())
    (images / "sub" / "b.jpg").write_bytes(_jpeg((0, 200, 0)))
    (images / "c.png").write_bytes(_png())
    (images / "broken.jpg").write_bytes(_jpeg()[:40])  # a truncated JPEG
    (tmp_path / "secret.jpg").write_bytes(_jpeg())  # outside the folder
    os.symlink(tmp_path / "secret.jpg", images / "link.jpg")  # a link that leads out
    rows = [
        "IMG_ID,LAT,LON,country,city,AUTHOR",
        "a.jpg,48.85,2.35,France,Paris,x",
        "sub/b.jpg,-12.04,-77.03,,,y",       # sub-folders are allowed; names missing
        "../secret.jpg,0,0,,,z",             # leaves the folder
        "/etc/passwd,0,0,,,z",               # absolute
        "link.jpg,0,0,,,z",                  # a link out of the folder
        "broken.jpg,10,10,,,z",              # corrupt image
        "c.png,35.68,139.69,Japan,Tokyo,z",  # not a JPEG: decoded, re-encoded on output
        "missing.jpg,1,1,,,z",               # no such file
        "a.jpg,48.85,2.35,France,Paris,dup", # the same key again
        "x.jpg,400,0,,,z",                   # out-of-range latitude
    ]
    csv_path = tmp_path / "mp16.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    return csv_path, images


def test_ids_stay_in_their_folder_and_bad_rows_are_counted(folder):
    csv_path, images = folder
    dm = RawImages(csv_path=str(csv_path), images=str(images), chunk_size=100, batch_size=8)
    batches = _batches(dm)
    samples = [s for b in batches for s in b]
    assert [s.key for s in samples] == ["a", "sub_b", "c"]
    assert all(isinstance(s, DistillSample) and s.source == "csv" for s in samples)
    a, b, c = samples
    assert (a.country, a.city, a.extra["AUTHOR"], a.extra["img_id"]) == ("France", "Paris", "x", "a.jpg")
    assert (b.lat, b.lon, b.country) == (-12.04, -77.03, "")
    assert a.image_bytes == (images / "a.jpg").read_bytes() and c.image_bytes[:4] == b"\x89PNG"
    (last,) = [x for x in batches if x.chunk_end]
    assert last.rows == 10
    assert last.skipped == {"unsafe_id": 3, "corrupt_image": 1, "missing_image": 1, "duplicate_key": 1, "bad_value": 1}
    assert ("unsafe_id", "___secret") in last.skipped_keys
    assert dm.stats.counts["corrupt_image"] == 1 and dm.stats.counts["ok"] == 3


def test_chunks_batches_and_resume_skip(folder):
    csv_path, images = folder
    dm = RawImages(csv_path=str(csv_path), images=str(images), chunk_size=3, batch_size=2)
    dm.setup()
    assert dm.num_chunks == 4 and dm.chunking()["rows"] == 10
    batches = _batches(dm)
    # chunk 0 = rows 1-3 (a, sub/b, ../secret): one full batch, its last; chunk 1 = rows 4-6 (absolute,
    # link, broken): nothing usable, still a last batch; chunk 2 = c.png, missing, the repeated a.jpg
    assert [(b.chunk, len(b), b.chunk_end) for b in batches] == [(0, 2, True), (1, 0, True), (2, 1, True), (3, 0, True)]
    assert len(dm.predict_dataloader()) >= len(batches)  # the length is an upper bound (the progress bar's total)
    full = RawImages(csv_path=str(csv_path), images=str(images), chunk_size=2, batch_size=1)
    assert [len(b) for b in _batches(full) if b.chunk == 0] == [1, 1]  # a last batch is never an extra empty one
    dm.skip_chunks({0, 2})
    assert [b.chunk for b in _batches(dm)] == [1, 3]


def test_chunks_are_split_over_ranks_and_workers(folder):
    csv_path, images = folder
    dm = RawImages(csv_path=str(csv_path), images=str(images), chunk_size=1, batch_size=4, num_workers=2)
    dm.setup()
    seen = []
    for rank in (0, 1):
        for batch in _batches(dm, rank, 2):
            assert isinstance(batch, ChunkBatch)  # its attributes survive the trip from a worker process
            if batch.chunk_end:
                seen.append(batch.chunk)
    assert sorted(seen) == list(range(10))  # every chunk once, over 2 ranks x 2 workers
    dm.skip_chunks(set(range(10)))
    assert [(b.chunk, len(b)) for b in _batches(dm, 1, 2)] == [(None, 0)]  # a rank with nothing left: one empty batch


def test_repeated_keys_are_found_by_hash(tmp_path):
    csv_path = tmp_path / "k.csv"
    csv_path.write_text("IMG_ID,LAT,LON\na/b.jpg,0,0\na_b.jpg,0,0\nc.jpg,0,0\na@b.jpg,0,0\n")  # three rows sanitise to a_b
    chunks, repeats, columns = index_csv(csv_path, chunk_size=3)
    assert chunks == [3, 1] and repeats == {1, 3} and columns["id"] == "IMG_ID"


def test_shards_keep_entities_and_drop_reasoning(geosynth_root):
    dm = RawImages(shards=str(geosynth_root / "test" / "test-{000000..000003}.tar"), batch_size=8)
    batches = _batches(dm)
    samples = [s for b in batches for s in b]
    assert len(samples) == 8 and [b.chunk for b in batches if b.chunk_end] == [0, 1, 2, 3]
    assert all(s.reasoning == "" and s.source == "shards" and s.image_bytes[:3] == b"\xff\xd8\xff" for s in samples)
    assert any(s.entities for s in samples) and all(s.extra["url"].endswith(".tar") for s in samples)
    assert len(dm.predict_dataloader()) == len(batches)  # counted from the tar headers: exact here


def test_needs_one_source(tmp_path):
    with pytest.raises(ValueError, match="csv_path and images, or shards"):
        RawImages()
    with pytest.raises(ValueError, match="needs images"):
        RawImages(csv_path="x.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,where\nx,y\n")
    with pytest.raises(ValueError, match="IMG_ID"):
        RawImages(csv_path=str(bad), images=str(tmp_path)).setup()
