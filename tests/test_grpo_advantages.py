"""Group-relative advantages, with hand-worked numbers."""

import math

import pytest
import torch

from globe.grpo.advantages import group_advantages


def test_group_advantages_hand_worked():
    # three prompts, G = 4
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5, 1.0, 1.0, 0.0, 0.0])
    adv, zero = group_advantages(rewards, group_size=4)
    # group 1: mean 0.25, deviations [0.75, -0.25, -0.25, -0.25],
    # unbiased variance (0.5625 + 3 * 0.0625) / 3 = 0.25 -> std 0.5 -> divide by 0.5001
    g1 = [0.75 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001]
    # group 2: every reward equal -> exactly 0 and counted as zero-spread
    g2 = [0.0] * 4
    # group 3: mean 0.5, deviations +-0.5, unbiased variance 1/3 -> std 0.57735
    s3 = math.sqrt(1 / 3) + 1e-4
    g3 = [0.5 / s3, 0.5 / s3, -0.5 / s3, -0.5 / s3]
    torch.testing.assert_close(adv, torch.tensor(g1 + g2 + g3), rtol=0, atol=1e-6)
    assert zero.tolist() == [False, True, False]
    assert adv.shape == (12,)


def test_std_is_unbiased():
    # G = 2, rewards [1, 0]: biased std would be 0.5 (A = 1.0), unbiased is sqrt(0.5) (A = 0.7070)
    adv, _ = group_advantages(torch.tensor([1.0, 0.0]), group_size=2)
    assert adv[0].item() == pytest.approx(0.5 / (math.sqrt(0.5) + 1e-4), abs=1e-6)


def test_zero_spread_is_exactly_zero():
    # 0.1 * 3 has no exact float mean; the advantage must still be exactly 0, not ~1e-8
    adv, zero = group_advantages(torch.tensor([0.1, 0.1, 0.1, 0.7, 0.7, 0.7]), group_size=3)
    assert torch.equal(adv, torch.zeros(6))
    assert zero.tolist() == [True, True]


def test_scale_none_only_centres():
    adv, _ = group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), group_size=4, scale="none")
    torch.testing.assert_close(adv, torch.tensor([0.75, -0.25, -0.25, -0.25]))


def test_group_of_one_has_no_signal():
    adv, zero = group_advantages(torch.tensor([0.3, 1.0]), group_size=1)
    assert torch.equal(adv, torch.zeros(2)) and zero.all()


def test_advantages_sum_to_zero_per_group():
    rewards = torch.rand(8 * 16, generator=torch.Generator().manual_seed(0))
    adv, _ = group_advantages(rewards, group_size=16)
    torch.testing.assert_close(adv.view(8, 16).sum(1), torch.zeros(8), rtol=0, atol=1e-5)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="multiple of group_size"):
        group_advantages(torch.zeros(5), group_size=2)
    with pytest.raises(ValueError, match="scale"):
        group_advantages(torch.zeros(4), group_size=2, scale="mad")
