"""R_format: 1 when the completion is exactly ``<think>...</think>`` then ``<answer>...</answer>``.

Whitespace is allowed around and between the two blocks; anything else outside them (text
before ``<think>``, after ``</answer>``, a second block, a missing or truncated tag) scores 0.
The test is :func:`globe.answer.parse_answer`'s ``well_formed`` flag, the project's single
definition of the answer format. The paper's code uses the regex
``^<think>.*?</think>\\s*<answer>.*?</answer>(?![\\s\\S])``, which also rejects leading or
trailing whitespace; a sampled trailing newline is not worth a zero here.
"""

from __future__ import annotations

from globe.answer import parse_answer
from globe.rewards.base import CompletionRewardHead
from globe.sample import GeoSample

__all__ = ["FormatReward"]


class FormatReward(CompletionRewardHead):
    """1.0 for a well-formed ``<think>..</think><answer>..</answer>`` completion, else 0.0.

    Args:
        name: key of the head in scores, weights and logs.
    """

    name = "format"

    def __init__(self, name: str = "format") -> None:
        super().__init__(name=name)

    def score_one(self, completion: str, sample: GeoSample) -> float:
        return 1.0 if parse_answer(completion).well_formed else 0.0
