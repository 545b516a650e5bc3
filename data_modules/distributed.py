"""Rank and world size of the current process, as the data modules see them."""

from __future__ import annotations

import torch.distributed as dist

__all__ = ["rank_and_world_size"]


def rank_and_world_size(trainer: object | None = None) -> tuple[int, int]:
    """``(global_rank, world_size)``: from the attached Trainer, else from an initialised
    ``torch.distributed`` process group, else ``(0, 1)``."""
    if trainer is not None:
        return int(trainer.global_rank), int(trainer.world_size)
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
