"""Geo-localisation accuracy as a torchmetrics ``Metric`` (distributed-safe).

For each prediction the great-circle distance (haversine, R = 6371.0088 km; see
:mod:`globe.geo.distance`) to the ground truth is stored; ``compute`` returns

* ``acc@{t}km`` — fraction of *all* samples within t km, for each threshold (default 1, 25,
  200, 750, 2500 km, the IM2GPS street / city / region / country / continent levels);
* ``median_km`` — median distance over *all* samples: an unresolved prediction (NaN
  coordinate: the answer could not be parsed or geocoded) counts as +inf, so it is a miss at
  every threshold and pushes the median up instead of being dropped (the median is +inf when
  more than half are unresolved). For an even count it is the mean of the two middle values;
* ``country_acc`` / ``city_acc`` — mean of the boolean tensors passed to ``update``; the keys
  are NaN when those were never given (averaged over the samples they were given for);
* ``n`` (samples), ``n_unresolved`` (NaN predictions).

Distances are kept as a list state reduced with ``cat`` so the median is exact after
``sync`` across processes; counters are ``sum`` states.
"""

from __future__ import annotations

import math

from typing import Sequence

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from globe.geo.distance import great_circle_km

__all__ = ["GeoAccuracy", "threshold_key", "median_with_inf"]


def threshold_key(t: float) -> str:
    """'acc@25km' for 25, 'acc@0.5km' for 0.5."""
    return f"acc@{int(t) if float(t).is_integer() else t}km"


def median_with_inf(d: torch.Tensor) -> torch.Tensor:
    """Median of a 1-D tensor that may hold +inf; mean of the two middle values if even.

    >>> median_with_inf(torch.tensor([3.0, 1.0, float("inf"), 2.0])).item()
    2.5
    """
    if d.numel() == 0:
        return torch.tensor(float("nan"), dtype=torch.float64)
    s, _ = torch.sort(d.to(torch.float64))
    n = s.numel()
    if n % 2:
        return s[n // 2]
    return (s[n // 2 - 1] + s[n // 2]) / 2


class GeoAccuracy(Metric):
    """Accuracy within distance thresholds, median error, country/city accuracy."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, thresholds_km: Sequence[float] = (1, 25, 200, 750, 2500), **kwargs) -> None:
        super().__init__(**kwargs)
        self.thresholds_km = tuple(float(t) for t in thresholds_km)
        bad = [t for t in self.thresholds_km if not (math.isfinite(t) and t > 0)]
        if bad or not self.thresholds_km:
            # an infinite threshold would count unresolved predictions (distance +inf) as hits
            raise ValueError(f"thresholds_km must be positive finite distances, got {tuple(thresholds_km)}")
        self.add_state("dist_km", default=[], dist_reduce_fx="cat")
        for name in ("country_correct", "country_total", "city_correct", "city_total"):
            self.add_state(name, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self,
        pred_lat: torch.Tensor,
        pred_lon: torch.Tensor,
        true_lat: torch.Tensor,
        true_lon: torch.Tensor,
        country_ok: torch.Tensor | None = None,
        city_ok: torch.Tensor | None = None,
    ) -> None:
        """Add a batch; NaN in ``pred_lat`` or ``pred_lon`` marks an unresolved prediction."""
        d = great_circle_km(pred_lat, pred_lon, true_lat, true_lon).reshape(-1)
        d = torch.where(torch.isnan(d), torch.full_like(d, float("inf")), d)
        self.dist_km.append(d.to(self.device))
        if country_ok is not None:
            ok = torch.as_tensor(country_ok, device=self.device).reshape(-1)
            self.country_correct += ok.sum().long()
            self.country_total += ok.numel()
        if city_ok is not None:
            ok = torch.as_tensor(city_ok, device=self.device).reshape(-1)
            self.city_correct += ok.sum().long()
            self.city_total += ok.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        d = dim_zero_cat(self.dist_km) if len(self.dist_km) else torch.zeros(0, dtype=torch.float64)
        if isinstance(d, list):  # pragma: no cover - empty state after sync
            d = torch.zeros(0, dtype=torch.float64)
        n = d.numel()
        out: dict[str, torch.Tensor] = {}
        for t in self.thresholds_km:
            out[threshold_key(t)] = (d <= t).double().mean() if n else torch.tensor(float("nan"), dtype=torch.float64)
        out["median_km"] = median_with_inf(d)
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        out["country_acc"] = self.country_correct.double() / self.country_total if self.country_total > 0 else nan
        out["city_acc"] = self.city_correct.double() / self.city_total if self.city_total > 0 else nan
        out["n"] = torch.tensor(n)
        out["n_unresolved"] = torch.isinf(d).sum()
        return out
