"""The vLLM rollout engine on the CPU, against the trainer's own forward pass.

One engine for the module (start ~5 s). Every test first syncs the weights it needs, so tests do
not depend on each other's order. Weight syncs are checked by their effect on the samples.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from globe.grpo.logprobs import completion_logprobs
from globe.models.loading import LoraConfigSpec, apply_lora, load_vlm
from globe.models.tiny import build_tiny_qwen2_5_vl
from globe.rollout.base import SamplingConfig
from globe.rollout.prompts_batch import build_prompt_batch

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

LOGPROB_TOLERANCE = 1e-4  # measured max |vLLM - trainer| on this CPU model: see docs/vllm.md
PAPER = SamplingConfig(temperature=1.0, top_p=0.9, top_k=50, max_new_tokens=12, seed=7)
FORCED_TOKEN = 100  # an ordinary (non-special) token id of the tiny vocabulary


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory):
    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny_qwen2_5_vl"))


@pytest.fixture(scope="module")
def policy(model_dir):
    model, processor = load_vlm(model_dir, dtype="float32")
    return model.eval(), processor


@pytest.fixture(scope="module")
def engine(model_dir):
    from globe.rollout.vllm_engine import VLLMRolloutEngine

    engine = VLLMRolloutEngine(model_dir, dtype="float32", max_model_len=512, max_num_seqs=64, seed=0)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def prompts(policy):
    rng = np.random.default_rng(0)
    sizes = [(112, 84), (70, 98)]  # two aspect ratios: 12 and 10 image tokens after 2 x 2 merging
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]
    return build_prompt_batch(policy[1], images)


def trainer_logprobs(model, prompts, completions, temperature: float = 1.0) -> torch.Tensor:
    with torch.no_grad():
        return completion_logprobs(model, prompts.inputs, completions.ids, completions.mask, temperature)


def forcing_token(model: torch.nn.Module, token: int, scale: float = 10.0) -> torch.nn.Module:
    """A copy of ``model`` whose every next-token distribution is (numerically) one-hot on ``token``.

    The embeddings are tied to the LM head, so both change together: column 0 of the embedding
    matrix is set to ``scale`` for every token and ``2 * scale`` for ``token``. Every input embedding
    then points along dimension 0, the residual stream stays dominated by it (layers add O(0.1)),
    the final RMSNorm maps it to ~sqrt(hidden) * e_0, and the logits become ~sqrt(128) * scale = 113
    for every token but ``token``, which gets twice that: a gap of ~113 nats.
    """
    forced = copy.deepcopy(model)
    embedding = forced.get_input_embeddings().weight
    assert forced.get_output_embeddings().weight.data_ptr() == embedding.data_ptr()  # tied
    with torch.no_grad():
        embedding[:, 0] = scale
        embedding[token, 0] = 2 * scale
    return forced


def test_generate_shapes_masks_truncation_and_texts(engine, policy, prompts):
    model, processor = policy
    engine.sync_weights(model)
    n = 3
    out = engine.generate(prompts, n=n, sampling=PAPER)
    rows = len(prompts) * n
    assert out.ids.shape == out.mask.shape == out.logprobs.shape
    assert out.ids.shape[0] == rows and out.ids.shape[1] <= PAPER.max_new_tokens
    assert out.ids.dtype == out.mask.dtype == torch.long and out.logprobs.dtype == torch.float32
    assert out.truncated.shape == (rows,) and len(out.texts) == rows
    lengths = out.mask.sum(dim=1)
    assert torch.equal(out.mask, (torch.arange(out.ids.shape[1]) < lengths[:, None]).long())  # right padding
    assert torch.all(out.ids[out.mask == 0] == engine.pad_token_id)
    assert torch.all(out.logprobs[out.mask == 0] == 0) and torch.all(out.logprobs[out.mask == 1] < 0)
    stopped = torch.tensor([row[: int(n)][-1].item() in engine.stop_token_ids for row, n in zip(out.ids, lengths)])
    assert torch.equal(out.truncated, ~stopped)  # truncated <=> no stop token at the end
    assert torch.equal(out.truncated, lengths == PAPER.max_new_tokens)  # a random model hardly ever stops
    tokenizer = processor.tokenizer
    assert out.texts == [tokenizer.decode(row[: int(n)], skip_special_tokens=True) for row, n in zip(out.ids, lengths)]
    assert len({tuple(row.tolist()) for row in out.ids}) == rows  # distinct seeds -> distinct samples
    again = engine.generate(prompts, n=n, sampling=PAPER)
    assert torch.equal(again.ids, out.ids)  # same seed, same samples


def test_logprobs_equal_trainer_forward(engine, policy, prompts, record_property):
    model, _ = policy
    engine.sync_weights(model)
    out = engine.generate(prompts, n=4, sampling=PAPER)
    reference = trainer_logprobs(model, prompts, out)
    max_diff = (out.logprobs - reference).abs().max().item()
    record_property("max_logprob_diff", max_diff)
    print(f"max |vLLM - trainer| log-prob: {max_diff:.3g} over {int(out.mask.sum())} tokens")
    assert max_diff < LOGPROB_TOLERANCE


def test_sync_forces_predicted_token_then_restores(engine, policy, prompts):
    model, _ = policy
    engine.sync_weights(model)
    before = engine.generate(prompts, n=4, sampling=PAPER)
    assert not torch.all(before.ids == FORCED_TOKEN)

    engine.sync_weights(forcing_token(model, FORCED_TOKEN))
    forced = engine.generate(prompts, n=4, sampling=PAPER)  # same images again: encoder cache was reset
    assert torch.all(forced.ids == FORCED_TOKEN)
    assert torch.all(forced.truncated) and torch.all(forced.mask == 1)
    assert torch.all(forced.logprobs > -1e-4)  # probability ~1

    engine.sync_weights(model)  # back to the original weights: the same seeded samples as before
    assert torch.equal(engine.generate(prompts, n=4, sampling=PAPER).ids, before.ids)


def test_sync_to_stop_token_gives_one_token_completions(engine, policy, prompts):
    model, processor = policy
    eos = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    engine.sync_weights(forcing_token(model, eos))
    out = engine.generate(prompts, n=2, sampling=PAPER)
    assert out.ids.shape == (4, 1) and torch.all(out.ids == eos)  # the stop token is part of the completion
    assert torch.all(out.mask == 1) and not torch.any(out.truncated)
    assert out.texts == [""] * 4


def test_lora_sync_samples_from_the_merged_model(engine, policy, prompts):
    model, _ = policy
    torch.manual_seed(0)
    peft_model = apply_lora(copy.deepcopy(model), LoraConfigSpec(r=4, alpha=8, dropout=0.0)).eval()
    for name, param in peft_model.named_parameters():  # trained-looking adapters: B != 0
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    adapters_before = {n: p.detach().clone() for n, p in peft_model.named_parameters()}

    engine.sync_weights(model)
    base = engine.generate(prompts, n=4, sampling=PAPER)
    engine.sync_weights(peft_model)
    adapted = engine.generate(prompts, n=4, sampling=PAPER)
    assert not torch.equal(adapted.ids, base.ids)  # the adapters reached vLLM

    merged = copy.deepcopy(peft_model).merge_and_unload()
    for reference_model in (peft_model, merged):  # the adapted model, and peft's own merge
        diff = (adapted.logprobs - trainer_logprobs(reference_model, prompts, adapted)).abs().max().item()
        assert diff < LOGPROB_TOLERANCE
    assert all(torch.equal(p, adapters_before[n]) for n, p in peft_model.named_parameters())  # not mutated


def test_expanded_prompt_text_is_rejected(engine, prompts):
    expanded = copy.copy(prompts)
    expanded.texts = [t.replace("<|image_pad|>", "<|image_pad|>" * 4) for t in prompts.texts]
    with pytest.raises(ValueError, match="un-expanded"):
        engine.generate(expanded, n=1, sampling=PAPER)


def test_processed_logprobs_mode_is_the_convention_without_filters():
    from globe.rollout.vllm_engine import logprobs_follow_convention

    assert logprobs_follow_convention("raw_logprobs", PAPER)
    assert not logprobs_follow_convention("processed_logprobs", PAPER)  # top-k / top-p renormalise
    assert logprobs_follow_convention("processed_logprobs", SamplingConfig(temperature=0.5, top_p=1.0, top_k=0))


@pytest.mark.vllm
def test_seeded_rollout_larger_than_one_scheduler_step(model_dir, policy):
    """4 prompts x 16 seeded samples (the paper's group) exceed one step's 4096-token budget. With
    chunked prefill (vLLM's default) a split prefill rewinds the seeded generator, which a CPU
    generator refuses ("CPU Generator does not use offset"); the engine turns it off on the CPU."""
    from globe.rollout.vllm_engine import VLLMRolloutEngine

    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, (84, 112, 3), dtype=np.uint8)) for _ in range(4)]
    batch = build_prompt_batch(policy[1], images)
    big = VLLMRolloutEngine(model_dir, dtype="float32", max_model_len=2048, seed=0)
    try:
        assert big.llm.llm_engine.vllm_config.scheduler_config.enable_chunked_prefill is False
        out = big.generate(batch, 16, PAPER)
    finally:
        big.close()
    assert out.ids.shape[0] == 64 and out.mask.sum(dim=1).min() >= 1
