"""Read a gallery of coordinates from a CSV (GeoCLIP's ``coordinates_100K.csv``: ``LAT,LON``).

The header must name a latitude column (``LAT`` / ``latitude``) and a longitude column
(``LON`` / ``LNG`` / ``LONG`` / ``longitude``), case-insensitively; other columns are ignored.
A row whose coordinates are not finite numbers in range is an error naming its line (a
gallery is small, curated data: better to stop than to answer with a wrong point).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import torch

__all__ = ["read_gallery_csv", "unique_coordinates"]

_LAT = ("lat", "latitude")
_LON = ("lon", "lng", "long", "longitude")


def _column(header: list[str], names: tuple[str, ...], path: Path) -> int:
    folded = [h.strip().lower() for h in header]
    for name in names:
        if name in folded:
            return folded.index(name)
    raise ValueError(f"{path}: no {'/'.join(names)} column in the header {header}")


def read_gallery_csv(path: str | Path) -> torch.Tensor:
    """``[N, 2]`` float32 (lat, lon) degrees, in file order."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path} is empty")
        i_lat, i_lon = _column(header, _LAT, path), _column(header, _LON, path)
        rows: list[tuple[float, float]] = []
        for line, row in enumerate(reader, start=2):
            try:
                lat, lon = float(row[i_lat]), float(row[i_lon])
            except (IndexError, ValueError):
                raise ValueError(f"{path}:{line}: not a coordinate row: {row[:4]}") from None
            if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValueError(f"{path}:{line}: coordinate out of range: lat={lat}, lon={lon}")
            rows.append((lat, lon))
    if not rows:
        raise ValueError(f"{path} has a header but no coordinates")
    return torch.tensor(rows, dtype=torch.float32)


def unique_coordinates(coordinates: torch.Tensor, decimals: int = 5) -> torch.Tensor:
    """Distinct rows after rounding to ``decimals`` degrees (1e-5 deg ~ 1 m), sorted.

    >>> unique_coordinates(torch.tensor([[1.0, 2.0], [0.0, 0.0], [1.0, 2.000001]])).tolist()
    [[0.0, 0.0], [1.0, 2.0]]
    """
    return torch.unique(torch.round(coordinates, decimals=decimals), dim=0)
