"""Loading a local VLM (+ LoRA), and the reference policy of the KL term."""

import re

import numpy as np
import pytest
import torch
from PIL import Image

from globe.grpo.logprobs import completion_logprobs
from globe.grpo.reference import ReferencePolicy
from globe.models.loading import LANGUAGE_MODEL_PROJECTIONS, LoraConfigSpec, load_vlm, resolve_dtype
from globe.models.processor import ImageOnlyQwen2_5_VLProcessor
from globe.rollout.base import SamplingConfig
from globe.rollout.hf_engine import HFRolloutEngine
from globe.rollout.prompts_batch import build_prompt_batch



@pytest.fixture(scope="module")
def tiny_dir(tiny_model_dir):
    return tiny_model_dir


@pytest.fixture(scope="module")
def rollout(tiny_dir):
    """A prompt batch and completions sampled from the untrained tiny model."""
    model, processor = load_vlm(tiny_dir, dtype="float32")
    image = Image.fromarray(np.random.default_rng(2).integers(0, 255, (112, 112, 3), dtype=np.uint8))
    batch = build_prompt_batch(processor, [image])
    out = HFRolloutEngine(model, processor).generate(batch, n=2, sampling=SamplingConfig(max_new_tokens=6, seed=0))
    return batch, out


def test_load_full_model(tiny_dir):
    model, processor = load_vlm(tiny_dir)
    assert isinstance(processor, ImageOnlyQwen2_5_VLProcessor)  # no torchvision here
    assert model.dtype == (torch.bfloat16 if torch.cuda.is_available() else torch.float32)  # "auto"
    assert all(p.requires_grad for p in model.parameters())
    model, _ = load_vlm(tiny_dir, dtype="bfloat16")
    assert model.dtype == torch.bfloat16


def test_resolve_dtype():
    assert resolve_dtype("float32") is torch.float32 and resolve_dtype(torch.float16) is torch.float16
    with pytest.raises(ValueError):
        resolve_dtype("fp8")


def test_lora_targets_language_model_only(tiny_dir):
    model, _ = load_vlm(tiny_dir, dtype="float32", lora=LoraConfigSpec(r=4, alpha=8))
    adapted = [name for name, module in model.named_modules() if hasattr(module, "lora_A")]
    assert len(adapted) == 2 * 7  # 2 layers x q, k, v, o, gate, up, down
    assert all("language_model" in name for name in adapted)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    # the vision tower has modules of the same names; the default target must not match them
    pattern = re.compile(LANGUAGE_MODEL_PROJECTIONS)
    assert pattern.fullmatch("model.language_model.layers.11.mlp.gate_proj")
    assert not pattern.fullmatch("model.visual.blocks.0.mlp.gate_proj")
    assert not pattern.fullmatch("model.vision_tower.encoder.layers.0.self_attn.q_proj")
    assert not pattern.fullmatch("model.visual.blocks.0.attn.qkv")


def adapter_step(model, batch, out, lr=0.5):
    """One optimiser step that pushes up the sampled completions' log-probs."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr)
    loss = -completion_logprobs(model, batch.inputs, out.ids, out.mask).sum()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def test_reference_is_base_model_under_lora(tiny_dir, rollout):
    batch, out = rollout
    base, _ = load_vlm(tiny_dir, dtype="float32")
    lora = LoraConfigSpec(r=4, alpha=8, dropout=0.0)
    policy, processor = load_vlm(tiny_dir, dtype="float32", lora=lora)
    reference = ReferencePolicy.create(policy, lora)
    assert reference.uses_adapters and reference.frozen_copy is None
    with torch.no_grad():
        base_logp = completion_logprobs(base.eval(), batch.inputs, out.ids, out.mask)
    policy.train()
    for _ in range(2):  # the first step only moves B (initialised at 0); the second changes outputs
        adapter_step(policy, batch, out)
    with torch.no_grad():
        policy_logp = completion_logprobs(policy, batch.inputs, out.ids, out.mask)
    ref_logp = reference.logprobs(batch.inputs, out.ids, out.mask)
    assert (policy_logp - base_logp).abs().max() > 1e-3  # the adapters did change the policy
    torch.testing.assert_close(ref_logp, base_logp, rtol=0, atol=1e-6)
    assert policy.training  # mode restored after the reference pass
    # the engine samples from the PeftModel itself: its log-probs are the adapted policy's
    fresh = HFRolloutEngine(policy, processor).generate(batch, 2, SamplingConfig(max_new_tokens=4, seed=1))
    with torch.no_grad():
        torch.testing.assert_close(
            completion_logprobs(policy.eval(), batch.inputs, fresh.ids, fresh.mask), fresh.logprobs, rtol=0, atol=1e-5
        )


def test_frozen_copy_under_full_fine_tuning(tiny_dir, rollout):
    batch, out = rollout
    policy, _ = load_vlm(tiny_dir, dtype="float32")
    reference = ReferencePolicy.create(policy)
    assert not reference.uses_adapters
    assert not any(p.requires_grad for p in reference.frozen_copy.parameters())
    before = reference.logprobs(batch.inputs, out.ids, out.mask)
    frozen_weight = reference.frozen_copy.lm_head.weight.clone()
    adapter_step(policy.train(), batch, out, lr=0.05)
    assert not torch.equal(policy.lm_head.weight, frozen_weight)
    assert torch.equal(reference.frozen_copy.lm_head.weight, frozen_weight)
    torch.testing.assert_close(reference.logprobs(batch.inputs, out.ids, out.mask), before, rtol=0, atol=0)


def test_lora_reference_needs_adapters(tiny_dir):
    policy, _ = load_vlm(tiny_dir, dtype="float32")
    with pytest.raises(ValueError, match="no adapters"):
        ReferencePolicy.create(policy, LoraConfigSpec())


def test_gradient_checkpointing_same_gradients(tiny_dir, rollout):
    batch, out = rollout
    grads = []
    for checkpointing in (False, True):
        model, _ = load_vlm(tiny_dir, dtype="float32", gradient_checkpointing=checkpointing)
        model.train()
        completion_logprobs(model, batch.inputs, out.ids, out.mask).sum().backward()
        grads.append(model.model.language_model.layers[0].mlp.up_proj.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)
