"""A reward for tests of dynamic sampling: 0 or 1 by a hash of (sample key, completion text), so a
random tiny model's groups (whose real rewards are all 0) are informative about half the time
(G = 2), deterministically. Loaded by ``cli.py`` runs with ``PYTHONPATH=tests``."""

from __future__ import annotations

import zlib

from data_modules.sample import GeoSample
from globe.rewards.base import CompletionRewardHead

# the override of model.init_args.rewards / reward_weights that makes a run score with it
CLI_ARGS = (
    "--model.init_args.rewards=[{class_path: spread_reward.CoinReward, init_args: {name: coin}}]",
    "--model.init_args.reward_weights={coin: 1.0}",
)


class CoinReward(CompletionRewardHead):
    """``crc32(key + completion) & 1``.

    >>> sample = GeoSample(key="k", image=None, lat=0.0, lon=0.0, country="", city="")
    >>> [CoinReward().score_one(text, sample) for text in ("abc", "abd")]
    [1.0, 0.0]
    """

    name = "coin"

    def score_one(self, completion: str, sample: GeoSample) -> float:
        return float(zlib.crc32(f"{sample.key}\n{completion}".encode()) & 1)
