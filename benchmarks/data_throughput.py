"""Samples per second: WebDataset shards vs an image folder, same images, same decode.

    python benchmarks/data_throughput.py [--n 2000] [--workers 1 2] [--repeats 3] [--root DIR]

Generates ``n`` GeoSynth images once (written both as shards and, via the IM2GPS3K-format
copy, as one JPEG file per image plus a CSV), then times full passes of

* ``shards``: ``MP16Reason`` test loader (tar streaming + JSON parsing + JPEG decode), and
* ``folder``: ``IM2GPS3K`` loader over the CSV + folder (one file open per image + JPEG decode),

for each DataLoader worker count. Both yield the same ``list[GeoSample]`` batches with fully
decoded RGB images (``decode.decode_image``). Time = wall clock of one complete pass,
worker start-up included; the median of ``repeats`` passes is reported, modes interleaved so
that both see the same machine load. Files are in the page cache (second and later passes):
this measures the per-sample overhead of the two layouts, not cold disk reads.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from data_modules import IM2GPS3K, MP16Reason
from data_modules.geosynth import write_geosynth


def _pass(loader) -> tuple[int, float]:
    start = time.perf_counter()
    n = sum(len(batch) for batch in loader)
    return n, time.perf_counter() - start


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="images")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=250)
    parser.add_argument("--root", default=None, help="where to generate (default: a temporary directory)")
    a = parser.parse_args(argv)
    torch.set_num_threads(1)
    root = Path(a.root or tempfile.mkdtemp(prefix="geosynth-bench-"))
    t0 = time.perf_counter()
    manifest = write_geosynth(root, train=0, val=0, test=a.n, seed=0, shard_size=a.shard_size, min_shards=max(a.workers))
    print(f"generated {a.n} images in {time.perf_counter() - t0:.1f} s under {root}: "
          f"{len(manifest['shards']['test'])} shards + {a.n} files")
    shards = [str(root / "test" / s) for s in manifest["shards"]["test"]]
    results = []
    for workers in a.workers:
        loaders = {
            "shards": lambda: MP16Reason(test_shards=shards, batch_size=a.batch_size, num_workers=workers).test_dataloader(),
            "folder": lambda: IM2GPS3K(csv_path=str(root / "im2gps3k/im2gps3k.csv"), images=str(root / "im2gps3k/images"),
                                       batch_size=a.batch_size, num_workers=workers).test_dataloader(),
        }
        for mode in loaders:  # warm-up pass: page cache, imports
            _pass(loaders[mode]())
        times: dict[str, list[float]] = {m: [] for m in loaders}
        for _ in range(a.repeats):
            for mode, make in loaders.items():
                n, seconds = _pass(make())
                assert n == a.n, (mode, n)
                times[mode].append(seconds)
        for mode, ts in times.items():
            med = statistics.median(ts)
            results.append({"mode": mode, "workers": workers, "seconds": med, "samples_per_s": a.n / med})
    print(f"\n{a.n} GeoSynth images ({manifest['args']['size']}px JPEG), batch {a.batch_size}, "
          f"median of {a.repeats} passes, {os.cpu_count()} CPUs\n")
    print("| source | workers | s / pass | samples / s |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r['mode']} | {r['workers']} | {r['seconds']:.2f} | {r['samples_per_s']:.0f} |")
    return results


if __name__ == "__main__":
    main()
