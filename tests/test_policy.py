"""GRPOPolicy: the orchestration of rollout -> score -> advantage -> loss, on the tiny model."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from PIL import Image

from data_modules.sample import GeoSample
from globe.answer import format_answer
from globe.evaluation import evaluate_completions, metric_inputs
from globe.grpo.loss_types import LOSS_TYPES
from globe.policy import GRPOPolicy
from globe.rewards.format import FormatReward
from globe.rewards.geo_accuracy import GeoAccuracyReward
from globe.rollout.base import Completions, SamplingConfig


def _sample(key: str, country: str = "France", city: str = "Paris", lat: float = 48.8566, lon: float = 2.3522) -> GeoSample:
    image = Image.new("RGB", (112, 112), (120 + len(key), 160, 200))
    return GeoSample(key=key, image=image, lat=lat, lon=lon, country=country, city=city,
                     reasoning=format_answer("The flag is blue-white-red.", country, city))


def _policy(model_dir, **kwargs) -> GRPOPolicy:
    """The tiny policy; a settings group given as a dict (``loss={...}``) updates the defaults' group."""
    defaults = dict(
        model_path=str(model_dir), group_size=2, loss={"beta": 0.0}, optim={"learning_rate": 1e-2, "max_grad_norm": None},
        sampling=SamplingConfig(temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=8),
        rewards=[GeoAccuracyReward(), FormatReward()], reward_weights={"geo": 1.0, "format": 0.5},
    )
    for key, value in kwargs.items():
        merge = key in ("loss", "optim") and isinstance(value, dict)
        defaults[key] = {**defaults[key], **value} if merge else value
    policy = GRPOPolicy(**defaults)
    policy.configure_model()
    return policy


class _FakeTrainerOptim:
    """``optimize`` calls ``self.optimizers()`` / ``lr_schedulers()`` / ``manual_backward``: give it
    the module's own AdamW and schedule, as Lightning would."""

    def __init__(self, policy: GRPOPolicy) -> None:
        config = policy.configure_optimizers()
        self.opt, self.scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
        policy.optimizers = lambda: self.opt
        policy.lr_schedulers = lambda: self.scheduler
        policy.manual_backward = lambda loss: loss.backward()


def test_invalid_configuration_is_rejected(tiny_model_dir):
    with pytest.raises(ValueError, match="group_size"):
        GRPOPolicy(model_path=str(tiny_model_dir), group_size=1)
    with pytest.raises(ValueError, match="match no reward head"):
        GRPOPolicy(model_path=str(tiny_model_dir), rewards=[FormatReward()], reward_weights={"acc": 1.0})
    with pytest.raises(ValueError, match="distinct names"):
        GRPOPolicy(model_path=str(tiny_model_dir), rewards=[FormatReward(), FormatReward()])
    missing = GRPOPolicy(model_path=str(tiny_model_dir) + "-absent")
    with pytest.raises(FileNotFoundError, match="build_tiny_if_missing"):
        missing.configure_model()
    unsharded = GRPOPolicy(model_path=str(tiny_model_dir), fsdp_compute_dtype="bfloat16")
    with pytest.raises(ValueError, match="ModelParallelStrategy"):
        unsharded.configure_model()


def test_wrapping_strategies_are_refused_with_the_alternative(tiny_model_dir):
    from types import SimpleNamespace

    from lightning.pytorch.strategies import FSDPStrategy

    policy = GRPOPolicy(model_path=str(tiny_model_dir))
    policy._trainer = SimpleNamespace(strategy=FSDPStrategy())  # FSDP1 (Lightning refuses it on a CPU trainer)
    with pytest.raises(ValueError, match="does not run under FSDPStrategy.*ModelParallelStrategy"):
        policy.configure_model()
    assert policy.model is None


def test_reward_heads_stay_out_of_the_policy_state(tiny_model_dir):
    from globe.rewards.localizability import LocalizabilityReward

    # a head with weights of its own: a whole VLM, configured (and loaded) separately
    head = LocalizabilityReward(model_path=str(tiny_model_dir), max_text_tokens=16)
    policy = _policy(tiny_model_dir, rewards=[head, FormatReward()], reward_weights={"loc": 0.5, "format": 1.0})
    state = {k: v.clone() for k, v in policy.state_dict().items()}
    assert any(k.startswith("model.") for k in state)
    assert not any(k.startswith("reward_heads.") for k in state)
    # a checkpoint without the heads loads strictly; the configured head keeps its own weights
    head_before = {k: v.clone() for k, v in head.state_dict().items()}
    with torch.no_grad():
        for p in policy.model.parameters():
            p.add_(1.0)
    assert not all(torch.equal(state[k], v) for k, v in policy.state_dict().items())
    policy.load_state_dict(state, strict=True)
    assert all(torch.equal(state[k], v) for k, v in policy.state_dict().items())
    assert all(torch.equal(head_before[k], v) for k, v in head.state_dict().items())


def test_score_weights_each_head(tiny_model_dir):
    policy = _policy(tiny_model_dir)
    batch = [_sample("a")]
    prompts = policy.build_prompts(batch)
    good = format_answer("flag", "France", "Paris")  # geo 1.0, format 1.0
    country_only = "country: France\ncity: Lyon"  # geo 0.2 (alpha 0.8), format 0
    completions = Completions(
        ids=torch.zeros(2, 1, dtype=torch.long), mask=torch.ones(2, 1, dtype=torch.long),
        logprobs=torch.zeros(2, 1), truncated=torch.zeros(2, dtype=torch.bool), texts=[good, country_only],
    )
    rewards = policy.score(batch, prompts, completions)
    assert rewards.heads["geo"].tolist() == pytest.approx([1.0, 0.2])
    assert rewards.heads["format"].tolist() == pytest.approx([1.0, 0.0])
    # total = 1.0 * geo + 0.5 * format
    assert rewards.total.tolist() == pytest.approx([1.5, 0.2])


def test_optimize_moves_logprobs_along_the_advantage(tiny_model_dir):
    """One step with A = [+1, -1]: the favoured completion gets likelier, the other less likely."""
    from globe.grpo.logprobs import completion_logprobs

    torch.manual_seed(0)
    policy = _policy(tiny_model_dir, optim={"learning_rate": 1e-3})
    _FakeTrainerOptim(policy)
    batch = [_sample("a")]
    prompts = policy.build_prompts(batch)
    completions = policy.rollout(prompts)
    assert completions.ids.shape[0] == 2
    before = completion_logprobs(policy.model, prompts.inputs, completions.ids, completions.mask).sum(dim=1)
    stats = policy.optimize(prompts, completions, torch.tensor([1.0, -1.0]))
    after = completion_logprobs(policy.model, prompts.inputs, completions.ids, completions.mask).sum(dim=1)
    assert after[0] > before[0] and after[1] < before[1]
    # single pass: ratio is exactly 1, nothing is clipped
    assert stats["ratio_mean"] == pytest.approx(1.0)
    assert stats["clip_fraction"] == 0.0
    assert stats["lr"] == 1e-3


def test_rollout_seeds_follow_the_step_not_the_global_rng(tiny_model_dir):
    policy = _policy(tiny_model_dir)
    prompts = policy.build_prompts([_sample("a"), _sample("b", "Japan", "Tokyo", 35.69, 139.69)])
    torch.manual_seed(1)
    first = policy.rollout(prompts)  # step 0 (no trainer)
    torch.manual_seed(2)
    torch.rand(1000)  # whatever else consumed random numbers in between
    again = policy.rollout(prompts)
    assert torch.equal(first.ids, again.ids)
    next_step = policy.rollout(prompts, seed=policy.rollout_seed("train", 1, policy.sampling))
    assert not torch.equal(first.ids, next_step.ids)
    # validation batch k gets one seed whatever the step; the configured seed is the base
    assert policy.rollout_seed("val", 0, policy.eval_sampling) != policy.rollout_seed("val", 1, policy.eval_sampling)
    seeded = replace(policy.sampling, seed=5)
    assert policy.rollout_seed("train", 0, seeded) != policy.rollout_seed("train", 0, policy.sampling)


def test_zero_advantages_leave_weights_unchanged(tiny_model_dir):
    """All rewards equal -> zero-spread group -> zero advantage -> zero gradient -> AdamW no-op."""
    policy = _policy(tiny_model_dir)
    _FakeTrainerOptim(policy)
    batch = [_sample("a")]
    prompts = policy.build_prompts(batch)
    completions = policy.rollout(prompts)
    advantages, zero_spread = policy.advantages(torch.tensor([0.7, 0.7]))
    assert zero_spread.tolist() == [True] and advantages.tolist() == [0.0, 0.0]
    before = [p.detach().clone() for p in policy.model.parameters()]
    policy.optimize(prompts, completions, advantages)
    assert all(torch.equal(a, b) for a, b in zip(before, policy.model.parameters()))


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_micro_batches_give_the_same_gradient_as_one_batch(tiny_model_dir, loss_type):
    """Every loss type normalises each micro-batch by the whole step: one piece or group by group,
    the gradient is the same."""
    torch.manual_seed(0)
    batch = [_sample("a"), _sample("b", "Japan", "Tokyo", 35.69, 139.69)]
    grads = []
    for chunk in (None, 1):
        policy = _policy(tiny_model_dir, optim={"micro_batch_prompts": chunk}, loss={"loss_type": loss_type})
        policy.optimizers = lambda: torch.optim.SGD(policy.model.parameters(), lr=0.0)
        policy.manual_backward = lambda loss: loss.backward()
        prompts = policy.build_prompts(batch)
        torch.manual_seed(1)
        completions = policy.rollout(prompts, sampling=SamplingConfig(1.0, 1.0, 0, 8, seed=3))
        policy.optimize(prompts, completions, torch.tensor([1.0, -1.0, 0.5, -0.5]))
        grads.append(torch.cat([p.grad.flatten() for p in policy.model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_warm_start_lowers_the_nll_of_the_reference_reasoning(tiny_model_dir):
    policy = _policy(tiny_model_dir, warm_start={"steps": 5, "lr": 3e-3})
    _FakeTrainerOptim(policy)
    logged = []
    policy.log_dict = lambda d, **_: logged.append(float(d["warm_start/nll"]))
    policy.log = lambda *a, **k: None
    batch = [_sample("a"), _sample("b", "Japan", "Tokyo", 35.69, 139.69)]
    for _ in range(5):
        policy.warm_start_step(batch)
    assert logged[-1] < logged[0] - 0.5


def test_evaluate_completions_scores_names_and_counts_unresolved():
    from globe.geo.gazetteer import Gazetteer

    gaz = Gazetteer.load()
    samples = [_sample("paris"), _sample("tokyo", "Japan", "Tokyo", 35.6895, 139.6917), _sample("x")]
    texts = [
        format_answer("...", "France", "Paris"),
        "<think>hmm</think><answer>country: Japan\ncity: Osaka</answer>",  # right country, wrong city
        "I have no idea",  # unparseable: a miss, never dropped
    ]
    preds = evaluate_completions(gaz, samples, texts)
    assert [p.country_ok for p in preds] == [1.0, 1.0, 0.0]
    assert [p.city_ok for p in preds] == [1.0, 0.0, 0.0]
    assert preds[0].pred_level == "city" and abs(preds[0].pred_lat - 48.85) < 0.1
    assert math.isnan(preds[2].pred_lat) and preds[2].pred_level == ""
    inputs = metric_inputs(preds)
    assert inputs["country_ok"].tolist() == [True, True, False]

    from globe.metrics import GeoAccuracy

    metric = GeoAccuracy()
    metric.update(**inputs)
    out = metric.compute()
    # Paris within 25 km; Osaka is ~400 km from Tokyo (within 750 km); the third is unresolved
    assert out["acc@25km"].item() == pytest.approx(1 / 3)
    assert out["acc@750km"].item() == pytest.approx(2 / 3)
    assert out["n_unresolved"].item() == 1
