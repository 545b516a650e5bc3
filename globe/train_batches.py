"""More training batches, drawn inside ``training_step`` from the running fit loop.

Dynamic sampling (``globe.grpo.dynamic_sampling``) rolls out further prompts when a step's batch
holds too few informative groups. They come from the very iterator Lightning takes its batches
from (the fit loop's data fetcher), through the same steps as Lightning's own batches:

1. ``next(fetcher)``               -- the next batch in loader order (Lightning keeps one prefetched)
2. ``convert_input``               -- the precision plugin
3. ``on_before_batch_transfer``    -- the data module counts it in its data position (``data_position``)
4. ``batch_to_device``             -- the strategy
5. the epoch's batch counter       -- ``batch_progress.current`` counts the batch, so the epoch ends
                                     when its batches (not steps) run out, a sized epoch too, and a
                                     resumed fetcher knows how many it has already given; the
                                     run-wide ``total`` counter keeps counting steps (step-based
                                     validation, ``val_check_interval: N`` with
                                     ``check_val_every_n_epoch: null``, is unchanged)
6. ``is_last_batch``               -- set when that was the epoch's last batch, so the epoch ends
                                     after this step (and a checkpoint saved now resumes in the next
                                     epoch), as after Lightning's own last batch

So a batch drawn here is trained on (or dropped) by this step and never again, and the data
position of a checkpoint counts it: an exact resume replays the stream up to it. An epoch whose
batches are partly drawn here takes fewer optimiser steps than it has batches: bound LR schedules
with ``trainer.max_steps`` (``estimated_stepping_batches`` counts batches). Validation every N
batches *within* epochs (``check_val_every_n_epoch`` set, ``val_check_interval: N``) counts the
drawn batches too and is skipped when a step draws past a multiple of N; the end-of-epoch
validation still runs.

This reads Lightning's private ``fit_loop._data_fetcher`` (Lightning 2.5 - 2.7); it refuses, with a
message, where that is missing (e.g. a ``training_step(dataloader_iter)`` fetcher).
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loops.fetchers import _DataLoaderIterDataFetcher, _PrefetchDataFetcher

__all__ = ["FitLoopBatches"]


class FitLoopBatches:
    """The training batches after the current one, for the step that runs now.

    >>> FitLoopBatches(None).can_draw()
    False
    """

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def _fetcher(self) -> _PrefetchDataFetcher | None:
        trainer = self.trainer
        if trainer is None or not getattr(trainer, "training", False):
            return None
        fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
        if fetcher is None or isinstance(fetcher, _DataLoaderIterDataFetcher) or not isinstance(fetcher, _PrefetchDataFetcher):
            raise RuntimeError(
                f"dynamic sampling draws further batches from Lightning's training data fetcher; this trainer has "
                f"{type(fetcher).__name__} (Lightning 2.5-2.7 and a training_step(batch, batch_idx) are needed)"
            )
        return fetcher

    def can_draw(self) -> bool:
        """Whether the current epoch has another batch (never blocks, never consumes)."""
        fetcher = self._fetcher()
        return fetcher is not None and not fetcher.done

    def draw(self) -> Any | None:
        """The next batch of the epoch, counted and on the device; ``None`` when the epoch is over."""
        fetcher = self._fetcher()
        if fetcher is None or fetcher.done:
            return None
        try:
            batch, _, _ = next(fetcher)
        except StopIteration:
            batch = None
        trainer = self.trainer
        progress = trainer.fit_loop.epoch_loop.batch_progress
        progress.is_last_batch = fetcher.done
        if batch is None:
            return None
        current = progress.current  # inside the step: ready = started = processed + 1 = completed + 1
        current.ready, current.started = current.ready + 1, current.started + 1
        current.processed, current.completed = current.processed + 1, current.completed + 1
        batch = trainer.precision_plugin.convert_input(batch)
        batch = trainer.lightning_module._on_before_batch_transfer(batch, dataloader_idx=0)
        return trainer.strategy.batch_to_device(batch, dataloader_idx=0)
