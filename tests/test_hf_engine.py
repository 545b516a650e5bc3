"""The transformers-generate rollout engine and the prompt batch it consumes."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import Qwen2_5_VLForConditionalGeneration

from globe.grpo.logprobs import completion_logprobs
from globe.models.processor import ImageOnlyQwen2_5_VLProcessor
from globe.prompts import GEO_PROMPT
from globe.rollout.base import Completions, SamplingConfig
from globe.rollout.hf_engine import HFRolloutEngine, completion_mask
from globe.rollout.prompts_batch import build_prompt_batch



@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    path = tiny_model_dir
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=torch.float32)
    return model, ImageOnlyQwen2_5_VLProcessor.from_pretrained(path)


def images():
    rng = np.random.default_rng(1)
    return [
        Image.fromarray(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 255, (56, 84, 3), dtype=np.uint8)).convert("L"),  # grey -> RGB
    ]


@pytest.fixture(scope="module")
def batch(tiny):
    """Two prompts of different lengths (short ones: the tests generate a lot)."""
    return build_prompt_batch(tiny[1], images(), ["Where?", "Where was it taken?"])


def test_prompt_batch(tiny):
    batch = build_prompt_batch(tiny[1], images(), [GEO_PROMPT, "Where?"])
    inputs = batch.inputs
    assert len(batch) == 2 and all(img.mode == "RGB" for img in batch.images)
    # one un-expanded placeholder per text (what vLLM wants); expanded ids in the inputs
    assert [t.count("<|image_pad|>") for t in batch.texts] == [1, 1]
    image_pad = tiny[0].config.image_token_id
    assert (inputs["input_ids"] == image_pad).sum(1).tolist() == [16, 6]  # 8x8 and 4x6 patches / 4
    # left padding: every prompt ends at the last column
    assert inputs["attention_mask"][:, -1].tolist() == [1, 1]
    assert inputs["attention_mask"][1, 0] == 0
    assert torch.equal(inputs["mm_token_type_ids"] == 1, inputs["input_ids"] == image_pad)
    assert inputs["image_grid_thw"].tolist() == [[1, 8, 8], [1, 4, 6]]
    assert tiny[1].tokenizer.padding_side == "right"  # the processor was not modified


def test_generate_follows_the_interface(tiny, batch):
    model, processor = tiny
    engine = HFRolloutEngine(model, processor)
    model.train()
    out = engine.generate(batch, n=3, sampling=SamplingConfig(temperature=0.8, max_new_tokens=16, seed=0))
    assert isinstance(out, Completions) and model.training  # training mode restored
    n_rows, c = out.ids.shape
    assert n_rows == 6 and c <= 16 and out.mask.shape == out.logprobs.shape == (6, c)
    assert not out.logprobs.requires_grad
    assert len(out.texts) == 6 and all(isinstance(t, str) for t in out.texts)
    # padding carries the pad id and a zero log-prob; log-probs of tokens are <= 0
    assert (out.ids[out.mask == 0] == engine.pad_token_id).all()
    assert (out.logprobs[out.mask == 0] == 0).all() and (out.logprobs <= 0).all()
    # the trainer recomputes the same numbers (binding log-prob convention)
    model.eval()
    with torch.no_grad():
        trainer = completion_logprobs(model, batch.inputs, out.ids, out.mask, temperature=0.8)
    torch.testing.assert_close(trainer, out.logprobs, rtol=0, atol=1e-5)


def test_eos_ends_the_mask(tiny, batch):
    model, processor = tiny
    sampling = SamplingConfig(max_new_tokens=12, seed=3)
    free = HFRolloutEngine(model, processor).generate(batch, n=2, sampling=sampling)
    assert free.truncated.all()  # a random model never says <|im_end|> within 12 tokens here
    # declare the 5th token of row 0 an end token: same seed -> same draws up to it, then stop
    stop = int(free.ids[0, 4])
    stopped = HFRolloutEngine(model, processor, eos_token_ids=[stop]).generate(batch, n=2, sampling=sampling)
    first = int((free.ids[0] == stop).nonzero()[0])
    assert stopped.mask[0].sum() == first + 1  # EOS included
    assert not stopped.truncated[0]
    assert torch.equal(stopped.ids[0, : first + 1], free.ids[0, : first + 1])


def test_completion_mask_hand_worked():
    mask, truncated = completion_mask(torch.tensor([[5, 2, 7, 2], [2, 0, 0, 0], [5, 6, 7, 8]]), eos_ids=[2])
    assert mask.tolist() == [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]]
    assert truncated.tolist() == [False, False, True]


def test_seed_is_reproducible_and_leaves_global_rng(tiny, batch):
    model, processor = tiny
    engine = HFRolloutEngine(model, processor)
    state = torch.get_rng_state()
    a = engine.generate(batch, n=2, sampling=SamplingConfig(max_new_tokens=8, seed=7))
    b = engine.generate(batch, n=2, sampling=SamplingConfig(max_new_tokens=8, seed=7))
    c = engine.generate(batch, n=2, sampling=SamplingConfig(max_new_tokens=8, seed=8))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.ids, b.ids) and torch.equal(a.logprobs, b.logprobs)
    assert not torch.equal(a.ids, c.ids)


def test_greedy(tiny, batch):
    model, processor = tiny
    engine = HFRolloutEngine(model, processor)
    out = engine.generate(batch, n=1, sampling=SamplingConfig(temperature=0.0, max_new_tokens=6))
    again = engine.generate(batch, n=1, sampling=SamplingConfig(temperature=0.0, max_new_tokens=6))
    assert torch.equal(out.ids, again.ids)
    with torch.no_grad():
        trainer = completion_logprobs(model.eval(), batch.inputs, out.ids, out.mask, temperature=0.0)
    torch.testing.assert_close(trainer, out.logprobs, rtol=0, atol=1e-5)
    # greedy picks the argmax: the first token's log-prob is the maximum of the distribution
    with torch.no_grad():
        full = torch.log_softmax(model(**batch.inputs).logits[:, -1], -1)
    torch.testing.assert_close(out.logprobs[:, 0], full.max(-1).values, rtol=0, atol=1e-5)


def test_sync_weights_rebinds(tiny):
    model, processor = tiny
    engine = HFRolloutEngine(model, processor)
    other = torch.nn.Linear(1, 1)
    engine.sync_weights(other)
    assert engine.model is other
