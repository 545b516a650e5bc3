"""Read a distributed (FSDP2, ``ModelParallelStrategy``) checkpoint from a one-device run.

A sharded run saves each checkpoint as a directory: ``torch.distributed.checkpoint`` shards of
the weights and optimiser states plus Lightning's ``meta.pt``. ``cli.py test`` on one device
(``strategy: auto``) would hand that directory to ``torch.load``. ``ShardedAwareCheckpointIO``
reads such a directory into one full checkpoint instead (every shard gathered on the CPU, no
process group needed, the same reader as ``lightning.pytorch.utilities.consolidate_checkpoint``)
and any single file the usual way. Nothing is unpickled beyond ``torch.load``'s
``weights_only`` rules.

Use it with ``trainer.plugins: [{class_path: globe.checkpoint_io.ShardedAwareCheckpointIO}]``
(``configs/test/im2gps3k.yaml`` does).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lightning.fabric.utilities.load import _load_distributed_checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

__all__ = ["ShardedAwareCheckpointIO", "load_sharded_checkpoint"]


def load_sharded_checkpoint(path: str | Path) -> dict[str, Any]:
    """A distributed checkpoint directory as the dict a single-file Lightning checkpoint holds."""
    folder = Path(path)
    if not (folder / ".metadata").is_file():
        raise FileNotFoundError(f"{folder} is not a distributed checkpoint (no .metadata file)")
    checkpoint = _load_distributed_checkpoint(folder)
    optimizer_keys = sorted((k for k in checkpoint if re.fullmatch(r"optimizer_\d+", k)), key=lambda k: int(k.split("_")[1]))
    if optimizer_keys:
        checkpoint["optimizer_states"] = [checkpoint.pop(k) for k in optimizer_keys]
    return checkpoint


class ShardedAwareCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that also loads distributed checkpoint directories."""

    def load_checkpoint(self, path, map_location=None, weights_only: bool | None = None) -> dict[str, Any]:
        if Path(path).is_dir():
            return load_sharded_checkpoint(path)
        return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
