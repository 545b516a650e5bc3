"""Generate GeoSynth: deterministic synthetic geo-localization data with real coordinates.

Sample ``i`` of split ``s`` under seed ``seed`` is drawn from ``random.Random("geosynth:
{seed}:{s}:{i}")``: it does not depend on the other sizes, the same seed gives byte-identical
JSON and identical pixels (JPEG bytes too, with the same libjpeg), and another seed gives
other data. Cities are drawn uniformly; ``nonlocalizable_rate`` of the images are close-ups
without any cue (``localizable: false``).

Options, both off by default (and then absent from the manifest, so the default output is
byte for byte what it was before they existed):

* ``layout="districts"``: each city has 2-4 districts a few km apart (:mod:`.districts`); a
  sample is in one of them (drawn uniformly), at its point plus up to 0.25 km of jitter, and
  shows its cues; the JSON adds ``district``, ``district_lat``, ``district_lon`` and
  ``layout``. The default ``layout="cities"`` puts every sample at its city's point.
* ``answer_coordinates=True``: the reasoning's answer ends with ``coordinates: lat, lon``
  (the district's point, or the city's), 4 decimals.

Output layout under ``out``::

    manifest.json                       arguments, counts, shard lists (idempotence check)
    train/train-000000.tar ...          MP16-Reason schema shards ({key}.jpg + {key}.json)
    val/val-000000.tar ...
    test/test-000000.tar ...
    im2gps3k/im2gps3k.csv + images/     the test split again, in IM2GPS3K format

Shards per split: ``max(min_shards, ceil(n / shard_size))`` so that small splits can still
be read by several ranks x workers. Tar members carry a fixed mtime: the tars are
reproducible too.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import webdataset as wds
from PIL import Image

from .cues import ENTITIES
from .districts import LAYOUTS, districts_of, jittered_point
from .drawing import render
from .places import CITIES
from .reasoning import trace
from .scene import Scene, plan_scene

__all__ = ["IM2GPS3K_HEADER", "GeoSynthRecord", "check_layout", "generate_record", "option_args", "write_geosynth"]

IM2GPS3K_HEADER = ("IMG_ID", "AUTHOR", "LAT", "LON", "S3_Label", "S16_Label", "S365_Label",
                   "Prob_indoor", "Prob_natural", "Prob_urban")
FORMAT_VERSION = 1
_JPEG_QUALITY = 90


@dataclass
class GeoSynthRecord:
    key: str
    image: Image.Image
    meta: dict  # the shard JSON

    def jpeg(self) -> bytes:
        buf = io.BytesIO()
        self.image.save(buf, "JPEG", quality=_JPEG_QUALITY)
        return buf.getvalue()

    def json_bytes(self) -> bytes:
        return json.dumps(self.meta, sort_keys=True, ensure_ascii=False).encode("utf-8")


def _scene_label(scene: Scene) -> int:
    """Places365 3-way label as IM2GPS3K's S3_Label: 0 indoor, 1 natural, 2 urban."""
    if scene.kind == "wall":
        return 0
    urban = {"road", "car", "sign"} | {n for n, d in ENTITIES.items() if "house" in n or "roof" in n}
    return 2 if scene.kind == "street" and any(e.name in urban or e.role == "city" for e in scene.elements) else 1


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return layout


def generate_record(
    seed: int, split: str, index: int, size: int = 128, nonlocalizable_rate: float = 0.15,
    layout: str = "cities", answer_coordinates: bool = False,
) -> GeoSynthRecord:
    """One GeoSynth sample, a pure function of its arguments."""
    rng = random.Random(f"geosynth:{seed}:{split}:{index}")
    city = rng.choice(CITIES)
    district = rng.choice(districts_of(city, seed)) if check_layout(layout) == "districts" else None
    localizable = rng.random() >= nonlocalizable_rate
    lat, lon = jittered_point(rng, district) if district is not None else (city.lat, city.lon)
    scene = plan_scene(rng, city, localizable, district)
    image = render(scene, size, rng)
    answer_point = None
    if answer_coordinates:
        answer_point = (district.lat, district.lon) if district is not None else (city.lat, city.lon)
    meta = {
        "lat": lat,
        "lon": lon,
        "country": city.country.name,
        "city": city.name,
        "localizable": localizable,
        "reasoning": trace(scene, rng, answer_point),
        "entities": scene.names(),
        "country_code": city.country.code,
        "geonameid": city.geonameid,
        "scene": scene.kind,
        "s3_label": _scene_label(scene),
        "source": f"geosynth-v{FORMAT_VERSION}",
        "seed": seed,
        "split": split,
        "index": index,
    }
    if district is not None:
        meta.update({"layout": layout, "district": district.name, "district_lat": district.lat, "district_lon": district.lon})
    return GeoSynthRecord(f"{split}-{index:06d}", image, meta)


def option_args(layout: str = "cities", answer_coordinates: bool = False) -> dict:
    """The generation options that differ from the defaults (the manifest records only those)."""
    out: dict = {}
    if check_layout(layout) != "cities":
        out["layout"] = layout
    if answer_coordinates:
        out["answer_coordinates"] = True
    return out


def _write_split(out: Path, split: str, n: int, seed: int, size: int, shard_size: int, min_shards: int,
                 nonlocalizable_rate: float, folder: Path | None = None, options: dict | None = None,
                 ) -> tuple[list[str], list[GeoSynthRecord] | None]:
    """Write one split's shards; returns shard file names (and the records, for the test set)."""
    split_dir = out / split
    split_dir.mkdir(parents=True, exist_ok=True)
    num_shards = max(min_shards, math.ceil(n / shard_size)) if n else 0
    per_shard = math.ceil(n / num_shards) if n else 0
    names, rows = [], []
    for s in range(num_shards):
        name = f"{split}-{s:06d}.tar"
        with wds.TarWriter(str(split_dir / name), mtime=0) as sink:
            for i in range(s * per_shard, min(n, (s + 1) * per_shard)):
                rec = generate_record(seed, split, i, size, nonlocalizable_rate, **(options or {}))
                jpg = rec.jpeg()
                sink.write({"__key__": rec.key, "jpg": jpg, "json": rec.json_bytes()})
                if folder is not None:
                    (folder / f"{rec.key}.jpg").write_bytes(jpg)
                    rows.append(rec.meta | {"key": rec.key})
        names.append(name)
    return names, rows


def write_geosynth(
    out: str | Path,
    train: int = 2000,
    val: int = 200,
    test: int = 300,
    seed: int = 0,
    size: int = 128,
    shard_size: int = 250,
    min_shards: int = 4,
    nonlocalizable_rate: float = 0.15,
    layout: str = "cities",
    answer_coordinates: bool = False,
) -> dict:
    """Generate all splits under ``out``; returns (and writes) the manifest."""
    options = option_args(layout, answer_coordinates)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    args = {"train": train, "val": val, "test": test, "seed": seed, "size": size, "shard_size": shard_size,
            "min_shards": min_shards, "nonlocalizable_rate": nonlocalizable_rate, "version": FORMAT_VERSION, **options}
    shards = {}
    for split, n in (("train", train), ("val", val)):
        shards[split], _ = _write_split(out, split, n, seed, size, shard_size, min_shards, nonlocalizable_rate, None, options)
    images = out / "im2gps3k" / "images"
    images.mkdir(parents=True, exist_ok=True)
    shards["test"], rows = _write_split(out, "test", test, seed, size, shard_size, min_shards, nonlocalizable_rate, images,
                                        options)
    with open(out / "im2gps3k" / "im2gps3k.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(IM2GPS3K_HEADER)
        for r in rows or []:
            label = r["s3_label"]
            probs = [0.8 if label == k else 0.1 for k in range(3)]  # synthetic, one-hot-ish
            writer.writerow([f"{r['key']}.jpg", "geosynth", r["lat"], r["lon"], label, -1, -1, *probs])
    manifest = {"args": args, "shards": shards, "counts": {"train": train, "val": val, "test": test},
                "im2gps3k": {"csv": "im2gps3k/im2gps3k.csv", "images": "im2gps3k/images"}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest
