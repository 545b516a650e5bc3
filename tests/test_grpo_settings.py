"""The policy's settings groups (``globe.grpo.settings``): defaults, checks with the setting's name,
mappings, and hyper-parameters that a ``weights_only`` load reads."""

from __future__ import annotations

import io

import pytest
import torch

from globe.grpo.settings import DynamicSamplingSettings, LossSettings, OptimSettings, WarmStartSettings, as_settings


def test_defaults_are_the_papers():
    loss, optim = LossSettings(), OptimSettings()
    assert (loss.beta, loss.epsilon, loss.epsilon_high, loss.loss_type) == (0.001, 0.2, None, "dapo")
    assert (optim.learning_rate, optim.num_iterations, optim.lr_decay, optim.max_grad_norm) == (1e-6, 1, "constant", 1.0)
    assert WarmStartSettings().steps == 0  # no SFT cold start
    assert not DynamicSamplingSettings().enabled


def test_scale_rewards_defaults_by_loss_type():
    assert LossSettings().effective_scale_rewards == "group"
    assert LossSettings(loss_type="dr_grpo").effective_scale_rewards == "none"  # Dr. GRPO drops the std
    assert LossSettings(loss_type="dr_grpo", scale_rewards="group").effective_scale_rewards == "group"  # unless asked for


@pytest.mark.parametrize(("cls", "kwargs", "message"), [
    (LossSettings, {"loss_type": "ppo"}, r"loss\.loss_type must be one of grpo, dr_grpo, dapo, bnpo, gspo"),
    (LossSettings, {"beta": -0.1}, r"loss\.beta must be >= 0"),
    (LossSettings, {"epsilon": 0.0}, r"loss\.epsilon must be > 0"),
    (LossSettings, {"scale_rewards": "std"}, r"loss\.scale_rewards must be one of group, batch, none"),
    (LossSettings, {"reward_aggregation": "mean"}, r"loss\.reward_aggregation"),
    (LossSettings, {"is_cap": 0}, r"loss\.is_cap must be > 0"),
    (OptimSettings, {"learning_rate": "1e-5"}, r"optim\.learning_rate must be a finite number"),  # YAML 1.1 reads 1e-5 as text
    (OptimSettings, {"num_iterations": 0}, r"optim\.num_iterations must be >= 1"),
    (OptimSettings, {"micro_batch_prompts": 0}, r"optim\.micro_batch_prompts must be >= 1"),
    (OptimSettings, {"warmup_steps": 2.5}, r"optim\.warmup_steps must be an integer"),
    (OptimSettings, {"min_lr_ratio": 1.5}, r"optim\.min_lr_ratio must be <= 1"),
    (OptimSettings, {"lr_decay": "step"}, r"optim\.lr_decay must be one of constant, cosine, linear"),
    (WarmStartSettings, {"steps": -1}, r"warm_start\.steps must be >= 0"),
    (WarmStartSettings, {"decay": "exp"}, r"warm_start\.decay"),
    (DynamicSamplingSettings, {"max_tries": -1}, r"dynamic_sampling\.max_tries must be >= 0"),
    (DynamicSamplingSettings, {"min_std": -0.5}, r"dynamic_sampling\.min_std must be >= 0"),
])
def test_invalid_values_are_refused_with_their_name(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_mappings_become_settings_and_unknown_keys_are_named():
    assert as_settings(WarmStartSettings, {"steps": 3, "lr": 2e-3}) == WarmStartSettings(steps=3, lr=2e-3)
    assert as_settings(LossSettings, None) == LossSettings()
    same = OptimSettings(learning_rate=1e-4)
    assert as_settings(OptimSettings, same) is same
    with pytest.raises(ValueError, match="WarmStartSettings has no setting 'warm_start_steps'"):
        as_settings(WarmStartSettings, {"warm_start_steps": 3})


def test_policy_hyper_parameters_are_plain_and_load_weights_only(tiny_model_dir):
    from globe.policy import GRPOPolicy
    from globe.rollout.base import SamplingConfig

    policy = GRPOPolicy(
        model_path=str(tiny_model_dir), loss=LossSettings(beta=0.0, loss_type="grpo"), optim={"learning_rate": 1e-4},
        warm_start=WarmStartSettings(steps=2), dynamic_sampling={"enabled": True}, sampling=SamplingConfig(max_new_tokens=8),
    )
    assert policy.loss.loss_type == policy.loss_type == "grpo" and policy.optim.learning_rate == 1e-4
    assert policy.warm_start.steps == 2 and policy.dynamic_sampling.enabled
    hparams = dict(policy.hparams)
    assert hparams["loss"]["loss_type"] == "grpo" and hparams["optim"]["learning_rate"] == 1e-4
    buffer = io.BytesIO()
    torch.save({"hyper_parameters": hparams}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)["hyper_parameters"]  # no dataclass to unpickle
    assert loaded["sampling"]["max_new_tokens"] == 8 and loaded["warm_start"]["steps"] == 2
    again = GRPOPolicy(**{k: v for k, v in loaded.items() if not k.startswith("_")})  # as a stored checkpoint gives them
    assert again.loss == policy.loss and again.optim == policy.optim and again.sampling == policy.sampling
