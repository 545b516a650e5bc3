"""Hostile shard JSON: every bad sample is skipped with a reason, none escapes the decoder."""

from __future__ import annotations

import io
import json
import logging
import math
import tarfile

import pytest
import webdataset as wds
from PIL import Image

from data_modules import MP16Reason, tar_reader
from data_modules.csv_text import CsvEncodingError, check_utf8
from data_modules.decode import MAX_JSON_BYTES, MAX_JSON_DEPTH, SampleError, sample_from_record
from data_modules.image_paths import UnsafeIdError, image_path


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 0)).save(buf, "JPEG")
    return buf.getvalue()


GOOD = {"lat": 48.85, "lon": 2.35, "country": "France", "city": "Paris"}


def _json(**override) -> bytes:
    return json.dumps(GOOD | override).encode()


HEAD = b'{"lat": 1, "lon": 2, "country": "a", "city": "b", '


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# (name, json bytes, reason); each is a whole {key}.json member
HOSTILE = [
    # 100,000 levels: json.loads raises RecursionError
    ("deep_100000", HEAD + b'"x": ' + _nested(100_000).encode() + b"}", "bad_json"),
    # parses, but deeper than MAX_JSON_DEPTH (would recurse in pickling / logging later)
    ("deep_parsed", _json(x=json.loads(_nested(MAX_JSON_DEPTH + 5))), "bad_json"),
    # a 5,000-digit int: Python's int-string limit (4,300 digits) makes json.loads raise ValueError
    ("int_5000_digits", HEAD + b'"score": ' + b"7" * 5000 + b"}", "bad_json"),
    ("lat_5000_digits", b'{"lat": ' + b"7" * 5000 + b', "lon": 2, "country": "a", "city": "b"}', "bad_json"),
    # a 400-digit int parses, but float() of it raises OverflowError
    ("lat_400_digits", b'{"lat": ' + b"9" * 400 + b', "lon": 2, "country": "a", "city": "b"}', "bad_value"),
    ("lon_400_digits", b'{"lat": 1, "lon": -' + b"9" * 400 + b', "country": "a", "city": "b"}', "bad_value"),
    ("too_large", _json(reasoning="x" * MAX_JSON_BYTES), "bad_json"),
    ("lat_nan", b'{"lat": NaN, "lon": 2, "country": "a", "city": "b"}', "bad_value"),
    ("lat_inf", b'{"lat": Infinity, "lon": 2, "country": "a", "city": "b"}', "bad_value"),
    ("lon_minus_inf", b'{"lat": 1, "lon": -Infinity, "country": "a", "city": "b"}', "bad_value"),
    ("lat_1e999", b'{"lat": 1e999, "lon": 2, "country": "a", "city": "b"}', "bad_value"),  # parses as inf
    ("lat_95", _json(lat=95), "bad_value"),
    ("lon_300", _json(lon=300.0), "bad_value"),
    ("lat_string_nan", _json(lat="nan"), "bad_value"),
    ("lat_string_long", _json(lat="9" * 5000), "bad_value"),  # float() of it is inf
    ("lat_true", _json(lat=True), "bad_value"),  # a JSON boolean is not a coordinate
    ("lat_list", _json(lat=[1.0]), "bad_value"),
]


@pytest.mark.parametrize("name, data, reason", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_json_is_a_sample_error(name, data, reason):
    with pytest.raises(SampleError) as info:
        sample_from_record({"__key__": name, "json": data, "jpg": _jpeg()})
    assert info.value.reason == reason


def test_too_large_names_the_limit_and_is_checked_before_parsing():
    data = b"[" * (MAX_JSON_BYTES + 1)  # would be a RecursionError if it were parsed
    with pytest.raises(SampleError, match=rf"json_too_large: {MAX_JSON_BYTES + 1} bytes > {MAX_JSON_BYTES}") as info:
        sample_from_record({"__key__": "big", "json": data, "jpg": _jpeg()})
    assert info.value.reason == "bad_json"


def test_depth_limit_is_inclusive():
    ok = sample_from_record({"__key__": "k", "json": _json(x=json.loads(_nested(MAX_JSON_DEPTH - 1))), "jpg": _jpeg()})
    assert ok.extra["x"] == json.loads(_nested(MAX_JSON_DEPTH - 1))  # the object itself is level 1
    with pytest.raises(SampleError, match="nested deeper than"):
        sample_from_record({"__key__": "k", "json": _json(x=json.loads(_nested(MAX_JSON_DEPTH))), "jpg": _jpeg()})


def test_coordinates_present_are_checked_even_when_not_required():
    rec = {"__key__": "k", "json": _json(lat=math.inf), "jpg": _jpeg()}
    with pytest.raises(SampleError, match="lat"):
        sample_from_record(rec, required=("country",))
    absent = {"__key__": "k", "json": json.dumps({"country": "France"}).encode(), "jpg": _jpeg()}
    sample = sample_from_record(absent, required=("country",))
    assert math.isnan(sample.lat) and math.isnan(sample.lon)  # absent = unknown, still allowed
    edge = sample_from_record({"__key__": "k", "json": _json(lat=-90, lon="180"), "jpg": _jpeg()})
    assert (edge.lat, edge.lon) == (-90.0, 180.0)  # the bounds themselves are valid


def test_hostile_shards_stream_good_samples_and_count_bad_ones(tmp_path):
    """Real tars read by a DataLoader worker: the fit would die on the first escaping exception."""
    with wds.TarWriter(str(tmp_path / "hostile-000000.tar")) as sink:
        sink.write({"__key__": "good0", "jpg": _jpeg(), "json": _json()})
        for name, data, _ in HOSTILE[:9]:
            sink.write({"__key__": name, "jpg": _jpeg(), "json": data})
        sink.write({"__key__": "good1", "jpg": _jpeg(), "json": _json(city="Lyon")})
    with wds.TarWriter(str(tmp_path / "hostile-000001.tar")) as sink:
        for name, data, _ in HOSTILE[9:]:
            sink.write({"__key__": name, "jpg": _jpeg(), "json": data})
        sink.write({"__key__": "good2", "jpg": _jpeg(), "json": _json(lat=-33.9, lon=151.2)})
    dm = MP16Reason(test_shards=str(tmp_path / "hostile-{000000..000001}.tar"), batch_size=2, num_workers=1,
                    max_bad_fraction=1.0)
    samples = [s for batch in dm.test_dataloader() for s in batch]
    assert [s.key for s in samples] == ["good0", "good1", "good2"]
    assert (samples[1].city, samples[2].lat) == ("Lyon", -33.9)
    counts = dm.stats["test"].counts  # summed over the worker through shared memory
    expected = {reason: sum(1 for _, _, r in HOSTILE if r == reason) for reason in ("bad_json", "bad_value")}
    assert {k: counts[k] for k in ("ok", "bad_json", "bad_value")} == {"ok": 3, **expected}
    assert dm.stats["test"].bad == len(HOSTILE)


# -- oversize tar members are judged by their header, never read


def _write_tar(path, members: list[tuple[str, bytes]], mode: str = "w") -> None:
    with tarfile.open(path, mode) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def extracted(monkeypatch) -> list[str]:
    """Names of the tar members anything extracts (reads) from now on."""
    names: list[str] = []
    real = tarfile.TarFile.extractfile

    def recording(self, member):
        names.append(member.name if isinstance(member, tarfile.TarInfo) else member)
        return real(self, member)

    monkeypatch.setattr(tarfile.TarFile, "extractfile", recording)
    return names


def test_oversize_members_are_skipped_unread_counted_and_the_shard_goes_on(tmp_path, monkeypatch, extracted, caplog):
    # small limits keep the tar tiny; the mechanism is the one the 1 MiB / 64 MiB defaults use
    monkeypatch.setattr(tar_reader, "MAX_JSON_BYTES", 200)
    monkeypatch.setattr(tar_reader, "MAX_MEMBER_BYTES", 4096)
    jpg, small_json = _jpeg(), _json()
    assert len(jpg) < 2048 and len(small_json) < 200  # the good members fit under both limits
    _write_tar(tmp_path / "big-000000.tar", [
        ("good0.jpg", jpg), ("good0.json", small_json),
        ("big_json.jpg", jpg), ("big_json.json", _json(reasoning="x" * 300)),  # 300+ bytes > 200
        ("big_image.png", b"\x89PNG" + b"\0" * 5000), ("big_image.json", small_json),  # > 4096
        # 6000 bytes together > 4096; "a.jpg" / "b.jpg" are not image members to the decoder
        ("two_parts.a.jpg", b"\xff" * 3000), ("two_parts.b.jpg", b"\xff" * 3000),
        ("two_parts.json", small_json),
        ("big_other.jpg", jpg), ("big_other.txt", b"t" * 5000), ("big_other.json", small_json),
        ("good1.jpg", jpg), ("good1.json", _json(city="Lyon")),
    ])
    dm = MP16Reason(test_shards=str(tmp_path / "big-000000.tar"), batch_size=2, max_bad_fraction=1.0)
    with caplog.at_level(logging.WARNING, logger="data_modules"):
        samples = [s for batch in dm.test_dataloader() for s in batch]
    # (b) the valid samples around the oversize ones are still read
    assert [(s.key, s.city) for s in samples] == [("good0", "Paris"), ("good1", "Lyon")]
    # (a) each oversize sample is counted once, under the reason of the member's kind
    counts = dm.stats["test"].counts
    assert {k: v for k, v in counts.items() if v} == {"ok": 2, "bad_json": 1, "corrupt_image": 1, "bad_value": 2}
    shard = str(tmp_path / "big-000000.tar")
    assert dm.stats["test"].bad_keys == [("bad_json", f"{shard}:big_json"), ("corrupt_image", f"{shard}:big_image"),
                                         ("bad_value", f"{shard}:two_parts"), ("bad_value", f"{shard}:big_other")]
    log = caplog.text
    assert f"json_too_large: big_json.json is {len(_json(reasoning='x' * 300))} bytes > 200 (not read)" in log
    assert "image_too_large: big_image.png is 5004 bytes > 4096 (not read)" in log
    assert "member_too_large: two_parts.b.jpg is 3000 bytes (with the sample's other members: 6000) > 4096" in log
    assert "member_too_large: big_other.txt is 5000 bytes > 4096 (not read)" in log
    # (c) an oversize member is never read, nor is anything after it in the same sample
    assert extracted == ["good0.jpg", "good0.json", "big_json.jpg", "two_parts.a.jpg", "big_other.jpg",
                         "good1.jpg", "good1.json"]


def test_json_over_the_default_limit_is_not_read_from_a_compressed_stream(tmp_path, extracted):
    """The real 1 MiB bound, through gzip: the stream reads past the unread bytes and goes on."""
    url = str(tmp_path / "big.tar.gz")
    big = _json(reasoning="x" * MAX_JSON_BYTES)
    _write_tar(url, [("big.json", big), ("big.jpg", _jpeg()), ("next.json", _json()), ("next.jpg", _jpeg())], "w:gz")
    errors: list[tuple[str, str]] = []
    records = list(tar_reader.tar_records([{"url": url}], lambda key, detail: errors.append((key, detail))))
    assert errors == [] and [r["__key__"] for r in records] == ["big", "next"]
    assert records[0] == {"__key__": "big", "__url__": url,
                          "__skip__": ("bad_json", f"json_too_large: big.json is {len(big)} bytes > {MAX_JSON_BYTES} (not read)")}
    assert extracted == ["next.json", "next.jpg"]
    with pytest.raises(SampleError, match="json_too_large") as info:
        sample_from_record(records[0])
    assert info.value.reason == "bad_json"
    assert sample_from_record(records[1]).key == "next"


# -- file ids stay inside their folder


@pytest.mark.parametrize("img_id, why", [
    ("", "empty"),
    ("../x.jpg", "separator"),
    ("/etc/passwd", "absolute"),
    ("a\0.jpg", "NUL"),
    ("..\\x.jpg", "backslash"),
    ("sub/x.jpg", "separator"),
])
def test_flat_ids_refuse_anything_but_a_file_name(tmp_path, img_id, why):
    with pytest.raises(UnsafeIdError, match=why):
        image_path(tmp_path, img_id)


@pytest.mark.parametrize("img_id", ["../x.jpg", "a/../../x.jpg", "a//x.jpg", "./x.jpg", "a/..", "/abs/x.jpg", "a/\0"])
def test_subfolder_ids_refuse_dot_parts_and_absolute_paths(tmp_path, img_id):
    with pytest.raises(UnsafeIdError):
        image_path(tmp_path, img_id, subfolders=True)


def test_ids_inside_the_folder_resolve_and_links_out_are_refused(tmp_path):
    root = tmp_path / "img"
    (root / "a1").mkdir(parents=True)
    assert image_path(root, "a1/1001", subfolders=True) == (root / "a1/1001.jpg").resolve()  # suffix added
    assert image_path(root, "x.png") == (root / "x.png").resolve()
    (root / "inner.jpg").symlink_to(root / "a1")  # a link that stays inside is fine
    assert image_path(root, "inner.jpg") == (root / "a1").resolve()
    (root / "out.jpg").symlink_to(tmp_path)
    with pytest.raises(UnsafeIdError, match="outside"):
        image_path(root, "out.jpg")
    (root / "a1/up").symlink_to("..")
    with pytest.raises(UnsafeIdError, match="outside"):  # resolves to the folder itself
        image_path(root, "a1/up", subfolders=True, default_suffix="")


# -- CSV text must be UTF-8


def test_check_utf8_counts_lines_and_accepts_characters_split_across_chunks(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes("IMG_ID,city\n1.jpg,S\u00e3o Paulo\n2.jpg,\u6771\u4eac".encode("utf-8"))  # no final newline
    for chunk in (1, 2, 3, 7, 1 << 20):  # every split point of the multi-byte characters
        assert check_utf8(path, chunk_size=chunk) == 3


@pytest.mark.parametrize("chunk", [1, 2, 5, 1 << 20])
def test_check_utf8_names_the_first_bad_byte(tmp_path, chunk):
    path = tmp_path / "x.csv"
    path.write_bytes("a,b\n\u00e9,1\nx,".encode("utf-8") + b"\xe9t\xe9\n")  # Latin-1 'été' on line 3
    with pytest.raises(CsvEncodingError, match=r"not UTF-8 at byte offset 11 \(line 3\): b'\\xe9'"):
        check_utf8(path, chunk_size=chunk)
    path.write_bytes(b"a,b\nx,\xe2\x82")  # the file ends inside a 3-byte character
    with pytest.raises(CsvEncodingError, match=r"byte offset 6 \(line 2\)"):
        check_utf8(path, chunk_size=chunk)
