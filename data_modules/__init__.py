"""GLOBE data modules: every one yields batches as ``list[GeoSample]``."""

from .data_stats import BadDataError, DataStats
from .geosynth import GeoSynth
from .im2gps3k import IM2GPS3K
from .mp16_reason import MP16Reason
from .sample import GeoSample
from .shard_split import TooFewShardsError

__all__ = ["BadDataError", "DataStats", "GeoSample", "GeoSynth", "IM2GPS3K", "MP16Reason", "TooFewShardsError"]
