"""``ModelCheckpoint`` whose checkpoints appear complete or not at all.

Lightning writes a checkpoint straight to its final name (a file, or a directory of shards under
``ModelParallelStrategy``). A run killed during that write leaves a truncated ``last.ckpt`` that
``--ckpt_path last`` then picks up. Here every checkpoint is written under a hidden temporary
name in the same directory (``.last.ckpt.partial``; names that ``--ckpt_path last`` never
matches) and moved over the final name only after every rank has finished writing:

- a file: ``os.replace`` (atomic);
- a directory (distributed checkpoint): the previous one is first renamed aside
  (``.last.ckpt.old``), the new one renamed in, the old one removed. A kill between the two renames
  leaves no ``last.ckpt`` but complete ``step=...`` checkpoints and the hidden copies, never a
  partial checkpoint under a final name.

``save_last: link`` links are replaced atomically too (a new link under a temporary name, then
``os.replace``). Everything else is Lightning's ``ModelCheckpoint``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from weakref import proxy

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

__all__ = ["AtomicCheckpoint", "replace_path"]


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def replace_path(source: Path, target: Path) -> None:
    """Move ``source`` (file, directory or link) to ``target``, replacing what is there."""
    is_real_dir = target.is_dir() and not target.is_symlink()
    if not is_real_dir and not (source.is_dir() and not source.is_symlink() and target.exists()):
        os.replace(source, target)  # atomic: file or link over file, link or nothing; directory onto nothing
        return
    old = target.with_name(f".{target.name}.old")
    _remove(old)
    os.replace(target, old)
    os.replace(source, target)
    _remove(old)


class AtomicCheckpoint(ModelCheckpoint):
    """``lightning.pytorch.callbacks.ModelCheckpoint`` with atomic saves (same arguments)."""

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        target = Path(filepath)
        partial = target.with_name(f".{target.name}.partial")
        if trainer.is_global_zero:
            _remove(partial)  # left over by a killed run
        trainer.strategy.barrier("atomic_checkpoint_clean")
        trainer.save_checkpoint(str(partial), self.save_weights_only)  # ends with a barrier
        if trainer.is_global_zero:
            replace_path(partial, target)
        trainer.strategy.barrier("atomic_checkpoint_replace")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))

    @staticmethod
    def _link_checkpoint(trainer: Trainer, filepath: str, linkpath: str) -> None:
        if trainer.is_global_zero and os.path.abspath(filepath) != os.path.abspath(linkpath):
            link = Path(linkpath)
            tmp = link.with_name(f".{link.name}.partial")
            _remove(tmp)
            os.symlink(os.path.relpath(filepath, os.path.dirname(linkpath)), tmp)
            replace_path(tmp, link)
        trainer.strategy.barrier()
