"""Dynamic sampling: the pure selection / refill logic on hand-made rewards
(``globe.grpo.dynamic_sampling``), then GRPOPolicy's kept batch, its padding and its step
without gradient on the tiny model."""

from __future__ import annotations

import threading

import pytest
import torch

from globe.grpo.advantages import group_advantages
from globe.grpo.dynamic_sampling import (
    Refill, first_informative, informative_groups, pad_picks, padded_group_count, refill_rounds,
)
from globe.grpo.trajectory import Rewards, Rollout
from globe.rollout.base import SamplingConfig
from test_policy import _FakeTrainerOptim, _policy, _sample

G = 3


def _flags(*groups: list[float], min_std: float = 0.0) -> torch.Tensor:
    rewards = torch.tensor([r for g in groups for r in g])
    _, zero_spread = group_advantages(rewards, G)
    return informative_groups(zero_spread, rewards, G, min_std)


def _script(*rounds: list[bool]):
    """A ``draw`` that returns the given rounds' flags, and the number of draws it made."""
    made = []

    def draw() -> torch.Tensor:
        made.append(1)
        return torch.tensor(rounds[len(made) - 1])

    return draw, made


def test_groups_of_equal_rewards_are_not_informative():
    flags = _flags([1, 1, 1], [0, 1, 0], [0.5, 0.5, 0.5], [0.2, 0.3, 0.2], [0, 0, 0])
    assert flags.tolist() == [False, True, False, True, False]
    # std [0, 1, 0] = 0.577, std [0.2, 0.3, 0.2] = 0.058: a 0.1 threshold drops the second
    assert _flags([0, 1, 0], [0.2, 0.3, 0.2], min_std=0.1).tolist() == [True, False]


def test_refill_keeps_the_first_informative_groups_in_draw_order():
    first = _flags([1, 1, 1], [0, 1, 0], [0, 0, 0], [0, 0, 1])  # groups 1 and 3 informative
    draw, made = _script([False, False, False, False], [True, True, True, False])
    refill = refill_rounds(first, target=4, max_refills=3, can_draw=lambda: True, draw=draw)
    # 2 from the step's batch, none from the first refill, 2 of the 3 of the second (the third is surplus)
    assert refill.kept == [(0, 1), (0, 3), (2, 0), (2, 1)]
    assert (refill.refills, len(made), refill.stopped, refill.short) == (2, 2, "full", False)
    assert refill.log_dict() == {
        "train/dynamic_sampling/refills": 2.0, "train/dynamic_sampling/tries": 3.0,
        "train/dynamic_sampling/informative_fraction": 5 / 12, "train/dynamic_sampling/kept_groups": 4.0,
    }


def test_a_full_batch_draws_nothing():
    draw, made = _script()
    refill = refill_rounds(torch.tensor([True, True]), target=2, max_refills=3, can_draw=lambda: True, draw=draw)
    assert (refill.kept, refill.refills, made) == ([(0, 0), (0, 1)], 0, [])


@pytest.mark.parametrize("max_refills", [0, 1, 3])
def test_refills_stop_at_the_cap_and_the_step_goes_ahead_short(max_refills):
    draw, made = _script(*[[False, False]] * 5)
    refill = refill_rounds(torch.tensor([True, False]), target=2, max_refills=max_refills, can_draw=lambda: True, draw=draw)
    assert len(made) == refill.refills == max_refills
    assert (refill.kept, refill.stopped, refill.short) == ([(0, 0)], "max_refills", True)


def test_refills_stop_when_the_epoch_runs_out():
    draw, made = _script([False, False], [True, True])
    available = iter([True, False])
    refill = refill_rounds(torch.tensor([False, False]), target=2, max_refills=3, can_draw=lambda: next(available), draw=draw)
    assert (refill.refills, refill.kept, refill.stopped) == (1, [], "data")


def test_ranks_run_the_same_rounds():
    """Two ranks, one all-reduce per round (emulated with a barrier): rank 0 is full at once, rank 1
    needs two refills; both draw twice, rank 0 keeps its own batch and drops its surplus."""
    barrier, votes, results = threading.Barrier(2), [None, None], {}

    def agree_as(rank: int):
        def agree(need: bool, can_draw: bool) -> bool:
            votes[rank] = (need, can_draw)
            barrier.wait()
            answer = any(v[0] for v in votes) and all(v[1] for v in votes)
            barrier.wait()
            return answer
        return agree

    scripts = {0: ([True, True], [[True, True], [True, True]]), 1: ([False, False], [[True, False], [False, True]])}

    def run(rank: int) -> None:
        first, rounds = scripts[rank]
        draw, made = _script(*rounds)
        results[rank] = (refill_rounds(torch.tensor(first), 2, 3, lambda: True, draw, agree=agree_as(rank)), made)

    threads = [threading.Thread(target=run, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results[0][1]) == len(results[1][1]) == 2
    assert results[0][0].kept == [(0, 0), (0, 1)]
    assert results[1][0].kept == [(1, 0), (2, 1)]


def test_padding_matches_the_fullest_ranks_micro_batches():
    assert padded_group_count(2, 2, None) == 2  # the fullest rank pads nothing
    assert padded_group_count(1, 2, None) == 1  # one micro-batch either way
    assert padded_group_count(0, 2, None) == 1  # a rank with nothing still runs one
    assert padded_group_count(1, 4, 1) == 4  # micro-batches of 1: 4 on the fullest rank
    assert padded_group_count(3, 4, 2) == 3  # 2 micro-batches already
    assert padded_group_count(0, 0, 2) == 0  # nobody kept anything: no forward at all
    assert first_informative([torch.tensor([False, True])], 1) == [(0, 1)]
    assert pad_picks([(0, 1)], [2, 2], 2) == [(0, 0), (1, 0)]  # dropped groups first, in draw order


# ------------------------------------------------------------------ on the policy (tiny model)

def _rollout(policy, keys: list[str], rewards: list[float], seed: int) -> Rollout:
    batch = [_sample(k) for k in keys]
    prompts = policy.build_prompts(batch)
    completions = policy.rollout(prompts, sampling=SamplingConfig(1.0, 1.0, 0, 6 + seed, seed=seed))
    total = torch.tensor(rewards)
    _, zero_spread = policy.advantages(total, {"geo": total})
    return Rollout(batch, prompts, completions, Rewards(heads={"geo": total}, total=total), zero_spread)


def _grads(policy) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in policy.model.parameters()])


def _capture(policy) -> None:
    policy.optimizers = lambda: torch.optim.SGD(policy.model.parameters(), lr=0.0)
    policy.manual_backward = lambda loss: loss.backward()


def test_the_kept_batch_holds_the_kept_groups_with_their_own_advantages(tiny_model_dir):
    policy = _policy(tiny_model_dir, group_size=2, dynamic_sampling={"enabled": True}, loss={"scale_rewards": "batch"})
    rollouts = [_rollout(policy, ["a", "b"], [1.0, 1.0, 0.0, 1.0], seed=1), _rollout(policy, ["c", "d"], [0.0, 0.5, 0.0, 0.0], seed=2)]
    refill = Refill(rounds=[policy.informative(r) for r in rollouts], kept=[(0, 1), (1, 0)], target=2, stopped="full")
    train = policy.kept_batch(rollouts, refill)
    assert train.prompts.texts == [rollouts[0].prompts.texts[1], rollouts[1].prompts.texts[0]]
    assert train.completions.texts == rollouts[0].completions.texts[2:4] + rollouts[1].completions.texts[0:2]
    assert train.pad_rows is None
    # "batch" scaling: the std of the kept rewards [0, 1, 0, 0.5], not of everything rolled out
    want, _ = group_advantages(torch.tensor([0.0, 1.0, 0.0, 0.5]), 2, scale="batch")
    torch.testing.assert_close(train.advantages, want)


def test_every_group_kept_trains_on_the_steps_own_batch(tiny_model_dir):
    policy = _policy(tiny_model_dir, group_size=2, dynamic_sampling={"enabled": True})
    first = _rollout(policy, ["a", "b"], [1.0, 0.0, 0.0, 1.0], seed=1)
    train = policy.kept_batch([first], Refill(rounds=[policy.informative(first)], kept=[(0, 0), (0, 1)], target=2, stopped="full"))
    assert train.prompts is first.prompts and train.completions is first.completions  # as without dynamic sampling
    torch.testing.assert_close(train.advantages, policy.advantages(first.rewards.total)[0])


@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "dr_grpo"])
def test_padding_groups_change_neither_the_loss_nor_the_gradient(tiny_model_dir, loss_type):
    """A rank that pads (to run as many micro-batches as the fullest rank) trains exactly as on its
    kept groups alone: no loss from the padding rows, and the normalisers count only the kept ones."""
    policy = _policy(tiny_model_dir, group_size=2, dynamic_sampling={"enabled": True}, loss={"loss_type": loss_type},
                     optim={"micro_batch_prompts": 1})
    _capture(policy)
    rollout = _rollout(policy, ["a", "b"], [1.0, 0.0, 0.0, 0.0], seed=3)
    refill = Refill(rounds=[policy.informative(rollout)], kept=[(0, 0)], target=2, stopped="max_refills")
    alone = policy.kept_batch([rollout], refill)
    policy._all_reduce_max = lambda value: 2  # another rank kept 2 groups: 2 micro-batches of 1
    padded = policy.kept_batch([rollout], refill)
    assert len(alone.prompts) == 1 and len(padded.prompts) == 2 and padded.pad_rows.tolist() == [False, False, True, True]
    losses, grads = [], []
    for train in (alone, padded):
        policy.model.zero_grad()
        losses.append(policy.optimize(train.prompts, train.completions, train.advantages, pad_rows=train.pad_rows)["loss"])
        grads.append(_grads(policy))
    assert losses[0] == pytest.approx(losses[1], abs=1e-7)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-7)


def test_a_step_with_nothing_kept_moves_no_weight(tiny_model_dir):
    policy = _policy(tiny_model_dir, group_size=2, dynamic_sampling={"enabled": True}, optim={"weight_decay": 0.1})
    trainer = _FakeTrainerOptim(policy)
    rollout = _rollout(policy, ["a"], [1.0, 0.0], seed=1)
    policy.optimize(rollout.prompts, rollout.completions, policy.advantages(rollout.rewards.total)[0])  # AdamW moments != 0
    assert policy.kept_batch([rollout], Refill(rounds=[torch.tensor([False])], kept=[], target=1, stopped="max_refills")) is None
    weights = [p.detach().clone() for p in policy.model.parameters()]
    moments = {k: v.clone() for k, v in trainer.opt.state[next(iter(trainer.opt.state))].items()}
    lr_steps = trainer.scheduler.last_epoch
    stats = policy.step_without_gradient()
    assert stats["loss"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(weights, policy.model.parameters()))
    assert all(torch.equal(moments[k], v) for k, v in trainer.opt.state[next(iter(trainer.opt.state))].items())
    assert trainer.scheduler.last_epoch == lr_steps + 1  # the schedule counts the step
