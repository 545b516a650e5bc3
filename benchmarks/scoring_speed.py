"""Scoring speed: 12,000 raw answers (pred_text) end to end, vectorised vs a per-row loop.

Both paths start from the same in-memory rows, after the gazetteer index is loaded, with
the name-folding and value-cleaning memo caches cleared before every run:

* ``score_predictions`` (globe.score): parse each distinct text once, geocode each distinct
  (city, country) pair once, one vectorised haversine over all rows, GeoAccuracy;
* the straightforward loop: for each row parse_answer -> Gazetteer.geocode -> geographiclib
  geodesic, then threshold counts and statistics.median.

Inputs: the 2,997 IM2GPS3K points repeated to 12,000, each reverse-geocoded to its city and
written as an answer the way models vary it (well-formed, markdown, aliases, wrong city in
the right country, country only, unparseable). Also measures how far the haversine used by
the vectorised path is from the exact geodesic, on these pairs and on random pairs.

    python benchmarks/scoring_speed.py [--n 12000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from globe.answer import _clean, format_answer, parse_answer
from globe.geo.distance import geodesic_km, great_circle_km
from globe.geo.gazetteer import Gazetteer
from globe.geo.text import fold
from globe.score import DEFAULT_THRESHOLDS_KM, score_predictions

DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "im2gps3k_places365.csv"
ALIASES = {"United States": "USA", "United Kingdom": "UK", "Russia": "Russian Federation", "Czechia": "Czech Republic"}


def make_rows(gaz: Gazetteer, csv_path: str, n: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    with open(csv_path, newline="") as f:
        base = list(csv.DictReader(f))
    rng = random.Random(seed)
    lat = np.array([float(r["LAT"]) for r in base])
    lon = np.array([float(r["LON"]) for r in base])
    places = gaz.reverse_many(lat, lon)
    gt, preds = [], []
    for i in range(n):
        j = i % len(base)
        p = places[j]
        key = f"{i:05d}_{base[j]['IMG_ID']}"
        gt.append({"IMG_ID": key, "LAT": base[j]["LAT"], "LON": base[j]["LON"]})
        country, city = ALIASES.get(p.country_name, p.country_name), p.name
        u = rng.random()
        if u < 0.10:  # another city of the same country
            others = gaz.cities(p.country_code, 50_000) or [p]
            city = rng.choice(others).name
        elif u < 0.15:  # country only
            city = "unknown"
        elif u < 0.20:  # unparseable
            preds.append({"IMG_ID": key, "pred_text": "I cannot determine the location of this image."})
            continue
        think = f"Observation {i}: the architecture, vegetation and signage suggest this region."
        style = rng.random()
        if style < 0.6:
            text = format_answer(think, country, city)
        elif style < 0.8:
            text = f"<think>{think}</think>\n<answer>\n**Country:** {country}\n**City:** {city}.\n</answer>"
        else:
            text = f"{think}\n\nCountry - {country}\nCity - {city}"
        preds.append({"IMG_ID": key, "pred_text": text})
    return preds, gt


def loop_score(preds: list[dict], gt: list[dict], gaz: Gazetteer, thresholds=DEFAULT_THRESHOLDS_KM) -> dict:
    """The per-row baseline: parse, geocode, geographiclib distance, count."""
    truth = {r["IMG_ID"]: (float(r["LAT"]), float(r["LON"])) for r in gt}
    dists = []
    seen = set()
    for r in preds:
        seen.add(r["IMG_ID"])
        a = parse_answer(r["pred_text"])
        p = gaz.geocode(a.city, a.country)
        if p is None:
            dists.append(float("inf"))
            continue
        tl, to = truth[r["IMG_ID"]]
        dists.append(geodesic_km(p.lat, p.lon, tl, to))
    dists += [float("inf")] * (len(truth) - len(seen))
    out = {f"acc@{t}km": sum(d <= t for d in dists) / len(dists) for t in thresholds}
    out["median_km"] = statistics.median(dists)
    out["n_unresolved"] = sum(d == float("inf") for d in dists)
    return out


def _best(fn, repeat: int) -> tuple[float, dict]:
    times, res = [], None
    for _ in range(repeat):
        fold.cache_clear()  # every run starts with cold memo caches (both paths use them)
        _clean.cache_clear()
        t0 = time.perf_counter()
        res = fn()
        times.append(time.perf_counter() - t0)
    return min(times), res


def distance_gap(n_random: int = 20000, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    # uniform on the sphere: lat = asin(u), u ~ U(-1, 1)
    la1, la2 = (torch.rad2deg(torch.asin(torch.rand(n_random, generator=g, dtype=torch.float64) * 2 - 1)) for _ in range(2))
    lo1, lo2 = (torch.rand(n_random, generator=g, dtype=torch.float64) * 360 - 180 for _ in range(2))
    gc = great_circle_km(la1, lo1, la2, lo2)
    ex = torch.tensor([geodesic_km(a, b, c, d) for a, b, c, d in zip(la1.tolist(), lo1.tolist(), la2.tolist(), lo2.tolist())], dtype=torch.float64)
    rel = (gc - ex) / ex
    t0 = time.perf_counter()
    great_circle_km(la1, lo1, la2, lo2)
    t_gc = time.perf_counter() - t0
    t0 = time.perf_counter()
    for a, b, c, d in zip(la1.tolist()[:5000], lo1.tolist()[:5000], la2.tolist()[:5000], lo2.tolist()[:5000]):
        geodesic_km(a, b, c, d)
    t_geo = (time.perf_counter() - t0) / 5000 * n_random
    return {
        "pairs": n_random,
        "max_abs_rel": rel.abs().max().item(),
        "mean_abs_rel": rel.abs().mean().item(),
        "min_rel": rel.min().item(),
        "max_rel": rel.max().item(),
        "max_abs_km": (gc - ex).abs().max().item(),
        "t_great_circle_s": t_gc,
        "t_geodesic_s": t_geo,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", default=str(DEFAULT_CSV))
    ap.add_argument("--n", type=int, default=12000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    gaz = Gazetteer.load()
    print(f"gazetteer load: {time.perf_counter() - t0:.2f} s ({gaz.source}, {len(gaz):,} cities)")
    preds, gt = make_rows(gaz, args.csv, args.n)
    print(f"{len(preds):,} predictions for {len(gt):,} ground-truth rows\n")

    t_vec, r_vec = _best(lambda: score_predictions(preds, gt, gaz), args.repeat)
    t_loop, r_loop = _best(lambda: loop_score(preds, gt, gaz), args.repeat)
    print("| path | time s (best of %d) | per row us | acc@1km | @25km | @200km | @750km | @2500km | median km |" % args.repeat)
    print("|---|---|---|---|---|---|---|---|---|")
    for name, t, r in (("score_predictions (vectorised)", t_vec, r_vec), ("per-row loop (geographiclib)", t_loop, r_loop)):
        accs = " | ".join(f"{100 * r[f'acc@{k}km']:.2f}" for k in DEFAULT_THRESHOLDS_KM)
        print(f"| {name} | {t:.3f} | {1e6 * t / len(gt):.1f} | {accs} | {r['median_km']:.2f} |")
    print(f"\nspeed-up: {t_loop / t_vec:.1f}x; unresolved: {r_vec['n_unresolved']} vs {r_loop['n_unresolved']}")

    # how the vectorised haversine differs from the geodesic on these very pairs
    plat, plon, tlat, tlon = [], [], [], []
    truth = {r["IMG_ID"]: (float(r["LAT"]), float(r["LON"])) for r in gt}
    for r in preds:
        a = parse_answer(r["pred_text"])
        p = gaz.geocode(a.city, a.country)
        if p is not None and (p.lat, p.lon) != truth[r["IMG_ID"]]:
            plat.append(p.lat), plon.append(p.lon), tlat.append(truth[r["IMG_ID"]][0]), tlon.append(truth[r["IMG_ID"]][1])
    gc = great_circle_km(plat, plon, tlat, tlon)
    ex = torch.tensor([geodesic_km(*q) for q in zip(plat, plon, tlat, tlon)], dtype=torch.float64)
    flips = {t: int(((gc <= t) != (ex <= t)).sum()) for t in DEFAULT_THRESHOLDS_KM}
    print(f"\non the {len(ex):,} resolved pairs: max |haversine - geodesic| / geodesic = {((gc - ex).abs() / ex).max().item():.4%}; "
          f"threshold decisions that differ: {flips}")
    gap = distance_gap()
    print(f"random pairs uniform on the sphere ({gap['pairs']:,}): max |rel| {gap['max_abs_rel']:.4%}, mean |rel| {gap['mean_abs_rel']:.4%}, "
          f"rel range [{gap['min_rel']:.4%}, {gap['max_rel']:.4%}], max |diff| {gap['max_abs_km']:.2f} km; "
          f"time: haversine (torch, all pairs) {gap['t_great_circle_s'] * 1e3:.1f} ms vs geographiclib ~{gap['t_geodesic_s']:.2f} s")


if __name__ == "__main__":
    main()
