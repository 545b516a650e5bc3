"""``python -m data_modules.geosynth --out DIR --train 2000 --val 200 --test 300 --seed 0 [--layout districts] [--answer-coordinates]``"""

from __future__ import annotations

import argparse
import json
import time

from .districts import LAYOUTS
from .generate import write_geosynth


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m data_modules.geosynth",
                                     description="Generate the GeoSynth data set (shards + IM2GPS3K-format test set).")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--train", type=int, default=2000, help="training images")
    parser.add_argument("--val", type=int, default=200, help="validation images")
    parser.add_argument("--test", type=int, default=300, help="test images (also written in IM2GPS3K format)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--shard-size", type=int, default=250, help="images per shard")
    parser.add_argument("--min-shards", type=int, default=4, help="shards per split at least")
    parser.add_argument("--nonlocalizable-rate", type=float, default=0.15)
    parser.add_argument("--layout", choices=LAYOUTS, default="cities",
                        help="cities: every sample at its city's point; districts: 2-4 districts per city, a few km apart")
    parser.add_argument("--answer-coordinates", action="store_true",
                        help="end the reasoning's answer with a coordinates: lat, lon line")
    a = parser.parse_args(argv)
    start = time.perf_counter()
    manifest = write_geosynth(a.out, a.train, a.val, a.test, a.seed, a.size, a.shard_size, a.min_shards,
                              a.nonlocalizable_rate, a.layout, a.answer_coordinates)
    shards = {k: len(v) for k, v in manifest["shards"].items()}
    print(json.dumps({"out": a.out, "counts": manifest["counts"], "shards": shards,
                      "seconds": round(time.perf_counter() - start, 2)}))
    return manifest


if __name__ == "__main__":
    main()
