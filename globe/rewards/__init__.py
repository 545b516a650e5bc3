"""GRPO reward heads: each maps a RewardBatch of N completions to scores in [0, 1].

======================  ==========================================  =====================
head (default name)     what it scores                              module
======================  ==========================================  =====================
GeoAccuracyReward geo   country / city correct (or exp(-d / tau))   geo_accuracy
VisualGroundingReward   mentioned visual entities really in the     visual_grounding
  vis                   image (precision; recall options)
LocalizabilityReward    P(localizable | image, reasoning) from a    localizability
  loc                   yes/no VLM reward model, frozen (trained
                        by LocalizabilityTrainer:                   localizability_trainer
                        its LocalizabilityModel)                    localizability_model
FormatReward format     ``<think>..</think><answer>..</answer>``    format
======================  ==========================================  =====================

``combine_rewards(scores, weights)`` forms the total. Heads are imported lazily (the
localizability model pulls in transformers).
"""

from __future__ import annotations

import importlib

from globe.rewards.base import RewardBatch, RewardHead
from globe.rewards.combine import PAPER_TWO_REWARD_WEIGHTS, PAPER_WEIGHTS, combine_rewards

__all__ = [
    "RewardBatch",
    "RewardHead",
    "combine_rewards",
    "PAPER_WEIGHTS",
    "PAPER_TWO_REWARD_WEIGHTS",
    "GeoAccuracyReward",
    "VisualGroundingReward",
    "LocalizabilityReward",
    "FormatReward",
]

_LAZY = {
    "GeoAccuracyReward": "globe.rewards.geo_accuracy",
    "VisualGroundingReward": "globe.rewards.visual_grounding",
    "LocalizabilityReward": "globe.rewards.localizability",
    "FormatReward": "globe.rewards.format",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'globe.rewards' has no attribute {name!r}")
