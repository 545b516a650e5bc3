"""GPS gallery index: build and query time and memory, faiss ``IndexFlatIP`` vs a torch matmul.

For each gallery size N (10^3 .. 10^6, embedding dimension 512) and each backend of
:class:`globe.retrieval.gallery.GPSGallery`, a fresh process (so resident memory is its own):

1. draws the same N random embeddings (seeded) and coordinates, and the same queries;
2. **build**: ``GPSGallery(coordinates, embeddings, backend)`` (normalise; faiss: ``add``) —
   wall time, resident memory held afterwards and the peak during the build, both above the
   resident memory before it (the source embeddings themselves are not counted);
3. **query**: top-k (k = 5) of a batch of Q queries (median of ``--repeats``; per-query time
   reported) and of a single query (latency, median), with the peak resident memory of the
   query phase above the memory before it (``/proc/self/clear_refs`` resets the peak);
4. returns its top-1 indices, so the two backends' answers are compared (``agree``).

Backends and sizes alternate in one run, on the same machine, with the same thread count
(``--threads``, torch and faiss alike). Also measured: encoding a gallery with a GeoCLIP-sized
location encoder (3 branches, 1024 wide), points per second.

    python benchmarks/gallery_index.py [--sizes 1000 10000 100000 1000000] [--dim 512]
        [--queries 256] [--k 5] [--repeats 3] [--threads 2] [--encode 10000] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import time

import torch


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _measure(backend: str, n: int, dim: int, queries: int, k: int, repeats: int, threads: int, out) -> None:
    torch.set_num_threads(threads)
    import faiss

    faiss.omp_set_num_threads(threads)
    from globe.retrieval.gallery import GPSGallery

    g = torch.Generator().manual_seed(n)
    embeddings = torch.randn(n, dim, generator=g)
    coordinates = torch.stack([torch.rand(n, generator=g) * 180 - 90, torch.rand(n, generator=g) * 360 - 180], dim=1)
    q = torch.randn(queries, dim, generator=g)

    before = _rss_bytes()
    peak_ok = _reset_peak()
    t0 = time.perf_counter()
    gallery = GPSGallery(coordinates, embeddings, backend=backend)
    build_s = time.perf_counter() - t0
    held = _rss_bytes() - before
    build_peak = _peak_bytes() - before if peak_ok else None

    gallery.search(q[:1], k)  # warm-up (first-call allocations, thread pool start)
    before_query = _rss_bytes()
    _reset_peak()
    batch_s, single_s = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        hits = gallery.search(q, k)
        batch_s.append(time.perf_counter() - t0)
    for i in range(max(5, repeats)):
        t0 = time.perf_counter()
        gallery.search(q[i:i + 1], k)
        single_s.append(time.perf_counter() - t0)
    query_peak = _peak_bytes() - before_query if peak_ok else None
    out.put({
        "backend": backend, "n": n, "build_s": build_s, "held_mib": held / 2**20,
        "build_peak_mib": None if build_peak is None else build_peak / 2**20,
        "index_mib": gallery.nbytes() / 2**20,
        "batch_s": statistics.median(batch_s), "per_query_ms": 1000 * statistics.median(batch_s) / queries,
        "single_ms": 1000 * statistics.median(single_s),
        "query_peak_mib": None if query_peak is None else query_peak / 2**20,
        "top1": hits.indices[:, 0].tolist(),
    })


def _run(*args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def _encode_rate(n: int, threads: int) -> float:
    from globe.retrieval.location_encoder import LocationEncoder

    torch.set_num_threads(threads)
    enc = LocationEncoder().eval()  # GeoCLIP's sizes
    coords = torch.rand(n, 2) * torch.tensor([180.0, 360.0]) - torch.tensor([90.0, 180.0])
    with torch.no_grad():
        enc(coords[:256])
        t0 = time.perf_counter()
        for i in range(0, n, 4096):
            enc(coords[i:i + 4096])
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000, 1000000])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=256)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--encode", type=int, default=10000, help="points to encode with a GeoCLIP-sized encoder (0: skip)")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args()

    import faiss

    rows = []
    for n in args.sizes:
        pair = {b: _run(b, n, args.dim, args.queries, args.k, args.repeats, args.threads) for b in ("faiss", "matmul")}
        agree = sum(a == b for a, b in zip(pair["faiss"].pop("top1"), pair["matmul"].pop("top1"))) / args.queries
        for backend in ("faiss", "matmul"):
            rows.append({**pair[backend], "agree": agree})
            r = rows[-1]
            print(f"N={n:>8} {backend:>6}: build {r['build_s']:.3f} s, held {r['held_mib']:.0f} MiB "
                  f"(peak {r['build_peak_mib']:.0f}), batch of {args.queries} {r['batch_s']:.3f} s "
                  f"({r['per_query_ms']:.3f} ms/query), single {r['single_ms']:.2f} ms, "
                  f"query peak {r['query_peak_mib']:.0f} MiB, top-1 agreement {agree:.3f}", flush=True)
    encode = _encode_rate(args.encode, args.threads) if args.encode else None
    if encode:
        print(f"GeoCLIP-sized location encoder: {encode:.0f} points/s ({args.threads} threads)")

    print(f"\n| N | backend | build s | held MiB | build peak MiB | {args.queries} queries s | ms / query | 1 query ms | query peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']:,} | {r['backend']} | {r['build_s']:.3f} | {r['held_mib']:.0f} | {r['build_peak_mib']:.0f} | "
              f"{r['batch_s']:.3f} | {r['per_query_ms']:.3f} | {r['single_ms']:.2f} | {r['query_peak_mib']:.0f} |")
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": args.threads,
               "load_average": os.getloadavg(), "torch": torch.__version__, "faiss": faiss.__version__}
    print("\n", machine)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "machine": machine, "rows": rows, "encode_points_per_s": encode}, f, indent=1)


if __name__ == "__main__":
    main()
