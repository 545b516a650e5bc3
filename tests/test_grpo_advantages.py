"""Group-relative advantages, with hand-worked numbers."""

import math

import pytest
import torch

from globe.grpo.advantages import decoupled_advantages, group_advantages


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


def test_group_is_the_older_std():
    rewards = torch.rand(12, generator=torch.Generator().manual_seed(3))
    assert torch.equal(group_advantages(rewards, 4, scale="group")[0], group_advantages(rewards, 4, scale="std")[0])


def test_batch_scale_hand_worked():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    adv, zero = group_advantages(rewards, group_size=4, scale="batch")
    # centred by the GROUP mean (0.25, 0.5): [0.75, -0.25, -0.25, -0.25, 0.5, 0.5, -0.5, -0.5]
    # divided by the BATCH std: mean 3/8, squares 3 * 0.625^2 + 5 * 0.375^2 = 1.875, / 7 -> std 0.517549
    std = math.sqrt(1.875 / 7) + 1e-4
    expected = torch.tensor([0.75, -0.25, -0.25, -0.25, 0.5, 0.5, -0.5, -0.5]) / std
    torch.testing.assert_close(adv, expected, rtol=0, atol=1e-6)
    assert zero.tolist() == [False, False]


def test_decoupled_advantages_keep_head_combinations_apart():
    # G = 2, three groups; group A: geo right once, format never; group B: both right once (same
    # completion); group C: format always right, geo never (no head varies: zero spread)
    heads = {"geo": torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 0.0]), "format": torch.tensor([0.0, 0.0, 1.0, 0.0, 1.0, 1.0])}
    weights = {"geo": 1.0, "format": 1.0}
    a = 0.5 / (math.sqrt(0.5) + 1e-4)  # a head [1, 0] normalised in its group (unbiased std sqrt(0.5))

    # the weighted sum first: totals [1, 0 | 2, 0 | 1, 1] -> A and B collapse to about +-0.707 both
    total = heads["geo"] + heads["format"]
    summed, _ = group_advantages(total, 2)
    b = 1.0 / (math.sqrt(2.0) + 1e-4)
    torch.testing.assert_close(summed, torch.tensor([a, -a, b, -b, 0.0, 0.0]), rtol=0, atol=1e-6)

    # GDPO without the second scaling: per head [a, -a | a, -a | 0, 0] + [0, 0 | a, -a | 0, 0]
    adv, zero = decoupled_advantages(heads, weights, 2, scale="none")
    torch.testing.assert_close(adv, torch.tensor([a, -a, 2 * a, -2 * a, 0.0, 0.0]), rtol=0, atol=1e-6)
    assert zero.tolist() == [False, False, True]
    # with the batch std (GDPO, TRL normalize_then_sum): values [a, -a, 2a, -2a, 0, 0], mean 0,
    # unbiased variance (a^2 + a^2 + 4a^2 + 4a^2) / 5 = 2 a^2 -> divide by a sqrt(2) + 1e-4
    adv, _ = decoupled_advantages(heads, weights, 2, scale="batch")
    s = a * math.sqrt(2.0) + 1e-4
    torch.testing.assert_close(adv, torch.tensor([a / s, -a / s, 2 * a / s, -2 * a / s, 0.0, 0.0]), rtol=0, atol=1e-6)
    # the weights scale each head's normalised advantage: format at 0.5 -> group B [1.5a, -1.5a]
    adv, _ = decoupled_advantages(heads, {"geo": 1.0, "format": 0.5}, 2, scale="none")
    torch.testing.assert_close(adv[2:4], torch.tensor([1.5 * a, -1.5 * a]), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="missing"):
        decoupled_advantages(heads, {"geo": 1.0, "vis": 0.2}, 2)
