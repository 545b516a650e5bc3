"""Every YAML under configs/reward names real classes with real init arguments."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import yaml

from globe.rewards.base import RewardHead

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "reward").glob("*.yaml"))


def _class(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _check(node: dict) -> type:
    """class_path importable, every init_args key a parameter of its __init__; recursive."""
    cls = _class(node["class_path"])
    params = inspect.signature(cls.__init__).parameters
    for key, value in (node.get("init_args") or {}).items():
        assert key in params, f"{cls.__name__} has no init argument {key!r}"
        if isinstance(value, dict) and "class_path" in value:
            _check(value)
    return cls


def test_there_are_reward_configs():
    names = {p.name for p in CONFIGS}
    assert {"localizability.yaml", "heads_paper.yaml", "heads_two_rewards.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_reward_config_schema(path):
    config = yaml.safe_load(path.read_text())
    if "rewards" in config["model"]["init_args"]:  # head sets composed into a GRPO config
        heads = config["model"]["init_args"]["rewards"]
        names = []
        for node in heads:
            cls = _check(node)
            assert issubclass(cls, RewardHead)
            names.append(node["init_args"]["name"])
            if cls.__name__ != "LocalizabilityReward":  # that one needs a trained checkpoint
                assert cls(**node["init_args"]).name == node["init_args"]["name"]
        assert set(config["model"]["init_args"]["reward_weights"]) <= set(names)
    else:  # a training config: model + data (+ nested source) + trainer
        _check(config["model"])
        _check(config["data"])
        assert "trainer" in config
