"""Geocoding ceiling on IM2GPS3K: the best accuracy a name-predicting model can reach.

For each of the 2,997 IM2GPS3K ground-truth points: reverse-geocode it to a city, then score
that city / country *name* through the forward geocoder, exactly as a model's answer would be
scored. Reported per GeoNames city set (cities with 500+ / 1k+ / 5k+ / 15k+ people), with the
index build and load times, for both reverse rules (nearest populated place, the city the
point is in), plus the country-only ceiling (answering only the right country) for both
country points (capital, population medoid).

    python benchmarks/geocoding_ceiling.py [--csv PATH] [--sets 500 1000 5000 15000]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from globe.geo.gazetteer import Gazetteer, default_cache_dir
from globe.metrics import GeoAccuracy

DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "im2gps3k_places365.csv"


def _score(places, lat, lon) -> dict:
    m = GeoAccuracy()
    plat = torch.tensor([p.lat if p else float("nan") for p in places], dtype=torch.float64)
    plon = torch.tensor([p.lon if p else float("nan") for p in places], dtype=torch.float64)
    m.update(plat, plon, torch.from_numpy(lat), torch.from_numpy(lon))
    return {k: float(v) for k, v in m.compute().items()}


def _row(label: str, r: dict) -> str:
    accs = " | ".join(f"{100 * r[k]:5.1f}" for k in ("acc@1km", "acc@25km", "acc@200km", "acc@750km", "acc@2500km"))
    return f"| {label} | {accs} | {r['median_km']:.1f} | {int(r['n_unresolved'])} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", default=str(DEFAULT_CSV))
    ap.add_argument("--sets", type=int, nargs="+", default=[500, 1000, 5000, 15000])
    ap.add_argument("--cold-build", action="store_true", help="time a fresh index build in a temp dir")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with open(args.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    lat = np.array([float(r["LAT"]) for r in rows])
    lon = np.array([float(r["LON"]) for r in rows])
    print(f"{len(rows)} IM2GPS3K points from {args.csv}\n")
    header = "| | acc@1km | @25km | @200km | @750km | @2500km | median km | unresolved |\n|---|---|---|---|---|---|---|---|"
    lines = [header]
    timing = ["| city set | cities | build s | load s | reverse 2,997 pts s | forward 2,997 names s |", "|---|---|---|---|---|---|"]
    for mp in args.sets:
        if args.cold_build or not Gazetteer.cache_path(None, mp).exists():
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                Gazetteer.load(tmp, mp)
                build_s = time.perf_counter() - t0
        else:
            build_s = float("nan")
        Gazetteer.load(None, mp)  # make sure the default cache exists
        t0 = time.perf_counter()
        gaz = Gazetteer.load(None, mp)
        load_s = time.perf_counter() - t0
        for rule in ("city", "nearest"):
            t0 = time.perf_counter()
            rev = gaz.reverse_many(lat, lon, rule=rule)
            rev_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            fwd = gaz.geocode_many([(p.name, p.country_name) for p in rev])
            fwd_s = time.perf_counter() - t0
            lines.append(_row(f"cities{mp}, reverse rule={rule}, city + country names", _score(fwd, lat, lon)))
            if rule == "city":
                # the same, with the US state written after the city ("Roseville, CA")
                rows_ = gaz.reverse_indices(lat, lon, rule=rule)
                named = [
                    (f"{p.name}, {gaz.admin1_code(int(i))}" if p.country_code == "US" else p.name, p.country_name)
                    for p, i in zip(rev, rows_)
                ]
                lines.append(_row(f"cities{mp}, reverse rule=city, city (+ US state) + country names", _score(gaz.geocode_many(named), lat, lon)))
            if rule == "city":
                timing.append(f"| cities{mp} | {len(gaz):,} | {build_s:.1f} | {load_s:.2f} | {rev_s:.2f} | {fwd_s:.2f} |")
                oracle = _score(rev, lat, lon)
                lines.append(_row(f"cities{mp}, reverse rule=city, coordinates of that city (no name step)", oracle))
        for point in ("capital", "medoid"):
            g2 = Gazetteer.load(None, mp, country_point=point)
            countries = g2.geocode_many([(None, p.country_name) for p in rev])
            lines.append(_row(f"cities{mp}, country name only, country point={point}", _score(countries, lat, lon)))
        print("\n".join(lines[-6:]), flush=True)
    print("\n" + "\n".join(timing))
    print("\n" + "\n".join(lines))
    print(f"\n(cache dir: {default_cache_dir()}; build s = NaN when the cache already existed and --cold-build was not given)")


if __name__ == "__main__":
    main()
