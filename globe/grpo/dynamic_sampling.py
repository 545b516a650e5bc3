"""Dynamic sampling (DAPO, Yu et al. 2025; EasyR1's ``online_filtering``) as pure functions.

A group whose G rewards are all equal has advantage exactly 0 (``group_advantages``): it costs a
forward and backward pass and teaches nothing. Dynamic sampling drops such groups and rolls out
more prompts until the step holds ``target`` informative groups:

    rounds = [informative flags of the step's first batch]            # [B] bool per round
    while some rank has fewer than target informative groups
          and every rank can draw a batch and refills < max_refills:  # one collective decision
        draw the next training batch, roll it out, score it           # every rank, lockstep
        rounds.append(its informative flags)
    kept = the first ``target`` informative groups, in draw order

Choices and deviations:
- A group is informative when its rewards are not all equal (``zero_spread`` of the advantages,
  so under ``normalize_then_sum`` when some weighted head varies) and, with ``min_std > 0``, when the
  unbiased std of its total rewards is at least ``min_std``. DAPO keeps groups whose accuracy is
  neither 0 nor 1; EasyR1 keeps groups whose mean reward lies inside (0.01, 0.99); with continuous
  rewards (distance, grounding) "not all equal" is the criterion that carries over.
- DAPO draws until the *global* batch is full and truncates it; here every rank fills its own
  ``target`` and the rounds are decided together (``agree``: some rank needs more, every rank can
  draw), so every rank rolls out the same number of times: with FSDP2 every ``generate`` is a
  collective. A rank that is already full still draws and rolls out in an extra round (its new
  groups are surplus and dropped): its data stream stays in step with the others, so every rank's
  epoch ends at the same optimiser step.
- DAPO and EasyR1 raise an error when ``max_refills`` draws do not fill the batch; here the step goes
  ahead with what it has (the policy warns and logs it). Surplus informative groups beyond
  ``target`` are dropped, as DAPO truncates its batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from globe.rollout.base import Completions

__all__ = [
    "informative_groups", "first_informative", "refill_rounds", "Refill", "padded_group_count", "any_and_all",
    "pad_picks", "group_rows", "gather_completions",
]


def informative_groups(zero_spread: torch.Tensor, rewards: torch.Tensor, group_size: int, min_std: float = 0.0) -> torch.Tensor:
    """``[B]`` bool: groups with a learning signal.

    Args:
        zero_spread: ``[B]`` bool, every reward of the group equal (as ``group_advantages`` reports).
        rewards: ``[B*G]`` total rewards; row ``b * G + j`` is completion j of prompt b.
        group_size: G.
        min_std: a group also needs an unbiased reward std of at least this (0: any spread).

    >>> z = torch.tensor([False, True, False])
    >>> informative_groups(z, torch.tensor([0.0, 1.0, 0.5, 0.5, 0.4, 0.5]), 2).tolist()
    [True, False, True]
    >>> informative_groups(z, torch.tensor([0.0, 1.0, 0.5, 0.5, 0.4, 0.5]), 2, min_std=0.1).tolist()
    [True, False, False]
    """
    keep = ~zero_spread.bool()
    if min_std > 0:
        keep = keep & (rewards.float().view(-1, group_size).std(dim=1) >= min_std)
    return keep


def first_informative(rounds: Sequence[torch.Tensor], target: int) -> list[tuple[int, int]]:
    """``(round, group)`` of the first ``target`` informative groups, in draw order.

    >>> first_informative([torch.tensor([True, False, True]), torch.tensor([False, True, True])], 3)
    [(0, 0), (0, 2), (1, 1)]
    """
    kept: list[tuple[int, int]] = []
    for r, flags in enumerate(rounds):
        for g in torch.nonzero(flags.bool(), as_tuple=False).flatten().tolist():
            if len(kept) == target:
                return kept
            kept.append((r, g))
    return kept


def any_and_all(need: bool, can_draw: bool) -> bool:
    """The single-process decision of a refill round: this rank needs more and can draw."""
    return need and can_draw


@dataclass
class Refill:
    """The outcome of one step's rollout rounds (this rank)."""

    rounds: list[torch.Tensor]  # [B_r] bool informative flags, per round (round 0: the step's batch)
    kept: list[tuple[int, int]]  # (round, group) of the kept groups, in draw order
    target: int
    stopped: str  # "full", "max_refills" or "data" (the epoch's data ran out on some rank)

    @property
    def refills(self) -> int:
        """Extra batches drawn in this step."""
        return len(self.rounds) - 1

    @property
    def rolled_out_groups(self) -> int:
        return sum(len(r) for r in self.rounds)

    @property
    def informative(self) -> int:
        return int(sum(int(r.sum()) for r in self.rounds))

    @property
    def short(self) -> bool:
        """The step goes ahead with fewer than ``target`` groups."""
        return len(self.kept) < self.target

    def log_dict(self, prefix: str = "train/dynamic_sampling/") -> dict[str, float]:
        return {
            f"{prefix}refills": float(self.refills),
            f"{prefix}tries": float(len(self.rounds)),
            f"{prefix}informative_fraction": self.informative / max(self.rolled_out_groups, 1),
            f"{prefix}kept_groups": float(len(self.kept)),
        }


def refill_rounds(
    first: torch.Tensor,
    target: int,
    max_refills: int,
    can_draw: Callable[[], bool],
    draw: Callable[[], torch.Tensor],
    agree: Callable[[bool, bool], bool] = any_and_all,
) -> Refill:
    """Run the rounds of one step (see the module doc) and pick the kept groups.

    Args:
        first: ``[B]`` informative flags of the step's own batch.
        target: informative groups wanted (the data module's ``batch_size``).
        max_refills: extra batches at most.
        can_draw: whether this rank's training stream has another batch.
        draw: draws, rolls out and scores one more batch; returns its informative flags.
        agree: ``(this rank needs more, this rank can draw) -> run a round``: the same answer on
            every rank (under ``torch.distributed``: some rank needs more and every rank can draw).

    >>> flags = iter([torch.tensor([False, False]), torch.tensor([True, True])])
    >>> r = refill_rounds(torch.tensor([True, False]), 2, 3, lambda: True, lambda: next(flags))
    >>> r.kept, r.refills, r.stopped
    ([(0, 0), (2, 0)], 2, 'full')
    """
    if target < 1:
        raise ValueError(f"dynamic sampling needs a target of at least 1 group, got {target}")
    if max_refills < 0:
        raise ValueError(f"max_refills must be >= 0, got {max_refills}")
    rounds = [first.bool()]
    while True:
        have = sum(int(r.sum()) for r in rounds)
        need = have < target and len(rounds) - 1 < max_refills
        can = can_draw()
        if not agree(need, can):
            break
        rounds.append(draw().bool())
    have = sum(int(r.sum()) for r in rounds)
    if have >= target:
        stopped = "full"
    elif len(rounds) - 1 >= max_refills:
        stopped = "max_refills"
    else:
        stopped = "data"
    return Refill(rounds=rounds, kept=first_informative(rounds, target), target=target, stopped=stopped)


def padded_group_count(kept: int, max_kept: int, micro_batch_prompts: int | None) -> int:
    """Groups a rank optimises on so that it runs as many micro-batches as the fullest rank.

    Under DDP every backward pass all-reduces the gradients and under FSDP2 every forward gathers the
    weights, so every rank must run the same number of micro-batches. A rank with fewer kept groups
    than ``max_kept`` (the most kept on any rank) adds padding groups (loss mask 0: no loss, no size
    in the normalisers) until its micro-batch count matches; ``max_kept == 0`` needs none (the step
    has nothing to optimise on any rank).

    >>> padded_group_count(3, 4, None), padded_group_count(0, 4, None), padded_group_count(1, 4, 2), padded_group_count(0, 0, None)
    (3, 1, 3, 0)
    """
    if max_kept < kept:
        raise ValueError(f"max_kept ({max_kept}) must be the largest kept count, got kept {kept}")
    if max_kept == 0:
        return 0
    per_chunk = micro_batch_prompts or max_kept
    chunks = -(-max_kept // per_chunk)
    return max(kept, (chunks - 1) * per_chunk + 1)


def pad_picks(kept: list[tuple[int, int]], rounds: Sequence[int], count: int) -> list[tuple[int, int]]:
    """``count`` padding groups ``(round, group)``: the dropped groups first, in draw order, then (a
    rank that rolled out fewer groups than it must pad, e.g. after a short last batch) the kept ones
    again. ``rounds``: the groups of each round.

    >>> pad_picks([(0, 1)], [2, 1], 3)
    [(0, 0), (1, 0), (0, 1)]
    """
    taken = set(kept)
    dropped = [(r, g) for r, size in enumerate(rounds) for g in range(size) if (r, g) not in taken]
    pool = dropped + list(kept)
    if count and not pool:
        raise ValueError("no rolled-out group to pad with")
    return [pool[i % len(pool)] for i in range(count)]


def group_rows(group: int, group_size: int) -> slice:
    """The completion rows of one group: ``b * G ... b * G + G - 1``."""
    return slice(group * group_size, (group + 1) * group_size)


def gather_completions(parts: Sequence[Completions], picks: Sequence[tuple[int, int]], group_size: int, pad_id: int) -> Completions:
    """The completions of the picked groups ``(part, group)``, in pick order, right-padded to one width.

    >>> a = Completions(torch.tensor([[5], [6]]), torch.ones(2, 1, dtype=torch.long), torch.zeros(2, 1), torch.tensor([True, False]), ["a", "b"])
    >>> b = Completions(torch.tensor([[7, 8], [9, 0]]), torch.tensor([[1, 1], [1, 0]]), torch.zeros(2, 2), torch.tensor([False, True]), ["c", "d"])
    >>> out = gather_completions([a, b], [(1, 0), (0, 0)], 2, pad_id=0)
    >>> out.ids.tolist(), out.mask.tolist(), out.texts
    ([[7, 8], [9, 0], [5, 0], [6, 0]], [[1, 1], [1, 0], [1, 0], [1, 0]], ['c', 'd', 'a', 'b'])
    """
    if not picks:
        raise ValueError("gather_completions needs at least one group")
    chosen = [(parts[r], group_rows(g, group_size)) for r, g in picks]
    width = max(part.ids.shape[1] for part, _ in chosen)

    def padded(tensor: torch.Tensor, value) -> torch.Tensor:  # [G, C_r] -> [G, width]
        return torch.nn.functional.pad(tensor, (0, width - tensor.shape[1]), value=value)

    return Completions(
        ids=torch.cat([padded(part.ids[rows], pad_id) for part, rows in chosen]),  # [K*G, width]
        mask=torch.cat([padded(part.mask[rows], 0) for part, rows in chosen]),
        logprobs=torch.cat([padded(part.logprobs[rows], 0.0) for part, rows in chosen]),
        truncated=torch.cat([part.truncated[rows] for part, rows in chosen]),  # [K*G]
        texts=[t for part, rows in chosen for t in part.texts[rows]],
    )
