"""The loss types (grpo, dr_grpo, dapo, bnpo, gspo) with hand-worked numbers; micro-batches and
ranks; the default is today's token mean bit for bit."""

import math

import pytest
import torch

from globe.grpo.gspo import sequence_log_ratio, sequence_ratio_per_token
from globe.grpo.loss import aggregate, grpo_loss
from globe.grpo.loss_types import LOSS_TYPES, StepSize, default_scale_rewards, normalise

LN = math.log
X = torch.tensor([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]])  # the 9s are padding
M = torch.tensor([[1, 1, 1], [1, 0, 0]])


def test_normalisers_hand_worked():
    step = StepSize.of(M, max_completion_length=5)  # N 2, T 4, L_max 5
    # grpo: per-sequence means [6/3, 4/1] = [2, 4] -> mean over sequences 3
    assert normalise(X, M, "grpo", step).item() == pytest.approx(3.0)
    assert normalise(X, M, "gspo", step).item() == pytest.approx(3.0)
    # dr_grpo: token sum 10 / (N 2 * L_max 5) = 1
    assert normalise(X, M, "dr_grpo", step).item() == pytest.approx(1.0)
    # dapo and bnpo on one rank: 10 / 4 tokens = 2.5
    assert normalise(X, M, "dapo", step).item() == pytest.approx(2.5)
    assert normalise(X, M, "bnpo", step).item() == pytest.approx(2.5)
    # two ranks, the other holding 6 tokens: dapo divides by all 10 tokens and scales by W = 2
    # (the averaged gradient is then the global token mean): 10 / 10 * 2 = 2; bnpo stays local: 2.5
    two_ranks = step._replace(global_tokens=torch.tensor(10.0), world_size=2.0)
    assert normalise(X, M, "dapo", two_ranks).item() == pytest.approx(2.0)
    assert normalise(X, M, "bnpo", two_ranks).item() == pytest.approx(2.5)
    with pytest.raises(ValueError, match="loss_type"):
        normalise(X, M, "sum", step)


def test_dapo_is_todays_token_mean_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(6, 7, generator=g) * 3
    old, ref = logp + 0.1 * torch.randn(6, 7, generator=g), logp + 0.1 * torch.randn(6, 7, generator=g)
    adv = torch.randn(6, generator=g)
    mask = (torch.rand(6, 7, generator=g) > 0.3).long()
    is_w = torch.rand(6, 7, generator=g) + 0.5
    tokens = mask.sum().to(torch.float32).clamp(min=1)
    today, today_stats = grpo_loss(logp, old, ref, adv, mask, beta=0.04, eps_high=0.28, is_weights=is_w,
                                   aggregation="token_mean", num_tokens=tokens)
    step = StepSize(rows=6, local_tokens=tokens, global_tokens=tokens, world_size=1.0, max_completion_length=7)
    new, new_stats = grpo_loss(logp, old, ref, adv, mask, beta=0.04, eps_high=0.28, is_weights=is_w, loss_type="dapo", step=step)
    assert torch.equal(new, today * 1.0)  # today's trainer multiplied by token_scale 1.0 on one rank
    assert all(torch.equal(new_stats[k], today_stats[k]) for k in today_stats)
    # and the older sequence mean is grpo (equal in value; the sum / N order differs from mean())
    seq = aggregate(X, M, "sequence_mean")
    assert normalise(X, M, "grpo", StepSize.of(M)).item() == pytest.approx(seq.item(), abs=1e-7)


@pytest.mark.parametrize("loss_type,expected,grad", [
    # ratio 1, A = [1, -2]: per-token surrogate -A = [[-1, -1, -1], [2, pad, pad]]
    # grpo: per sequence [-1, 2] -> mean 0.5; d/dlogp = -A / (|o_i| N): row 0 -1/6, row 1 2/2 = 1
    ("grpo", 0.5, [[-1 / 6] * 3, [1.0, 0, 0]]),
    ("gspo", 0.5, [[-1 / 6] * 3, [1.0, 0, 0]]),  # s_i = 1 on-policy: the grpo gradient
    # dr_grpo (L_max 4): sum -1 / (2 * 4) = -0.125; d/dlogp = -A / 8
    ("dr_grpo", -0.125, [[-1 / 8] * 3, [2 / 8, 0, 0]]),
    # dapo / bnpo: -1 / 4 tokens; d/dlogp = -A / 4
    ("dapo", -0.25, [[-0.25] * 3, [0.5, 0, 0]]),
    ("bnpo", -0.25, [[-0.25] * 3, [0.5, 0, 0]]),
])
def test_each_loss_type_on_policy_hand_worked(loss_type, expected, grad):
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.5], [0.1, 0.3, 0.3]], dtype=torch.float64)).requires_grad_()
    loss, stats = grpo_loss(logp, None, None, torch.tensor([1.0, -2.0]), M, loss_type=loss_type, step=StepSize.of(M, 4))
    assert loss.item() == pytest.approx(expected)
    assert stats["policy_loss"].item() == pytest.approx(expected)
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor(grad, dtype=torch.float64))


def test_gspo_clips_the_sequence_ratio_hand_worked():
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0]])
    log_ratio = torch.tensor([[2e-4, 4e-4, 0.0], [1e-3, -2e-4, 5e-4], [-6e-4, 0.0, 0.0]], dtype=torch.float64)
    old = torch.full((3, 3), LN(0.5), dtype=torch.float64)
    logp = (old + log_ratio).requires_grad_()
    adv = torch.tensor([1.0, 1.0, -1.0])
    # log s_i = mean of the token log ratios: [3e-4, 1.3e-3 / 3, -6e-4]
    s = [math.exp(3e-4), math.exp(1.3e-3 / 3), math.exp(-6e-4)]  # [1.00030004, 1.00043343, 0.99940018]
    torch.testing.assert_close(sequence_log_ratio(logp, old, mask).exp(), torch.tensor(s, dtype=torch.float64))
    loss, stats = grpo_loss(logp, old, None, adv, mask, eps_low=3e-4, eps_high=4e-4, loss_type="gspo")
    # row 0 (A +1): s 1.0003 < 1.0004, not clipped: -s0
    # row 1 (A +1): s 1.000433 > 1.0004: clipped high, -1.0004, no gradient
    # row 2 (A -1): s 0.9994 < 0.9997: clipped low, -min(-0.9994, -0.9997) = 0.9997, no gradient
    assert loss.item() == pytest.approx((-s[0] - 1.0004 + 0.9997) / 3, abs=1e-12)
    # the whole of rows 1 and 2 is clipped: 4 of the 6 completion tokens
    assert stats["clip_fraction"].item() == pytest.approx(4 / 6)
    loss.backward()
    # row 0: d(-s0)/dlogp_0t = -s0 / |o_0|, then / N 3; clipped rows and padding: 0
    expected = torch.tensor([[-s[0] / 6, -s[0] / 6, 0.0], [0.0] * 3, [0.0] * 3], dtype=torch.float64)
    torch.testing.assert_close(logp.grad, expected)
    # token-level clipping of the same numbers would cut row 0's second token (exp(4e-4) > 1.0004)
    _, token_stats = grpo_loss(logp.detach(), old, None, adv, mask, eps_low=3e-4, eps_high=4e-4, loss_type="grpo")
    # token ratios above 1.0004 with A > 0: row 0 token 1 (exp 4e-4), row 1 tokens 0 and 2 (exp 1e-3, exp 5e-4)
    assert token_stats["clip_fraction_high"].item() == pytest.approx(3 / 6)


def test_gspo_token_form_has_the_gradient_of_the_sequence_form():
    """sg[s_i] * pi / sg[pi] (GSPO-token) against s_i = exp(mean log ratio) with its own gradient
    (TRL importance_sampling_level="sequence", loss_type="grpo")."""
    g = torch.Generator().manual_seed(1)
    mask = (torch.rand(5, 6, generator=g) > 0.25).long()
    mask[:, 0] = 1
    old = -torch.rand(5, 6, generator=g, dtype=torch.float64)
    adv = torch.randn(5, generator=g)
    logp = (old + 3e-4 * torch.randn(5, 6, generator=g, dtype=torch.float64)).requires_grad_()
    ratio = sequence_ratio_per_token(logp, old, mask)
    assert torch.allclose(ratio, sequence_log_ratio(logp, old, mask).exp().unsqueeze(1).expand(5, 6))
    loss, _ = grpo_loss(logp, old, None, adv, mask, eps_low=3e-4, eps_high=4e-4, loss_type="gspo")
    (token_form,) = torch.autograd.grad(loss, logp)

    s = sequence_log_ratio(logp, old, mask).exp()  # [N], differentiable
    a = adv.to(s.dtype)
    direct = -torch.minimum(s * a, s.clamp(1 - 3e-4, 1 + 4e-4) * a).mean()
    (sequence_form,) = torch.autograd.grad(direct, logp)
    torch.testing.assert_close(loss, direct)
    torch.testing.assert_close(token_form, sequence_form)
    assert token_form.abs().sum() > 0


def _batch(seed: int = 0):
    """4 completions (2 groups of 2) of unequal lengths, off-policy (so clipping bites), with a reference."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    old = -torch.rand(4, 5, generator=g, dtype=torch.float64) * 2
    ref = old + 0.1 * torch.randn(4, 5, generator=g, dtype=torch.float64)
    theta = (old + 0.3 * torch.randn(4, 5, generator=g, dtype=torch.float64)).requires_grad_()  # a leaf "model"
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    return theta, old, ref, adv, mask


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_micro_batches_give_the_gradient_of_one_batch(loss_type):
    theta, old, ref, adv, mask = _batch()
    step = StepSize.of(mask, max_completion_length=8)
    eps = (3e-4, 4e-4) if loss_type == "gspo" else (0.2, 0.28)
    kwargs = dict(beta=0.1, eps_low=eps[0], eps_high=eps[1], loss_type=loss_type, step=step)
    whole, _ = grpo_loss(theta * 1.0, old, ref, adv, mask, **kwargs)
    (one_batch,) = torch.autograd.grad(whole, theta)
    total = 0.0
    for rows in (slice(0, 2), slice(2, 4)):  # one group per micro-batch, each normalised by the whole step
        part, _ = grpo_loss(theta[rows], old[rows], ref[rows], adv[rows], mask[rows], **kwargs)
        part.backward()
        total = total + part.detach()
    torch.testing.assert_close(total, whole.detach())
    torch.testing.assert_close(theta.grad, one_batch)


@pytest.mark.parametrize("loss_type,same", [("dapo", True), ("bnpo", False), ("grpo", True), ("dr_grpo", True)])
def test_two_ranks_against_one(loss_type, same):
    """Rank 0 holds rows 0-1 (4 + 2 = 6 tokens), rank 1 rows 2-3 (3 + 1 = 4 tokens once row 2 is cut).
    The gradient averaged over the ranks is compared with one rank holding all four rows."""
    theta, old, ref, adv, mask = _batch()
    mask = mask.clone()
    mask[2, 3:] = 0  # rank 1 now has 3 + 1 = 4 tokens, rank 0 has 6: unequal token counts
    one, _ = grpo_loss(theta, old, ref, adv, mask, beta=0.1, loss_type=loss_type, step=StepSize.of(mask, 8))
    (one_rank,) = torch.autograd.grad(one, theta)
    averaged = torch.zeros_like(theta)
    for rows in (slice(0, 2), slice(2, 4)):
        local = StepSize.of(mask[rows], 8)._replace(global_tokens=mask.sum().float(), world_size=2.0)
        part, _ = grpo_loss(theta[rows], old[rows], ref[rows], adv[rows], mask[rows], beta=0.1, loss_type=loss_type, step=local)
        (g,) = torch.autograd.grad(part, theta)
        averaged += g / 2  # DDP / FSDP2 average the ranks' gradients
    # dapo: the global token mean; grpo / dr_grpo: equal rows per rank, so the global means too;
    # bnpo: the mean of per-rank token means, which weighs rank 1's 4 tokens more than rank 0's 6
    assert torch.allclose(averaged, one_rank) is same


def test_default_advantage_scaling_follows_the_loss_type():
    assert default_scale_rewards("dr_grpo") == "none"  # Dr. GRPO: no std scaling
    assert all(default_scale_rewards(t) == "group" for t in LOSS_TYPES if t != "dr_grpo")
