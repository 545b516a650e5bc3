"""GSPO's sequence-level importance ratio (Group Sequence Policy Optimization, Zheng et al. 2025).

GRPO clips one ratio per token; GSPO clips one per completion, the length-normalised likelihood
ratio of the whole sequence:

    s_i = (pi_theta(o_i) / pi_old(o_i)) ** (1 / |o_i|) = exp( (1/|o_i|) sum_t (logp_it - old_logp_it) )

    J_GSPO = (1/G) sum_i min(s_i A_i, clip(s_i, 1 - eps_low, 1 + eps_high) A_i)

Because ``s_i`` is a geometric mean of ratios close to 1, its clip range is tiny: the paper uses
``eps_low = 3e-4`` and ``eps_high = 4e-4`` (TRL's GSPO example likewise), against 0.2 for a
token ratio. Each completion weighs the same (the loss is the ``grpo`` sequence mean).

The ratio is handed to the token-level machinery as ``[N, C]`` through the stop-gradient form of the
paper's GSPO-token (TRL ``importance_sampling_level="sequence_token"``):

    s_it = sg[s_i] * pi_theta(o_it) / sg[pi_theta(o_it)]        (value s_i on every token)

whose gradient is ``s_i * grad logp_it`` per token. With one advantage per completion and the
sequence mean over its tokens, the gradient is ``s_i * (1/|o_i|) sum_t grad logp_it = grad s_i``,
exactly that of the direct sequence form (TRL ``importance_sampling_level="sequence"`` with
``loss_type="grpo"``); the tests check both. Clipping is decided on the value ``s_i``, so it cuts
the gradient of every token of a completion or of none. Padding tokens carry ``s_i`` too; the mask
removes them in the loss. ``globe.grpo.loss.grpo_loss(loss_type="gspo")`` clips this ratio.

With a single pass per rollout (``num_iterations=1``, no off-policy rollouts) ``s_i = 1`` and GSPO is
the plain policy gradient with the sequence mean, like GRPO.
"""

from __future__ import annotations

import torch

__all__ = ["sequence_log_ratio", "sequence_ratio_per_token"]


def sequence_log_ratio(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``log s_i = sum_t (logp - old_logp) m_it / |o_i|``: ``[N, C]`` -> ``[N]`` (0 for an empty row).

    >>> logp = torch.log(torch.tensor([[2.0, 8.0, 5.0]]))
    >>> round(sequence_log_ratio(logp, torch.zeros(1, 3), torch.tensor([[1, 1, 0]])).exp().item(), 5)  # sqrt(2 * 8)
    4.0
    """
    maskf = mask.to(logp.dtype)
    return ((logp - old_logp.detach()) * maskf).sum(dim=1) / maskf.sum(dim=1).clamp(min=1.0)


def sequence_ratio_per_token(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[N, C]`` ratios of value ``s_i`` and gradient ``s_i * grad logp_it`` (the GSPO-token form)."""
    log_s = sequence_log_ratio(logp, old_logp, mask).detach().unsqueeze(1)  # [N, 1], sg[log s_i]
    return torch.exp(logp - logp.detach() + log_s)  # [N, C]

