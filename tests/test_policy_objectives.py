"""GRPOPolicy's objective settings (``loss``: loss_type / scale_rewards / reward_aggregation /
mask_truncated_completions), eval_group_size; the demo's loss is today's, bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from globe.answer import format_answer
from globe.grpo.logprobs import completion_logprobs
from globe.grpo.loss import grpo_loss
from globe.metrics import GeoAccuracy
from globe.policy import GRPOPolicy
from globe.rewards.format import FormatReward
from globe.rollout.base import Completions, SamplingConfig
from test_policy import _policy, _sample

REPO = Path(__file__).resolve().parents[1]


def _capture_grads(policy: GRPOPolicy) -> None:
    """optimize with an optimiser that does not move the weights, so the gradients can be read."""
    policy.optimizers = lambda: torch.optim.SGD(policy.model.parameters(), lr=0.0)
    policy.manual_backward = lambda loss: loss.backward()


def _grads(policy: GRPOPolicy) -> list[torch.Tensor]:
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in policy.model.parameters()]


def test_the_loss_settings_configure_the_objective(tiny_model_dir):
    path = str(tiny_model_dir)
    default = GRPOPolicy(model_path=path)
    assert (default.loss_type, default.scale_rewards) == ("dapo", "group")  # today's token mean, group std
    sequence = GRPOPolicy(model_path=path, loss={"loss_type": "grpo", "scale_rewards": "none"})
    assert (sequence.loss_type, sequence.scale_rewards) == ("grpo", "none")
    assert GRPOPolicy(model_path=path, loss={"loss_type": "dr_grpo"}).scale_rewards == "none"  # Dr. GRPO's default
    with pytest.raises(ValueError, match="loss.loss_type must be one of"):
        GRPOPolicy(model_path=path, loss={"loss_type": "token_mean"})  # the older aggregation names are gone
    with pytest.raises(ValueError, match="LossSettings has no setting 'aggregation'"):
        GRPOPolicy(model_path=path, loss={"aggregation": "sequence_mean"})
    with pytest.raises(ValueError, match="eval_group_size"):
        GRPOPolicy(model_path=path, eval_group_size=0)


def test_demo_loss_is_todays_token_mean_bit_for_bit(tiny_model_dir):
    """The demo's hyper-parameters (configs/demo.yaml) give exactly the loss and gradient of
    today's grpo_loss(aggregation="token_mean") over the step's tokens."""
    demo = yaml.safe_load((REPO / "configs/demo.yaml").read_text())["model"]["init_args"]
    kept = {k: v for k, v in demo.items() if k not in ("model_path", "build_tiny_if_missing", "rewards", "reward_weights")}
    policy = _policy(tiny_model_dir, **{**kept, "optim": {**kept["optim"], "max_grad_norm": None}})
    assert policy.loss_type == "dapo" and policy.scale_rewards == "group"
    _capture_grads(policy)
    batch = [_sample("a"), _sample("b", "Japan", "Tokyo", 35.69, 139.69)]
    prompts = policy.build_prompts(batch)
    completions = policy.rollout(prompts, sampling=SamplingConfig(1.0, 1.0, 0, 10, seed=4))
    advantages, _ = policy.advantages(torch.tensor([1.0, 0.0, 0.2, 0.7, 0.1, 0.1, 0.9, 0.3]))  # demo: G = 4
    stats = policy.optimize(prompts, completions, advantages)
    new = _grads(policy)

    policy.model.zero_grad()
    hp = policy.loss
    logp = completion_logprobs(policy.model, prompts.inputs, completions.ids, completions.mask, policy.sampling.temperature)
    tokens = completions.mask.sum().to(torch.float32).clamp(min=1)
    today, _ = grpo_loss(logp, logp.detach(), None, advantages, completions.mask, beta=hp.beta, eps_low=hp.epsilon,
                         eps_high=hp.epsilon_high, aggregation="token_mean", num_tokens=tokens)
    today.backward()
    assert stats["loss"] == today.item()
    assert all(torch.equal(a, b) for a, b in zip(new, _grads(policy)))


def test_truncated_completions_give_no_loss_when_masked(tiny_model_dir):
    batch = [_sample("a")]
    grads = []
    for masked in (True, False):
        policy = _policy(tiny_model_dir, loss={"mask_truncated_completions": masked})
        _capture_grads(policy)
        prompts = policy.build_prompts(batch)
        completions = policy.rollout(prompts, sampling=SamplingConfig(1.0, 1.0, 0, 8, seed=3))
        if masked:  # row 0 is cut at max_new_tokens: its rows of the loss mask are zeroed
            completions = completions._replace(truncated=torch.tensor([True, False]))
        else:  # the same loss by hand: row 0's mask zeroed, nothing truncated
            mask = completions.mask.clone()
            mask[0] = 0
            completions = completions._replace(mask=mask, truncated=torch.tensor([False, False]))
        stats = policy.optimize(prompts, completions, torch.tensor([1.0, -1.0]))
        grads.append(torch.cat([g.flatten() for g in _grads(policy)]))
        if masked:
            assert stats["num_tokens"] == float(completions.mask[1].sum())  # row 0's tokens left the count
            logged = {}
            policy.log_dict = lambda d, **_: logged.update(d)
            policy.log = lambda *a, **k: None
            policy.log_step(batch, completions, policy.score(batch, prompts, completions), torch.tensor([False]), stats, {})
            assert float(logged["train/truncated_fraction"]) == 0.5  # still counted and logged
            assert float(logged["train/masked_truncated_fraction"]) == 0.5
    assert torch.abs(grads[0]).sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-7)


def test_normalize_then_sum_uses_the_heads(tiny_model_dir):
    policy = _policy(tiny_model_dir, loss={"reward_aggregation": "normalize_then_sum", "scale_rewards": "none"})
    heads = {"geo": torch.tensor([1.0, 0.0]), "format": torch.tensor([1.0, 1.0])}
    # geo normalised in its group: +-0.5 / (sqrt(0.5) + 1e-4) = +-0.70700; format is constant: 0;
    # weights geo 1.0, format 0.5 -> [0.70700, -0.70700]
    adv, zero = policy.advantages(torch.tensor([1.5, 0.5]), heads)
    torch.testing.assert_close(adv, torch.tensor([0.5, -0.5]) / (0.5 ** 0.5 + 1e-4))
    assert zero.tolist() == [False]
    with pytest.raises(ValueError, match="per-head"):
        policy.advantages(torch.tensor([1.5, 0.5]))


def _fixed_rollout(policy: GRPOPolicy, texts: list[str], calls: list[int]):
    def rollout(prompts, sampling=None, n=None, seed=None):
        calls.append(n)
        rows = len(texts)
        return Completions(ids=torch.zeros(rows, 1, dtype=torch.long), mask=torch.ones(rows, 1, dtype=torch.long),
                           logprobs=torch.zeros(rows, 1), truncated=torch.tensor([True] + [False] * (rows - 1)), texts=texts)
    policy.rollout = rollout


def test_eval_group_size_adds_best_of_k(tiny_model_dir):
    policy = _policy(tiny_model_dir, eval_group_size=3, rewards=[FormatReward()], reward_weights={"format": 1.0})
    batch = [_sample("paris"), _sample("tokyo", "Japan", "Tokyo", 35.6895, 139.6917)]
    texts = [
        "no idea", format_answer("..", "France", "Lyon"), format_answer("..", "France", "Paris"),  # Paris: best is 3rd
        format_answer("..", "Japan", "Osaka"), "none", format_answer("..", "Japan", "Sapporo"),  # Tokyo: Osaka, 1st
    ]
    calls, logged = [], {}
    _fixed_rollout(policy, texts, calls)
    policy.log_dict = lambda d, **_: logged.update(d)
    predictions = policy._evaluate(batch, 0, policy.val_geo, "val", policy.val_best_geo)
    assert calls == [3]
    assert [p.pred_text for p in predictions] == [texts[0], texts[3]]  # the first sample's rows, as with k = 1
    # rewards and truncation of the first samples only: "no idea" (truncated, format 0), Osaka (format 1)
    assert float(logged["val/truncated_fraction"]) == 0.5 and float(logged["val/reward"]) == 0.5
    policy.on_validation_epoch_end()
    # first samples: unresolved, Osaka (~400 km from Tokyo); best of 3: Paris (0 km), Osaka
    assert float(logged["val/acc@25km"]) == 0.0 and float(logged["val/acc@750km"]) == 0.5
    assert float(logged["val/best_of_k/acc@25km"]) == 0.5 and float(logged["val/best_of_k/acc@750km"]) == 1.0
    assert float(logged["val/best_of_k/n"]) == 2 and float(logged["val/n_unresolved"]) == 1


def test_eval_group_size_one_is_todays_single_sample(tiny_model_dir):
    policy = _policy(tiny_model_dir, rewards=[FormatReward()], reward_weights={"format": 1.0})
    calls, metrics = [], {}
    _fixed_rollout(policy, [format_answer("..", "France", "Paris")], calls)
    policy.log_dict = lambda d, **_: metrics.update(d)
    best = GeoAccuracy()
    policy._evaluate([_sample("paris")], 0, policy.val_geo, "val", best)
    assert calls == [1] and len(best.dist_km) == 0  # no best-of-k update
    policy.on_validation_epoch_end()
    assert not any("best_of_k" in k for k in metrics)
