"""The vLLM rollout engine with the other backbones (Qwen3-VL, InternVL3), on their tiny models: the
checks of ``test_vllm_engine.py`` (Qwen2.5-VL) per family. Samples with an image, log-probs equal the
trainer's forward, a weight sync changes the samples the predicted way and back (full and LoRA
merged), the end-of-turn token stops, an expanded placeholder is refused.

One engine per family (module scope, started ~5-10 s), closed before the next family's starts.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from globe.grpo.logprobs import completion_logprobs
from globe.models.backbones import get_backbone
from globe.models.loading import LoraConfigSpec, apply_lora, load_vlm
from globe.models.tiny import build_tiny
from globe.rollout.base import SamplingConfig
from globe.rollout.prompts_batch import build_prompt_batch

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

LOGPROB_TOLERANCE = 1e-4  # as for Qwen2.5-VL (docs/vllm.md)
PAPER = SamplingConfig(temperature=1.0, top_p=0.9, top_k=50, max_new_tokens=12, seed=7)
FORCED_TOKEN = 100  # an ordinary (non-special) token id of every tiny vocabulary


@pytest.fixture(scope="module", params=["qwen3_vl", "internvl3"])
def family(request, tmp_path_factory):
    """(backbone, model directory, policy model, processor) of one family's tiny model."""
    model_dir = build_tiny(tmp_path_factory.mktemp(f"tiny-{request.param}"), backbone=request.param)
    model, processor = load_vlm(model_dir, dtype="float32")
    return get_backbone(request.param), model_dir, model.eval(), processor


@pytest.fixture(scope="module")
def engine(family):
    from globe.rollout.vllm_engine import VLLMRolloutEngine

    engine = VLLMRolloutEngine(family[1], dtype="float32", max_model_len=512, max_num_seqs=64, seed=0)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def prompts(family):
    rng = np.random.default_rng(0)
    sizes = [(112, 84), (230, 98)]  # two aspect ratios; the wide one is several tiles where a family tiles
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]
    return build_prompt_batch(family[3], images)


def trainer_logprobs(model, prompts, completions) -> torch.Tensor:
    with torch.no_grad():
        return completion_logprobs(model, prompts.inputs, completions.ids, completions.mask)


def forcing_token(model: torch.nn.Module, token: int, scale: float = 10.0) -> torch.nn.Module:
    """A copy of ``model`` whose every next-token distribution is (numerically) one-hot on ``token``:
    column 0 of the input embeddings and of the LM head set to ``scale``, ``2 * scale`` for ``token``
    (both matrices, tied or not). Every residual stream then points along dimension 0 and the logit
    of ``token`` exceeds every other by ~sqrt(hidden) * scale (see ``test_vllm_engine.forcing_token``)."""
    forced = copy.deepcopy(model)
    with torch.no_grad():
        for matrix in {id(m.weight): m.weight for m in (forced.get_input_embeddings(), forced.get_output_embeddings())}.values():
            matrix[:, 0] = scale
            matrix[token, 0] = 2 * scale
    return forced


def test_generate_with_an_image(engine, family, prompts):
    backbone, _, model, processor = family
    engine.sync_weights(model)
    assert engine.backbone is backbone
    out = engine.generate(prompts, n=3, sampling=PAPER)
    rows = len(prompts) * 3
    assert out.ids.shape[0] == rows and out.ids.shape[1] <= PAPER.max_new_tokens
    lengths = out.mask.sum(dim=1)
    assert torch.equal(out.mask, (torch.arange(out.ids.shape[1]) < lengths[:, None]).long())
    assert torch.all(out.logprobs[out.mask == 0] == 0) and torch.all(out.logprobs[out.mask == 1] < 0)
    stopped = torch.tensor([row[: int(n)][-1].item() in engine.stop_token_ids for row, n in zip(out.ids, lengths)])
    assert torch.equal(out.truncated, ~stopped)
    tokenizer = processor.tokenizer
    assert out.texts == [tokenizer.decode(row[: int(n)], skip_special_tokens=True) for row, n in zip(out.ids, lengths)]
    assert len({tuple(row.tolist()) for row in out.ids}) == rows
    assert torch.equal(engine.generate(prompts, n=3, sampling=PAPER).ids, out.ids)  # same seed, same samples


def test_logprobs_equal_trainer_forward(engine, family, prompts, record_property):
    model = family[2]
    engine.sync_weights(model)
    out = engine.generate(prompts, n=4, sampling=PAPER)
    max_diff = (out.logprobs - trainer_logprobs(model, prompts, out)).abs().max().item()
    record_property("max_logprob_diff", max_diff)
    print(f"{family[0].name}: max |vLLM - trainer| log-prob: {max_diff:.3g} over {int(out.mask.sum())} tokens")
    assert max_diff < LOGPROB_TOLERANCE


def test_sync_forces_predicted_token_then_restores(engine, family, prompts):
    model = family[2]
    engine.sync_weights(model)
    before = engine.generate(prompts, n=4, sampling=PAPER)
    assert not torch.all(before.ids == FORCED_TOKEN)
    engine.sync_weights(forcing_token(model, FORCED_TOKEN))
    forced = engine.generate(prompts, n=4, sampling=PAPER)  # same images again: encoder cache was reset
    assert torch.all(forced.ids == FORCED_TOKEN) and torch.all(forced.truncated)
    assert torch.all(forced.logprobs > -1e-4)
    engine.sync_weights(model)
    assert torch.equal(engine.generate(prompts, n=4, sampling=PAPER).ids, before.ids)


def test_sync_to_end_of_turn_gives_one_token_completions(engine, family, prompts):
    backbone, _, model, processor = family
    end = backbone.end_of_turn_id(processor.tokenizer)
    engine.sync_weights(forcing_token(model, end))
    out = engine.generate(prompts, n=2, sampling=PAPER)
    assert out.ids.shape == (4, 1) and torch.all(out.ids == end)
    assert torch.all(out.mask == 1) and not torch.any(out.truncated) and out.texts == [""] * 4


def test_lora_sync_samples_from_the_merged_model(engine, family, prompts):
    model = family[2]
    torch.manual_seed(0)
    peft_model = apply_lora(copy.deepcopy(model), LoraConfigSpec(r=4, alpha=8, dropout=0.0)).eval()
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    engine.sync_weights(model)
    base = engine.generate(prompts, n=4, sampling=PAPER)
    engine.sync_weights(peft_model)
    adapted = engine.generate(prompts, n=4, sampling=PAPER)
    assert not torch.equal(adapted.ids, base.ids)
    merged = copy.deepcopy(peft_model).merge_and_unload()
    for reference in (peft_model, merged):
        assert (adapted.logprobs - trainer_logprobs(reference, prompts, adapted)).abs().max().item() < LOGPROB_TOLERANCE


def test_expanded_prompt_text_is_rejected(engine, family, prompts):
    placeholder = family[0].image_placeholder
    expanded = copy.copy(prompts)
    expanded.texts = [t.replace(placeholder, placeholder * 4) for t in prompts.texts]
    with pytest.raises(ValueError, match="un-expanded"):
        engine.generate(expanded, n=1, sampling=PAPER)


def test_grpo_steps_with_the_vllm_engine_through_cli(family, tmp_path):
    """The demo config, the family's backbone config and the vLLM engine: GRPO steps whose trainer and
    sampler log-probs agree after every sync (as ``test_vllm_cli.py`` checks for Qwen2.5-VL)."""
    import csv
    import subprocess
    import sys
    from pathlib import Path

    from data_modules.geosynth.generate import write_geosynth

    repo = Path(__file__).resolve().parents[2]
    backbone, model_dir = family[0], family[1]
    data, run = tmp_path / "geosynth", tmp_path / "run"
    write_geosynth(data, train=24, val=4, test=4, seed=0)
    args = [
        sys.executable, str(repo / "cli.py"), "fit", "--config", str(repo / "configs/demo.yaml"),
        "--config", str(repo / f"configs/backbone/{backbone.name}.yaml"), f"--model.init_args.model_path={model_dir}",
        "--model.init_args.engine=vllm", "--model.init_args.vllm={max_model_len: 1024}",
        "--model.init_args.group_size=2", "--model.init_args.sampling.max_new_tokens=12",
        "--model.init_args.warm_start.steps=1", "--model.init_args.optim.learning_rate=1.0e-3",
        f"--data.init_args.root={data}", "--data.init_args.train_size=24", "--data.init_args.val_size=4",
        "--data.init_args.test_size=4", "--data.init_args.batch_size=2",
        "--trainer.max_steps=3", "--trainer.limit_val_batches=0",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger", f"--trainer.logger.init_args.save_dir={run}",
        "--trainer.callbacks=[]", f"--trainer.default_root_dir={run}",
    ]
    env = {"WANDB_MODE": "offline", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "VLLM_CPU_KVCACHE_SPACE": "1",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    rows = list(csv.DictReader(open(next(run.rglob("metrics.csv")))))
    diffs = [float(r["train/logprob_diff_max"]) for r in rows if r.get("train/logprob_diff_max")]
    print(f"{backbone.name}: trainer/vLLM log-prob max |diff| per GRPO step: {diffs}")
    assert len(diffs) == 2 and max(diffs) < 1e-2, diffs  # two GRPO steps, the weights synced after each update
    weights = [float(r["train/is_weight_mean"]) for r in rows if r.get("train/is_weight_mean")]
    assert all(abs(w - 1.0) < 1e-3 for w in weights), weights
