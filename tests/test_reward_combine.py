"""combine_rewards: the weighted sum of the reward heads (their docstring examples run in test_docstring_examples)."""

from __future__ import annotations


import pytest
import torch

from globe.rewards.combine import PAPER_TWO_REWARD_WEIGHTS, PAPER_WEIGHTS, combine_rewards


def test_paper_weighted_sum_hand_worked():
    scores = {
        "geo": torch.tensor([1.0, 0.2, 0.0]),
        "loc": torch.tensor([0.8, 0.5, 0.1]),
        "vis": torch.tensor([0.5, 1.0, 0.0]),
        "format": torch.tensor([1.0, 1.0, 0.0]),
    }
    # row 0: 1.0 + 0.5*0.8 + 0.2*0.5 + 1.0 = 2.5 ; row 1: 0.2 + 0.25 + 0.2 + 1.0 = 1.65 ; row 2: 0.05
    assert combine_rewards(scores, PAPER_WEIGHTS).tolist() == pytest.approx([2.5, 1.65, 0.05])
    # two-reward setting: acc 1.0, vis 0.5, format 1.0 (loc scored but unweighted: logged only)
    assert combine_rewards(scores, PAPER_TWO_REWARD_WEIGHTS).tolist() == pytest.approx([2.25, 1.7, 0.0])


def test_zero_weight_and_missing_scores():
    s = {"geo": torch.tensor([1.0, 0.0])}
    assert combine_rewards(s, {"geo": 2.0, "loc": 0.0}).tolist() == [2.0, 0.0]  # a zero weight needs no score
    with pytest.raises(KeyError, match="loc"):
        combine_rewards(s, {"geo": 1.0, "loc": 0.5})
    with pytest.raises(ValueError, match="same length"):
        combine_rewards({"geo": torch.ones(2), "vis": torch.ones(3)}, {"geo": 1.0, "vis": 1.0})
    with pytest.raises(ValueError):
        combine_rewards({}, {})


def test_output_is_float32_on_the_scores_device():
    out = combine_rewards({"a": torch.tensor([1, 0], dtype=torch.float64)}, {"a": 0.5})
    assert out.dtype == torch.float32 and out.tolist() == [0.5, 0.0]
