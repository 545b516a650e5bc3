"""Every registered backbone, on its tiny model built from a config: the trainer's log-probs equal
generate's, micro-batch slices score like the whole batch, a sampled image placeholder is scored,
LoRA and freezing keep to the language model, stops and prompts are the family's, and the
localizability reward builds its inputs through the backbone."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import LogitsProcessor, LogitsProcessorList

from globe.grpo.logprobs import completion_logprobs
from globe.grpo.microbatch import slice_prompt_inputs
from globe.models.backbones import DEFAULT_BACKBONE, backbone_for, backbone_for_inputs, get_backbone, names
from globe.models.loading import LoraConfigSpec, load_processor, load_vlm
from globe.models.tiny import build_tiny
from globe.rollout.base import SamplingConfig
from globe.rollout.hf_engine import HFRolloutEngine
from globe.rollout.prompts_batch import build_prompt_batch

REPO = Path(__file__).resolve().parents[1]
FAMILIES = ["qwen2_5_vl", "qwen3_vl", "internvl3"]
POSITIONS_FROM_TOKEN_TYPES = {"qwen2_5_vl", "qwen3_vl"}  # 3-D (M-RoPE) image positions
PAPER_SAMPLING = SamplingConfig(temperature=1.0, top_p=0.9, top_k=50, max_new_tokens=12, seed=3)


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory):
    """(backbone, model, processor, model directory) of one family's tiny model."""
    path = build_tiny(tmp_path_factory.mktemp(f"tiny-{request.param}"), backbone=request.param)
    model, processor = load_vlm(path, dtype="float32")
    return get_backbone(request.param), model.eval(), processor, path


def images():
    rng = np.random.default_rng(0)
    return [  # two sizes (different token counts); the second is wide (several tiles where a family tiles)
        Image.fromarray(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 255, (84, 230, 3), dtype=np.uint8)),
    ]


@pytest.fixture(scope="module")
def rollout(family):
    backbone, model, processor, _ = family
    batch = build_prompt_batch(processor, images(), ["Where?", "Where was this photo taken, and why?"])
    out = HFRolloutEngine(model, processor).generate(batch, n=3, sampling=PAPER_SAMPLING)
    return batch, out


def test_every_family_is_registered_and_found_from_what_is_at_hand(family):
    backbone, model, processor, path = family
    assert set(FAMILIES) == set(names()) and names()[0] == DEFAULT_BACKBONE
    assert backbone_for(path) is backbone  # the directory's config.json model_type
    assert backbone_for(model) is backbone and backbone_for(model.config) is backbone
    assert backbone_for(processor) is backbone
    assert backbone_for(model.config.model_type) is backbone and backbone_for(backbone.name) is backbone
    assert type(load_processor(path)) is type(processor)  # image-only: no torchvision here
    assert getattr(processor, "video_processor", None) is None


def test_unknown_families_are_refused_with_the_registered_names(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llava"}')
    with pytest.raises(ValueError, match="registered: qwen2_5_vl"):
        backbone_for(tmp_path)
    assert backbone_for(tmp_path, default=None) is None


def test_prompt_carries_one_unexpanded_placeholder_and_left_padding(family, rollout):
    backbone, model, processor, _ = family
    batch, _ = rollout
    assert [t.count(backbone.image_placeholder) for t in batch.texts] == [1, 1]
    assert backbone.vllm_request(batch.texts[0], batch.images[0])["multi_modal_data"]["image"] is batch.images[0]
    expanded = processor.tokenizer.decode(batch.inputs["input_ids"][0])
    with pytest.raises(ValueError, match="un-expanded"):
        backbone.check_vllm_prompt(expanded)
    mask = batch.inputs["attention_mask"]
    assert mask[:, -1].tolist() == [1, 1] and mask[0, 0] == 0  # the short prompt is left-padded
    # the slicing layout is recognised from the tensors alone (the micro-batcher has no model)
    found = backbone_for_inputs(batch.inputs).slice_inputs(batch.inputs, 1, 2)
    mine = backbone.slice_inputs(batch.inputs, 1, 2)
    assert found.keys() == mine.keys() and all(torch.equal(found[k], mine[k]) for k in mine)


def test_stop_and_end_of_turn_tokens(family, rollout):
    backbone, model, processor, _ = family
    tok = processor.tokenizer
    end = backbone.end_of_turn_id(tok)
    assert tok.convert_ids_to_tokens(end) == backbone.end_of_turn
    stops = HFRolloutEngine(model, processor).eos_token_ids
    assert end in stops and set(stops) == {tok.convert_tokens_to_ids(t) for t in backbone.stop_tokens}
    _, out = rollout
    ended = ~out.truncated
    last = out.mask.sum(1) - 1
    assert all(int(out.ids[i, last[i]]) in stops for i in torch.nonzero(ended).flatten().tolist())


@pytest.mark.parametrize("share", [True, False], ids=["features-shared", "pixels-repeated"])
def test_logprobs_equal_generate(family, rollout, share):
    _, model, _, _ = family
    batch, out = rollout
    with torch.no_grad():
        trainer = completion_logprobs(model, batch.inputs, out.ids, out.mask, PAPER_SAMPLING.temperature, share_image_features=share)
    assert trainer.shape == out.ids.shape == (6, out.ids.shape[1])
    torch.testing.assert_close(trainer, out.logprobs, rtol=0, atol=1e-5)


def test_micro_batches_score_like_the_whole_batch(family, rollout):
    backbone, model, _, _ = family
    batch, out = rollout
    with torch.no_grad():
        parts = [completion_logprobs(model, slice_prompt_inputs(batch.inputs, s, s + 1), out.ids[s * 3 : (s + 1) * 3],
                                     out.mask[s * 3 : (s + 1) * 3]) for s in range(2)]
        explicit = slice_prompt_inputs(batch.inputs, 1, 2, backbone=backbone)
    torch.testing.assert_close(torch.cat(parts), out.logprobs, rtol=0, atol=1e-5)
    rows = backbone.image_rows(batch.inputs)
    assert explicit["pixel_values"].shape[0] == int(rows[1]) and explicit["input_ids"].shape[0] == 1


class ForceToken(LogitsProcessor):
    """Forces ``token`` at completion step ``step`` (the raw logits, which score the log-probs, are untouched)."""

    def __init__(self, prompt_len: int, step: int, token: int):
        self.prompt_len, self.step, self.token = prompt_len, step, token

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] - self.prompt_len == self.step:
            scores = torch.full_like(scores, -float("inf"))
            scores[:, self.token] = 0.0
        return scores


@pytest.mark.parametrize("share", [True, False], ids=["features-shared", "pixels-repeated"])
def test_a_sampled_image_placeholder_is_scored_as_text(family, rollout, share):
    # the model finds image slots by id (or by embedding): a completion holding one is still text
    backbone, model, _, _ = family
    batch, _ = rollout
    inputs = backbone.model_inputs(batch.inputs)
    placeholder = backbone.image_token_id(model.config)
    torch.manual_seed(0)
    out = model.generate(**inputs, do_sample=True, num_return_sequences=2, max_new_tokens=8, output_logits=True,
                         return_dict_in_generate=True, logits_processor=LogitsProcessorList(
                             [ForceToken(inputs["input_ids"].shape[1], 3, placeholder)]))
    ids = out.sequences[:, inputs["input_ids"].shape[1]:]  # [N, C]
    assert (ids[:, 3] == placeholder).all()
    mask = torch.ones_like(ids)
    sampler = torch.log_softmax(torch.stack(out.logits, dim=1), -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():
        trainer = completion_logprobs(model, batch.inputs, ids, mask, share_image_features=share)
    torch.testing.assert_close(trainer, sampler, rtol=0, atol=1e-5)


def test_lora_adapts_the_language_model_only(family):
    backbone, _, _, path = family
    model, _ = load_vlm(path, dtype="float32", lora=LoraConfigSpec(r=2, alpha=4))
    adapted = [name for name, module in model.named_modules() if hasattr(module, "lora_A")]
    assert len(adapted) == 2 * 7  # 2 layers x q, k, v, o, gate, up, down
    assert not any(backbone.is_vision_parameter(name) for name in adapted)
    assert all("language_model" in name for name in adapted)
    towers = {name for name, _ in model.named_modules() if backbone.is_vision_parameter(name + ".")}
    assert towers, "the vision side's names must match the model's modules"
    same_names = [n for n in towers if re.search(r"\.(q_proj|k_proj|v_proj|gate_proj|up_proj|down_proj)$", n)]
    if same_names:  # a vision tower with the language model's projection names: left out by the regex
        assert not any(re.fullmatch(backbone.lora_target_modules, n) for n in same_names)


def test_localizability_reward_encodes_through_the_backbone(family):
    from globe.rewards.localizability_model import LocalizabilityModel, LocalizabilitySettings

    backbone, _, _, path = family
    rloc = LocalizabilityModel(LocalizabilitySettings(model_path=str(path), dtype="float32", max_image_pixels=40 * 40))
    frozen = [n for n, p in rloc.vlm.named_parameters() if not p.requires_grad]
    assert frozen and all(backbone.is_vision_parameter(n) for n in frozen)  # freeze_vision: the vision side only
    tiny = rloc._image(Image.new("RGB", (400, 10)))  # downscaled, never below the processor's minimum side
    assert min(tiny.size) >= backbone.min_image_side
    texts = ["A stone church and a red tram.", "Snow."]
    inputs = rloc.encode(images()[:1] * 2, texts)
    scores = rloc.probabilities(images()[:1] * 2, texts)
    assert scores.shape == (2,) and bool(((scores > 0) & (scores < 1)).all())
    if backbone.name in POSITIONS_FROM_TOKEN_TYPES:
        # R_loc's inputs carry the token types its 3-D positions are built from, and they matter
        assert "mm_token_type_ids" in inputs
        with torch.no_grad():
            with_types = rloc.vlm(**backbone.model_inputs(inputs), logits_to_keep=1).logits
            without = {k: v for k, v in backbone.model_inputs(inputs).items() if k != "mm_token_type_ids"}
            try:
                changed = not torch.allclose(rloc.vlm(**without, logits_to_keep=1).logits, with_types)
            except ValueError:  # families that refuse image inputs without them
                changed = True
        assert changed
        torch.testing.assert_close(rloc.answer_logits(images()[:1] * 2, texts), torch.stack(
            [with_types[:, -1, rloc.no_ids].logsumexp(-1), with_types[:, -1, rloc.yes_ids].logsumexp(-1)], -1))


def test_tiny_builds_from_the_command_line_and_reuses_its_directory(tmp_path):
    out = tmp_path / "tiny"
    cmd = [sys.executable, "-m", "globe.models.tiny", "--backbone", "internvl3", "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert backbone_for(out).name == "internvl3"
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert build_tiny(out, backbone="internvl3") == out and (out / "model.safetensors").stat().st_mtime_ns == stamp


def test_default_family_builds_alike_under_every_name(tmp_path):
    from globe.models.tiny import build_tiny_qwen2_5_vl

    legacy = build_tiny_qwen2_5_vl(tmp_path / "legacy")
    named = build_tiny(tmp_path / "named", backbone="qwen2_5_vl")
    files = sorted(p.name for p in legacy.iterdir())
    assert files == sorted(p.name for p in named.iterdir())
    assert all((legacy / f).read_bytes() == (named / f).read_bytes() for f in files)
    assert (legacy / "globe_tiny.json").read_text() == '{"seed": 0, "hidden": 128, "layers": 2, "vocab_size": 4096, "corpus": true}'


def test_no_generic_module_names_a_family():
    """Family names, their tokens and their extra inputs appear under globe/models/backbones/ only."""
    pattern = re.compile(r"qwen|Qwen|internvl|InternVL|image_pad|im_end|image_grid_thw|mm_token_type_ids")
    sources = [*(REPO / "globe").rglob("*.py"), *(REPO / "callbacks").rglob("*.py"), *(REPO / "data_modules").rglob("*.py"), REPO / "cli.py"]
    found = [f"{p.relative_to(REPO)}:{i}" for p in sources for i, line in enumerate(p.read_text().splitlines(), 1)
             if pattern.search(line) and "models/backbones" not in p.as_posix()]
    assert not found, found


def test_weight_sync_sends_the_model_names_with_lora_merged(family):
    # what a vLLM reload (and the HF export) receives: the model's own names (vLLM maps them; the
    # files on disk may use older names), LoRA layers merged under the base names
    from globe.rollout.vllm_weights import hf_named_weights

    _, model, _, path = family
    plain = dict(hf_named_weights(model))
    assert list(plain) == [name for name, _ in model.named_parameters()]
    peft_model = load_vlm(path, dtype="float32", lora=LoraConfigSpec(r=2, alpha=4))[0]
    merged = dict(hf_named_weights(peft_model))
    assert merged.keys() == plain.keys()
    assert all(torch.equal(merged[k], plain[k]) for k in plain)  # B = 0 at start: the merge is the base weight
