"""Weights for a vLLM reload: names and LoRA merging (no vLLM needed: runs in every environment)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from globe.rollout.vllm_weights import base_name, hf_named_weights, is_peft_model

peft = pytest.importorskip("peft")


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = nn.Linear(4, 3, bias=True)
        self.norm = nn.LayerNorm(4)


class Toy(nn.Module):
    """Named like a checkpoint: ``model.layers.0.q_proj.weight``, ``lm_head.weight``."""

    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Module()
        self.model.layers = nn.ModuleList([Block(), Block()])
        self.lm_head = nn.Linear(4, 5, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.model.layers:
            x = layer.norm(x)
            x = torch.cat([layer.q_proj(x), x[..., :1]], dim=-1)
        return self.lm_head(x)


def lora(model: nn.Module, **extra) -> nn.Module:
    config = peft.LoraConfig(r=1, lora_alpha=2, target_modules=["q_proj"], init_lora_weights=False, **extra)
    return peft.get_peft_model(model, config)


def test_base_name_strips_peft_prefix_infix_and_modules_to_save() -> None:
    assert base_name("base_model.model.model.layers.0.q_proj.base_layer.weight") == "model.layers.0.q_proj.weight"
    assert base_name("base_model.model.model.layers.0.q_proj.base_layer.bias") == "model.layers.0.q_proj.bias"
    assert base_name("base_model.model.lm_head.modules_to_save.default.weight") == "lm_head.weight"
    assert base_name("base_model.model.model.layers.1.norm.weight") == "model.layers.1.norm.weight"


def test_plain_model_weights_are_its_parameters() -> None:
    model = Toy()
    sent = dict(hf_named_weights(model))
    assert not is_peft_model(model)
    assert list(sent) == [name for name, _ in model.named_parameters()]
    assert all(sent[name] is not p and torch.equal(sent[name], p) for name, p in model.named_parameters())
    assert not any(t.requires_grad for t in sent.values())


def test_lora_merge_hand_worked() -> None:
    # W = 0, A = 1, B = 1, r = 1, alpha = 2 -> scale 2, merged = 2 * B @ A = 2 everywhere
    model = lora(Toy())
    for layer in model.base_model.model.model.layers:
        torch.nn.init.zeros_(layer.q_proj.base_layer.weight)
        torch.nn.init.ones_(layer.q_proj.lora_A["default"].weight)
        torch.nn.init.ones_(layer.q_proj.lora_B["default"].weight)
    sent = dict(hf_named_weights(model))
    assert torch.equal(sent["model.layers.0.q_proj.weight"], torch.full((3, 4), 2.0))
    assert torch.equal(model.base_model.model.model.layers[0].q_proj.base_layer.weight, torch.zeros(3, 4))  # untouched


def test_lora_weights_equal_peft_merge_and_unload() -> None:
    torch.manual_seed(0)
    model = lora(Toy(), modules_to_save=["lm_head"])
    with torch.no_grad():  # a trained head copy, different from the original
        model.base_model.model.lm_head.modules_to_save["default"].weight.add_(1.0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    sent = dict(hf_named_weights(model))
    merged = copy.deepcopy(model).merge_and_unload()
    expected = dict(merged.named_parameters())
    assert sorted(sent) == sorted(expected)  # base names only: no lora_A / lora_B / original_module
    for name, tensor in sent.items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=1e-7)
    x = torch.randn(2, 4)
    torch.testing.assert_close(merged(x), model(x))  # the merge is the adapted model
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())  # training model unchanged
    assert not any(m.merged for m in model.modules() if isinstance(m, peft.tuners.lora.LoraLayer))


def test_lora_already_merged_is_not_added_twice() -> None:
    torch.manual_seed(0)
    model = lora(Toy())
    expected = dict(copy.deepcopy(model).merge_and_unload().named_parameters())
    model.merge_adapter()  # peft's in-place merge: base weights already hold the update
    sent = dict(hf_named_weights(model))
    torch.testing.assert_close(sent["model.layers.1.q_proj.weight"], expected["model.layers.1.q_proj.weight"])
