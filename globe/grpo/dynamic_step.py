"""One GRPO step under dynamic sampling, on the policy: refill, keep, optimise, log.

The selection logic is pure (``globe.grpo.dynamic_sampling``); this module runs it on a
``GRPOPolicy``, whose overridable steps it calls (``build_prompts``, ``rollout``, ``score``,
``advantages``, ``optimize``, ``log_step``):

    rollouts, refill = refill(policy, first)     # further training batches until target groups
    train = policy.kept_batch(rollouts, refill)  # kept groups + padding groups up to the fullest rank
    stats = policy.optimize(train...)            # or a step without gradient when no rank kept one
    policy.log_step(every group rolled out, stats, refill's figures)

The target is ``batch_size x rollout_batches`` informative groups (the data module's batch size);
further batches come from the fit loop's own iterator (``globe.train_batches``), so the data
position and an exact resume count them. Every rank runs the same rounds (``policy._agree``) and
the same number of micro-batches (``policy._all_reduce_max``), or a collective would hang.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from globe.grpo.dynamic_sampling import Refill, gather_completions, group_rows, pad_picks, padded_group_count, refill_rounds
from globe.grpo.trajectory import Rewards, Rollout, TrainBatch
from globe.rollout.base import PromptBatch
from globe.sample import GeoSample
from globe.train_batches import FitLoopBatches

if TYPE_CHECKING:
    from globe.policy import GRPOPolicy

log = logging.getLogger(__name__)

__all__ = ["run", "refill", "kept_batch", "concat_rollouts"]

_STOPPED = {"max_refills": "dynamic_sampling.max_tries reached", "data": "the epoch's data ran out"}


def run(policy: GRPOPolicy, first: Rollout, timings: dict[str, float]) -> None:
    """The rest of a step under ``dynamic_sampling`` after its own batch was rolled out and scored."""
    n = policy.hparams.group_size
    t0 = time.perf_counter()
    rollouts, found = policy.refill(first)
    timings["time/refill_s"] = time.perf_counter() - t0
    if found.short:
        log.warning(
            "dynamic sampling: step %d goes ahead with %d of %d informative groups after %d extra batch(es) (%s)",
            policy.global_step, len(found.kept), found.target, found.refills, _STOPPED.get(found.stopped, found.stopped),
        )
    t1 = time.perf_counter()
    train = policy.kept_batch(rollouts, found)
    if train is None:
        stats = policy.step_without_gradient()
    else:
        stats = policy.optimize(train.prompts, train.completions, train.advantages, pad_rows=train.pad_rows)
        policy._engine_stale = True
    timings["time/optimize_s"] = time.perf_counter() - t1
    logs = found.log_dict()
    logs["train/dynamic_sampling/pad_groups"] = 0.0 if train is None or train.pad_rows is None else float(train.pad_rows.sum()) / n
    everything = concat_rollouts(rollouts, n, policy._pad_token_id())
    policy.log_step(everything.batch, everything.completions, everything.rewards, everything.zero_spread, stats, {**timings, **logs})
    kept = set(found.kept)
    policy.last_rollout["kept"] = [(r, b) in kept for r, ro in enumerate(rollouts) for b in range(len(ro.batch)) for _ in range(n)]


def refill(policy: GRPOPolicy, first: Rollout) -> tuple[list[Rollout], Refill]:
    """Roll out further training batches until this step has enough informative groups
    (``globe.grpo.dynamic_sampling.refill_rounds``); every rank runs the same rounds."""
    hp = policy.hparams
    trainer = policy.trainer if policy._trainer is not None else None
    datamodule = getattr(trainer, "datamodule", None)
    target = int(getattr(datamodule, "batch_size", 0) or 0) * hp.rollout_batches or len(first.batch)
    source = FitLoopBatches(trainer)
    rollouts = [first]

    def draw() -> torch.Tensor:
        batch = source.draw()
        # every rank agreed that it can draw; a stream that ran out all the same (shorter than its
        # length) rolls its first batch out again, dropped, so that every rank still generates
        padding = batch is None
        batch = first.batch if padding else batch
        prompts = policy.build_prompts(batch)
        seed = policy.rollout_seed(f"train_refill{len(rollouts)}", policy.global_step, policy.sampling)
        completions = policy.rollout(prompts, seed=seed)
        rewards = policy.score(batch, prompts, completions)
        _, zero_spread = policy.advantages(rewards.total, rewards.heads)
        rollout = Rollout(batch, prompts, completions, rewards, zero_spread | padding)
        rollouts.append(rollout)
        return policy.informative(rollout) & (not padding)

    found = refill_rounds(policy.informative(first), target, policy.dynamic_sampling.max_tries, source.can_draw, draw, agree=policy._agree)
    return rollouts, found


def kept_batch(
    rollouts: list[Rollout],
    found: Refill,
    *,
    group_size: int,
    micro_batch_prompts: int | None,
    max_kept: int,
    build_prompts: Callable[[list[GeoSample]], PromptBatch],
    advantages: Callable[[torch.Tensor, dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]],
    pad_token_id: int,
) -> TrainBatch | None:
    """The kept groups, with advantages recomputed over them (``scale_rewards: batch`` takes the
    kept batch's std), plus padding groups up to the micro-batch count of the fullest rank
    (``max_kept``: the most groups any rank kept); ``None`` when no rank kept a group."""
    n = group_size
    kept = found.kept
    count = padded_group_count(len(kept), max_kept, micro_batch_prompts)
    if count == 0:
        return None
    picks = kept + pad_picks(kept, [len(r.batch) for r in rollouts], count - len(kept))
    first = rollouts[0]
    if picks == [(0, g) for g in range(len(first.batch))]:  # the step's own batch, every group kept
        prompts, completions = first.prompts, first.completions
    else:
        prompts = build_prompts([rollouts[r].batch[g] for r, g in picks])
        completions = gather_completions([r.completions for r in rollouts], picks, n, pad_token_id)
    values = torch.zeros(count * n)  # [K*G]
    if kept:
        total = torch.cat([rollouts[r].rewards.total[group_rows(g, n)] for r, g in kept])
        heads = {name: torch.cat([rollouts[r].rewards.heads[name][group_rows(g, n)] for r, g in kept]) for name in first.rewards.heads}
        values[: len(kept) * n] = advantages(total, heads)[0]
    pad_rows = torch.arange(count * n) >= len(kept) * n  # [K*G]
    return TrainBatch(prompts, completions, values, pad_rows if bool(pad_rows.any()) else None)


def concat_rollouts(rollouts: list[Rollout], group_size: int, pad_token_id: int) -> Rollout:
    """Every group rolled out this step, in draw order (for the logs; the prompts are the first's)."""
    if len(rollouts) == 1:
        return rollouts[0]
    picks = [(r, g) for r, ro in enumerate(rollouts) for g in range(len(ro.batch))]
    heads = {name: torch.cat([r.rewards.heads[name] for r in rollouts]) for name in rollouts[0].rewards.heads}
    return Rollout(
        batch=[s for r in rollouts for s in r.batch], prompts=rollouts[0].prompts,
        completions=gather_completions([r.completions for r in rollouts], picks, group_size, pad_token_id),
        rewards=Rewards(heads=heads, total=torch.cat([r.rewards.total for r in rollouts])),
        zero_spread=torch.cat([r.zero_spread for r in rollouts]),
    )
