"""The GRPO objective as pure per-token functions (DeepSeekMath eq. 3; GLOBE paper sec. 3.3).

Per token t of completion i, with ratio rho = pi_theta / pi_old = exp(logp - old_logp):

    L_it = -min(rho * A_i, clip(rho, 1 - eps_low, 1 + eps_high) * A_i)  +  beta * KL_k3(pi_theta || pi_ref)
    KL_k3 = exp(ref_logp - logp) - (ref_logp - logp) - 1            (Schulman's k3 estimator, >= 0)

and the per-token losses are reduced to one scalar: by ``loss_type`` (``globe.grpo.loss_types``:
``grpo``, ``dr_grpo``, ``dapo``, ``bnpo``, ``gspo``, each its paper's normaliser; ``gspo`` also
replaces rho by the sequence-level ratio of ``globe.grpo.gspo``), or by the older ``aggregation``
(``token_mean`` = ``dapo``, ``sequence_mean`` = ``grpo``).

Paper setting: eps_low = eps_high = 0.2, beta = 0.001, one optimisation pass per rollout batch.

Choices and deviations:
- ``eps_high`` may differ from ``eps_low`` (DAPO "clip-higher", e.g. 0.28), so low-probability
  tokens can grow faster; ``None`` means symmetric clipping (the paper).
- The trainer's default is the token mean over the whole global step (``dapo``, TRL's default
  ``loss_type``): every token weighs the same, so long completions are not down-weighted. The
  original GRPO sequence mean (mean over completions of each completion's token mean) is
  ``loss_type="grpo"``.
- ``old_logp`` are the trainer's log-probs at rollout time, so several optimisation passes over one
  rollout batch are clipped against the same policy. With a single pass they equal the current
  log-probs (``old_logp=None`` uses ``logp.detach()``): the ratio is 1 and the gradient is the plain
  policy gradient ``-A * grad logp``.
- Rollouts drawn by another engine (vLLM) come with the sampler's log-probs, which differ slightly
  from the trainer's. ``truncated_is_weights`` gives the truncated importance-sampling correction
  ``w = min(exp(old_logp_trainer - logp_sampler), cap)`` (TRL's ``vllm_importance_sampling_correction``);
  it multiplies the surrogate term only, not the KL term, as in TRL.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch

from globe.grpo.gspo import sequence_ratio_per_token
from globe.grpo.loss_types import LossType, StepSize, normalise

Aggregation = Literal["token_mean", "sequence_mean"]


class Surrogate(NamedTuple):
    """Per-token terms of the clipped surrogate; every tensor is ``[N, C]``."""

    loss: torch.Tensor  # -min(rho * A, clip(rho) * A)
    ratio: torch.Tensor  # rho = exp(logp - old_logp)
    clipped_low: torch.Tensor  # bool, rho < 1 - eps_low and A < 0: the gradient is cut
    clipped_high: torch.Tensor  # bool, rho > 1 + eps_high and A > 0: the gradient is cut


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the entries where ``mask`` is 1 (0 when the mask is empty)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def clipped_surrogate(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float | None = None,
) -> Surrogate:
    """PPO clipped surrogate per token: ``-min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A)``.

    Args:
        logp: ``[N, C]`` current log-probs of the sampled tokens (differentiable).
        old_logp: ``[N, C]`` log-probs at rollout time (no gradient).
        advantages: ``[N]`` one advantage per completion, broadcast over its tokens.
        eps_low: lower clip range.
        eps_high: upper clip range (DAPO clip-higher); ``None`` means ``eps_low``.

    A token is counted as clipped where the clipped branch wins the ``min`` and stops the gradient:
    ``rho > 1 + eps_high`` with ``A > 0``, or ``rho < 1 - eps_low`` with ``A < 0``.
    """
    return surrogate_from_ratio(torch.exp(logp - old_logp.detach()), advantages, eps_low, eps_high)


def surrogate_from_ratio(
    ratio: torch.Tensor,
    advantages: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float | None = None,
) -> Surrogate:
    """The clipped surrogate of ``clipped_surrogate`` for any ``[N, C]`` ratio (token- or sequence-level)."""
    eps_high = eps_low if eps_high is None else eps_high
    adv = advantages.detach().to(ratio.dtype).unsqueeze(1)  # [N, 1]
    unclipped = ratio * adv  # [N, C]
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv  # [N, C]
    loss = -torch.minimum(unclipped, clipped)  # [N, C]
    clipped_low = (ratio < 1.0 - eps_low) & (adv < 0)  # [N, C]
    clipped_high = (ratio > 1.0 + eps_high) & (adv > 0)  # [N, C]
    return Surrogate(loss, ratio, clipped_low, clipped_high)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi_theta || pi_ref): ``exp(d) - d - 1`` with ``d = ref_logp - logp``.

    Unbiased for samples drawn from pi_theta and never negative; ``[N, C] -> [N, C]``.
    The coefficient beta is applied by ``grpo_loss``.
    """
    diff = ref_logp.detach() - logp  # [N, C]
    return torch.exp(diff) - diff - 1.0


def aggregate(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    mode: Aggregation = "token_mean",
    num_tokens: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Reduce ``[N, C]`` per-token values over the completion tokens (``mask`` ``[N, C]``) to a scalar.

    - ``"token_mean"`` (default; DAPO, Dr. GRPO): ``sum_{i,t} x_it m_it / sum_{i,t} m_it``; every token
      of the batch weighs the same. ``num_tokens`` replaces the denominator, e.g. with the token count
      of the whole optimiser step when the batch is split into micro-batches or across devices.
    - ``"sequence_mean"`` (original GRPO): ``(1/N) sum_i (sum_t x_it m_it / sum_t m_it)``; each
      completion weighs the same, so tokens of long completions weigh less.
    """
    mask = mask.to(per_token.dtype)
    if mode == "token_mean":
        denominator = mask.sum().clamp(min=1.0) if num_tokens is None else num_tokens
        return (per_token * mask).sum() / denominator
    if mode == "sequence_mean":
        per_sequence = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # [N]
        return per_sequence.mean()
    raise ValueError(f"aggregation must be 'token_mean' or 'sequence_mean', got {mode!r}")


def truncated_is_weights(
    trainer_logp: torch.Tensor,
    sampler_logp: torch.Tensor,
    mask: torch.Tensor,
    cap: float = 2.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Truncated importance-sampling weights for completions drawn by a different engine.

    ``w = min(exp(trainer_logp - sampler_logp), cap)`` per token (``[N, C]``, no gradient, 0 on
    padding), where ``trainer_logp`` are the trainer's log-probs at rollout time (``old_logp``) and
    ``sampler_logp`` those reported by the rollout engine for the same tokens.

    Returns the weights and mismatch statistics over the completion tokens: ``logprob_diff_mean``
    (mean |trainer - sampler|), ``logprob_diff_max``, ``is_weight_mean``, ``is_capped_fraction``.
    """
    diff = (trainer_logp - sampler_logp).detach().float()  # [N, C]
    weights = torch.exp(diff).clamp(max=cap)  # [N, C]
    maskf = mask.to(weights.dtype)
    weights = weights * maskf
    abs_diff = diff.abs() * maskf
    stats = {
        "logprob_diff_mean": masked_mean(abs_diff, maskf),
        "logprob_diff_max": abs_diff.max() if abs_diff.numel() else abs_diff.new_zeros(()),
        "is_weight_mean": masked_mean(weights, maskf),
        "is_capped_fraction": masked_mean((torch.exp(diff) > cap).to(weights.dtype), maskf),
    }
    return weights.to(trainer_logp.dtype), stats


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor | None,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    beta: float = 0.0,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    aggregation: Aggregation = "token_mean",
    is_weights: torch.Tensor | None = None,
    num_tokens: float | torch.Tensor | None = None,
    loss_type: LossType | None = None,
    step: StepSize | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GRPO loss of a batch of completions and the statistics worth logging.

    Args:
        logp: ``[N, C]`` current log-probs of the completion tokens (differentiable).
        old_logp: ``[N, C]`` log-probs at rollout time; ``None`` for a single pass (``logp.detach()``).
        ref_logp: ``[N, C]`` reference-policy log-probs, or ``None`` (then ``beta`` must be 0).
        advantages: ``[N]``.
        mask: ``[N, C]`` 1 on completion tokens (EOS included), 0 on padding.
        beta: KL coefficient (paper: 0.001).
        eps_low, eps_high: clip range (``eps_high=None``: symmetric).
        aggregation: ``"token_mean"`` or ``"sequence_mean"`` (see ``aggregate``); unused when
            ``loss_type`` is set.
        is_weights: ``[N, C]`` truncated importance-sampling weights multiplying the surrogate term.
        num_tokens: denominator override for ``"token_mean"`` (see ``aggregate``).
        loss_type: ``grpo``, ``dr_grpo``, ``dapo``, ``bnpo`` or ``gspo`` (``globe.grpo.loss_types``);
            ``gspo`` clips the sequence-level ratio ``s_i`` with ``eps_low`` / ``eps_high``.
        step: sizes of the whole optimiser step this batch belongs to (``StepSize``); ``None``:
            the batch is the whole step on one rank.

    Returns:
        ``(loss, stats)``; stats are detached scalars: ``policy_loss``, ``kl``, ``clip_fraction``
        (``clip_fraction_low``, ``clip_fraction_high``), ``ratio_mean``, ``ratio_min``, ``ratio_max``,
        ``advantage_mean``, ``num_tokens``. Token statistics are means over the completion tokens.
    """
    if beta != 0.0 and ref_logp is None:
        raise ValueError("beta != 0 needs ref_logp")
    if old_logp is None:
        old_logp = logp.detach()
    if loss_type == "gspo":
        surrogate = surrogate_from_ratio(sequence_ratio_per_token(logp, old_logp, mask), advantages, eps_low, eps_high)
    else:
        surrogate = clipped_surrogate(logp, old_logp, advantages, eps_low, eps_high)
    if loss_type is None:
        reduce = lambda x: aggregate(x, mask, aggregation, num_tokens)  # noqa: E731
    else:
        step = StepSize.of(mask) if step is None else step
        reduce = lambda x: normalise(x, mask, loss_type, step)  # noqa: E731
    policy_term = surrogate.loss  # [N, C]
    if is_weights is not None:
        policy_term = policy_term * is_weights.detach().to(policy_term.dtype)
    per_token = policy_term
    kl = k3_kl(logp, ref_logp) if ref_logp is not None else None  # [N, C]
    if kl is not None and beta != 0.0:
        per_token = per_token + beta * kl
    loss = reduce(per_token)

    maskb = mask.bool()
    with torch.no_grad():
        ratio_on_tokens = surrogate.ratio[maskb]
        empty = ratio_on_tokens.numel() == 0
        stats = {
            "policy_loss": reduce(policy_term.detach()),
            "kl": masked_mean(kl.detach(), mask) if kl is not None else logp.new_zeros(()),
            "clip_fraction": masked_mean((surrogate.clipped_low | surrogate.clipped_high).to(logp.dtype), mask),
            "clip_fraction_low": masked_mean(surrogate.clipped_low.to(logp.dtype), mask),
            "clip_fraction_high": masked_mean(surrogate.clipped_high.to(logp.dtype), mask),
            "ratio_mean": masked_mean(surrogate.ratio.detach(), mask),
            "ratio_min": logp.new_ones(()) if empty else ratio_on_tokens.min().detach(),
            "ratio_max": logp.new_ones(()) if empty else ratio_on_tokens.max().detach(),
            "advantage_mean": advantages.detach().float().mean(),
            "num_tokens": mask.sum().to(torch.float32),
        }
    return loss, stats
