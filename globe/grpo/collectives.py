"""The few decisions every data-parallel rank must take alike, each one all-reduce.

With FSDP2 every ``generate`` and forward is a collective, so ranks that disagreed on how many
batches to roll out or how many micro-batches to run would hang. These helpers make every rank
answer the same; on one process (or without an initialised process group) they answer locally
and communicate nothing.
"""

from __future__ import annotations

import torch

__all__ = ["distributed", "agree", "all_reduce_max", "global_token_count"]


def distributed(world_size: int) -> bool:
    """True when ``world_size`` ranks share an initialised process group."""
    return world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()


def agree(need: bool, can_draw: bool, world_size: int, device: torch.device | str = "cpu") -> bool:
    """Run another refill round: some rank needs more groups and every rank can draw a batch
    (one all-reduce, so every rank answers the same).

    >>> agree(True, True, 1), agree(True, False, 1), agree(False, True, 1)
    (True, False, False)
    """
    if not distributed(world_size):
        return need and can_draw
    flags = torch.tensor([float(need), float(not can_draw)], device=device)
    torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
    return bool(flags[0] > 0) and not bool(flags[1] > 0)


def all_reduce_max(value: int, world_size: int, device: torch.device | str = "cpu") -> int:
    """The largest ``value`` of every rank.

    >>> all_reduce_max(3, 1)
    3
    """
    if not distributed(world_size):
        return value
    tensor = torch.tensor([float(value)], device=device)
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
    return int(tensor.item())


def global_token_count(mask: torch.Tensor, world_size: int) -> tuple[torch.Tensor, float]:
    """``(T_all, W)``: the tokens of ``mask`` summed over every rank (at least 1), and the number of
    ranks whose gradients are averaged (1 without a process group).

    Under DDP / FSDP2 the gradients are averaged over the W ranks, so each rank's loss
    ``sum_r / T_all`` is scaled by W: the averaged gradient is then the gradient of
    ``sum_all / T_all``, the global token mean (TRL's ``dapo``), not the mean of per-rank token means.

    >>> global_token_count(torch.tensor([[1, 1, 0], [1, 0, 0]]), 1)
    (tensor(3.), 1.0)
    """
    local = mask.sum().to(torch.float32)
    if distributed(world_size):
        total = local.clone()
        torch.distributed.all_reduce(total)
        return total.clamp(min=1), float(world_size)
    return local.clamp(min=1), 1.0
