"""Trainer log-probs of completions equal the sampler's (generate's raw logits), image repeats."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import LogitsProcessor, LogitsProcessorList, Qwen2_5_VLForConditionalGeneration

from globe.grpo.logprobs import completion_logprobs, images_per_prompt, repeat_images
from globe.models.processor import ImageOnlyQwen2_5_VLProcessor
from globe.rollout.prompts_batch import build_prompt_batch



@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    path = tiny_model_dir
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
    return model, ImageOnlyQwen2_5_VLProcessor.from_pretrained(path)


def images():
    rng = np.random.default_rng(0)
    # two sizes -> different patch counts (64 and 48 patches) and prompt lengths
    return [
        Image.fromarray(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 255, (84, 112, 3), dtype=np.uint8)),
    ]


class ForceToken(LogitsProcessor):
    """Forces ``token`` at step ``step`` (raw logits, which score the log-probs, are untouched)."""

    def __init__(self, prompt_len, step, token):
        self.prompt_len, self.step, self.token = prompt_len, step, token

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] - self.prompt_len == self.step:
            scores = torch.full_like(scores, -float("inf"))
            scores[:, self.token] = 0.0
        return scores


def sample(model, inputs, n, temperature, new_tokens=12, force=None):
    """Completions, mask and the sampler's log-probs from generate's raw logits."""
    torch.manual_seed(0)
    eos = model.generation_config.eos_token_id
    processors = LogitsProcessorList([ForceToken(inputs["input_ids"].shape[1], *force)] if force else [])
    out = model.generate(
        **inputs, do_sample=True, temperature=temperature, top_k=50, top_p=0.9, num_return_sequences=n,
        max_new_tokens=new_tokens, output_logits=True, return_dict_in_generate=True, logits_processor=processors,
    )
    ids = out.sequences[:, inputs["input_ids"].shape[1]:]  # [N, C]
    logits = torch.stack(out.logits, dim=1)  # [N, C, V]
    ref = torch.log_softmax(logits / temperature, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    is_eos = ids == eos
    mask = ((is_eos.long().cumsum(1) - is_eos.long()) == 0).long()
    return ids, mask, ref * mask


@pytest.mark.parametrize("share", [True, False])
def test_matches_generate(tiny, share):
    model, processor = tiny
    batch = build_prompt_batch(processor, images(), ["Where?", "Where was this photo taken, and why?"])
    assert batch.inputs["attention_mask"][0, 0] == 0  # the short prompt is left-padded
    ids, mask, sampler = sample(model, batch.inputs, n=3, temperature=0.7)
    with torch.no_grad():
        trainer = completion_logprobs(model, batch.inputs, ids, mask, temperature=0.7, share_image_features=share)
    assert trainer.shape == ids.shape == (6, ids.shape[1])
    torch.testing.assert_close(trainer, sampler, rtol=0, atol=1e-5)


def test_needs_mm_token_type_ids(tiny):
    # the trap this module guards: without mm_token_type_ids the 3-D positions are lost
    model, processor = tiny
    batch = build_prompt_batch(processor, images()[:1])
    ids, mask, sampler = sample(model, batch.inputs, n=2, temperature=1.0)
    without = {k: v for k, v in batch.inputs.items() if k != "mm_token_type_ids"}
    with torch.no_grad():
        wrong = completion_logprobs(model, without, ids, mask)
    assert (wrong - sampler).abs().max() > 1e-3


def test_sampled_image_placeholder_is_text(tiny):
    # a policy may sample <|image_pad|> as text; it must not be taken for an image slot
    model, processor = tiny
    batch = build_prompt_batch(processor, images())
    image_pad = model.config.image_token_id
    ids, mask, sampler = sample(model, batch.inputs, n=2, temperature=1.0, force=(3, image_pad))
    assert (ids[:, 3] == image_pad).all()
    with torch.no_grad():
        trainer = completion_logprobs(model, batch.inputs, ids, mask)
    torch.testing.assert_close(trainer, sampler, rtol=0, atol=1e-5)


def test_gradient_reaches_language_and_vision_weights(tiny):
    model, processor = tiny
    batch = build_prompt_batch(processor, images())
    ids, mask, _ = sample(model, batch.inputs, n=2, temperature=1.0, new_tokens=4)
    model.zero_grad()
    completion_logprobs(model, batch.inputs, ids, mask).sum().backward()
    assert model.model.language_model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0
    assert model.model.visual.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    model.zero_grad()


def test_repeat_images_order():
    # image a: grid 1x2x2 (4 patch rows, value 0), image b: grid 1x2x4 (8 rows, value 1)
    pixels = torch.cat([torch.zeros(4, 3), torch.ones(8, 3)])
    grid = torch.tensor([[1, 2, 2], [1, 2, 4]])
    rep_pixels, rep_grid = repeat_images(pixels, grid, n=2)
    # one image per prompt: [a, b] -> [a, a, b, b]
    assert rep_pixels[:, 0].tolist() == [0.0] * 8 + [1.0] * 16
    assert rep_grid.tolist() == [[1, 2, 2], [1, 2, 2], [1, 2, 4], [1, 2, 4]]
    # one prompt with both images: its group repeats -> [a, b, a, b]
    rep_pixels, rep_grid = repeat_images(pixels, grid, n=2, images_per_prompt=[2])
    assert rep_pixels[:, 0].tolist() == [0.0] * 4 + [1.0] * 8 + [0.0] * 4 + [1.0] * 8
    assert rep_grid.tolist() == [[1, 2, 2], [1, 2, 4], [1, 2, 2], [1, 2, 4]]


def test_images_per_prompt():
    # 2x2 merge: grids of 4 and 8 patches give 1 and 2 tokens
    grid = torch.tensor([[1, 2, 2], [1, 2, 4], [1, 2, 2]])
    assert images_per_prompt(torch.tensor([3, 1]), grid) == [2, 1]
    with pytest.raises(ValueError):
        images_per_prompt(torch.tensor([2, 1]), grid)
