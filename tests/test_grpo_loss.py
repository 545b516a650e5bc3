"""GRPO loss terms with hand-worked numbers, and the multi-pass (old log-prob) behaviour."""

import math

import pytest
import torch

from globe.grpo.loss import aggregate, clipped_surrogate, grpo_loss, k3_kl, truncated_is_weights

LN = math.log


def test_ratio_one_gives_minus_advantage():
    logp = torch.log(torch.tensor([[0.5, 0.25], [0.1, 0.9]]))
    s = clipped_surrogate(logp, logp.clone(), torch.tensor([2.0, -1.0]))
    # ratio will be [[1, 1], [1, 1]]; loss = -A per token
    torch.testing.assert_close(s.ratio, torch.ones(2, 2))
    torch.testing.assert_close(s.loss, torch.tensor([[-2.0, -2.0], [1.0, 1.0]]))
    assert not s.clipped_low.any() and not s.clipped_high.any()


def test_clipping_hand_worked():
    old = torch.zeros(2, 3)
    logp = torch.tensor([[LN(1.5), LN(0.5), 0.0]] * 2)
    s = clipped_surrogate(logp, old, torch.tensor([1.0, -1.0]), eps_low=0.2)
    # ratio will be [1.5, 0.5, 1.0] in both rows
    # A = +1: min(1.5, 1.2) = 1.2 (clipped high); min(0.5, 0.8) = 0.5 (not clipped: pessimistic branch)
    # A = -1: min(-1.5, -1.2) = -1.5 (not clipped); min(-0.5, -0.8) = -0.8 (clipped low)
    torch.testing.assert_close(s.loss, torch.tensor([[-1.2, -0.5, -1.0], [1.5, 0.8, 1.0]]))
    assert s.clipped_high.tolist() == [[True, False, False], [False, False, False]]
    assert s.clipped_low.tolist() == [[False, False, False], [False, True, False]]


def test_clip_higher():
    logp = torch.tensor([[LN(1.5), LN(0.5)]])
    s = clipped_surrogate(logp, torch.zeros(1, 2), torch.tensor([1.0]), eps_low=0.2, eps_high=0.28)
    # upper clip becomes 1.28; lower stays 0.8 (and is not active for A > 0)
    torch.testing.assert_close(s.loss, torch.tensor([[-1.28, -0.5]]))


def test_clipped_tokens_have_no_gradient():
    logp = torch.tensor([[LN(1.5), LN(0.5), 0.0]], requires_grad=True)
    clipped_surrogate(logp, torch.zeros(1, 3), torch.tensor([1.0])).loss.sum().backward()
    # d(-rho A)/d logp = -rho A for unclipped tokens: [0 (clipped), -0.5, -1.0]
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, -0.5, -1.0]]))


def test_k3_kl_hand_worked():
    logp = torch.log(torch.tensor([[0.5, 0.3]]))
    ref = torch.log(torch.tensor([[0.25, 0.3]]))
    # d = ln(0.25 / 0.5) = -ln 2: exp(d) - d - 1 = 0.5 + 0.693147 - 1 = 0.193147; equal probs -> 0
    torch.testing.assert_close(k3_kl(logp, ref), torch.tensor([[0.5 + LN(2) - 1, 0.0]]))
    random = k3_kl(torch.randn(64, 8), torch.randn(64, 8))
    assert (random >= 0).all()


def test_aggregate_modes():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    # token mean: (1 + 2 + 3 + 4) / 4 tokens = 2.5; padding (the 9s) ignored
    assert aggregate(x, mask, "token_mean").item() == pytest.approx(2.5)
    # sequence mean: mean(2, 4) = 3
    assert aggregate(x, mask, "sequence_mean").item() == pytest.approx(3.0)
    # token count of a whole optimiser step (e.g. 8 tokens over two micro-batches): 10 / 8
    assert aggregate(x, mask, "token_mean", num_tokens=8).item() == pytest.approx(1.25)
    with pytest.raises(ValueError):
        aggregate(x, mask, "sum")


def test_grpo_loss_with_kl_hand_worked():
    logp = torch.log(torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    ref = torch.log(torch.tensor([[0.25, 0.5], [0.5, 0.5]]))
    mask = torch.tensor([[1, 1], [1, 0]])
    loss, stats = grpo_loss(logp, None, ref, torch.tensor([1.0, -2.0]), mask, beta=0.1)
    # surrogate per token (ratio 1): [[-1, -1], [2, pad]] -> token mean (-1 - 1 + 2) / 3 = 0
    # kl per token: [[0.193147, 0], [0, pad]] -> mean 0.064382; loss = 0 + 0.1 * 0.064382
    kl = 0.5 + LN(2) - 1
    assert loss.item() == pytest.approx(0.1 * kl / 3, abs=1e-7)
    assert stats["kl"].item() == pytest.approx(kl / 3, abs=1e-7)
    assert stats["policy_loss"].item() == pytest.approx(0.0, abs=1e-7)
    assert stats["ratio_mean"].item() == 1.0 and stats["clip_fraction"].item() == 0.0
    assert stats["num_tokens"].item() == 3


def test_grpo_loss_needs_reference_for_beta():
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(torch.zeros(1, 1), None, None, torch.ones(1), torch.ones(1, 1), beta=0.1)


def test_truncated_is_weights_hand_worked():
    trainer = torch.log(torch.tensor([[0.5, 0.9, 0.2]]))
    sampler = torch.log(torch.tensor([[0.25, 0.3, 0.4]]))
    w, stats = truncated_is_weights(trainer, sampler, torch.tensor([[1, 1, 0]]), cap=2.0)
    # w = min(trainer / sampler, 2): [2.0, min(3, 2) = 2.0, padding -> 0]
    torch.testing.assert_close(w, torch.tensor([[2.0, 2.0, 0.0]]))
    # |log ratio| on tokens: [ln 2, ln 3] -> mean 0.896880, max ln 3
    assert stats["logprob_diff_mean"].item() == pytest.approx((LN(2) + LN(3)) / 2, abs=1e-6)
    assert stats["logprob_diff_max"].item() == pytest.approx(LN(3), abs=1e-6)
    assert stats["is_capped_fraction"].item() == pytest.approx(0.5)


def test_is_weights_scale_the_surrogate_only():
    logp = torch.zeros(1, 2)
    ref = torch.tensor([[LN(0.5), 0.0]])
    w = torch.tensor([[0.5, 2.0]])
    loss, _ = grpo_loss(logp, None, ref, torch.tensor([1.0]), torch.ones(1, 2), beta=1.0, is_weights=w)
    # surrogate [-1, -1] * w = [-0.5, -2.0]; kl [0.5 + ln 2 - 1, 0] unweighted; token mean over 2
    assert loss.item() == pytest.approx((-0.5 - 2.0 + 0.5 + LN(2) - 1) / 2, abs=1e-6)


class TwoTokenPolicy(torch.nn.Module):
    """A categorical policy over a vocabulary of 2, the same at every position."""

    def __init__(self):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.zeros(2))  # p = [0.5, 0.5]

    def forward(self, tokens):  # [N, C] -> [N, C] log-probs
        return torch.log_softmax(self.theta, dim=0)[tokens]


def test_multiple_passes_clip_against_rollout_logprobs():
    policy = TwoTokenPolicy()
    tokens = torch.tensor([[0, 0], [1, 1], [0, 1]])  # [N=3, C=2]
    adv = torch.tensor([1.0, -1.0, -1.0])
    mask = torch.ones(3, 2)
    with torch.no_grad():
        old = policy(tokens)  # rollout-time log-probs, all ln 0.5

    # pass 1: logp == old -> ratio 1 and the gradient is the plain policy gradient -A * grad logp
    logp = policy(tokens)
    loss, stats = grpo_loss(logp, old, None, adv, mask)
    assert stats["ratio_mean"].item() == 1.0 and stats["clip_fraction"].item() == 0.0
    (grad,) = torch.autograd.grad(loss, policy.theta)
    pg = -(adv.unsqueeze(1) * policy(tokens)).sum() / 6  # token mean over 6 tokens
    (pg_grad,) = torch.autograd.grad(pg, policy.theta)
    torch.testing.assert_close(grad, pg_grad)

    # a parameter change: theta = [ln 3, 0] -> p = [0.75, 0.25]
    with torch.no_grad():
        policy.theta.copy_(torch.tensor([LN(3), 0.0]))
    logp = policy(tokens)
    # ratio will be [[1.5, 1.5], [0.5, 0.5], [1.5, 0.5]]
    # row 0 (A=+1): 1.5 > 1.2 -> clipped high, loss -1.2 each
    # row 1 (A=-1): 0.5 < 0.8 -> clipped low, loss 0.8 each
    # row 2 (A=-1): token 0 ratio 1.5 -> -min(-1.5, -1.2) = 1.5, NOT clipped (pessimistic side);
    #               token 1 ratio 0.5 -> clipped low, loss 0.8
    loss, stats = grpo_loss(logp, old, None, adv, mask)
    assert loss.item() == pytest.approx((-1.2 * 2 + 0.8 * 2 + 1.5 + 0.8) / 6, abs=1e-6)
    assert stats["clip_fraction"].item() == pytest.approx(5 / 6)
    assert stats["clip_fraction_high"].item() == pytest.approx(2 / 6)
    assert stats["clip_fraction_low"].item() == pytest.approx(3 / 6)
    assert stats["ratio_max"].item() == pytest.approx(1.5) and stats["ratio_min"].item() == pytest.approx(0.5)
    # only the unclipped token (row 2, token 0) carries gradient: -A * rho * grad logp / 6
    (grad,) = torch.autograd.grad(loss, policy.theta)
    # grad of log p0 w.r.t. theta = [1 - 0.75, -0.25]
    expected = -(-1.0) * 1.5 * torch.tensor([0.25, -0.25]) / 6
    torch.testing.assert_close(grad, expected)
