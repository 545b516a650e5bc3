"""R_loc from trainer to frozen head: a Lightning checkpoint on disk round-trips exactly, the head's
settings resolve given > checkpoint > defaults, checkpoints of the single class before the split
still load, and the number of forward calls of ``score`` depends on the number of completions only."""

from __future__ import annotations

from dataclasses import dataclass

import lightning
import pytest
import torch
from lightning.pytorch import Trainer
from PIL import Image
from torch.utils.data import DataLoader

from data_modules.sample import GeoSample
from globe.models.loading import LoraConfigSpec
from globe.rewards.base import RewardBatch
from globe.rewards.localizability import LocalizabilityReward, resolve_settings
from globe.rewards.localizability_trainer import LocalizabilityTrainer

COLORS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (230, 230, 230)]
TEXTS = [
    "<think>Snow on the ground and onion domes.</think><answer>country: Russia\ncity: Moscow</answer>",
    "<think>Palm trees and a pyramid in the desert.</think><answer>country: Egypt\ncity: Cairo</answer>",
    None,
    "<think>Red soil and eucalyptus trees</think><answer>country: Australia\ncity: Perth</answer>",
    "<think>Cyrillic text on a sign",
]


@dataclass
class Pair:  # the fields the trainer reads (data_modules.localizability_pairs.LocalizabilityPair)
    image: Image.Image
    reasoning: str
    label: int
    kind: str


def reward_batch(completions) -> RewardBatch:
    n = len(completions)
    images = [Image.new("RGB", (64 + 8 * i, 64), COLORS[i % 4]) for i in range(n)]
    samples = [GeoSample(key=str(i), image=im, lat=0.0, lon=0.0, country="", city="") for i, im in enumerate(images)]
    return RewardBatch(images, [""] * n, list(completions), samples)


def _fit(tmp_path, tiny_model_dir, lora) -> tuple[LocalizabilityTrainer, str]:
    """Two optimizer steps with a large learning rate, then ``Trainer.save_checkpoint`` (the
    Lightning checkpoint hooks run: the frozen vision side is pruned under full fine-tuning)."""
    torch.manual_seed(0)
    module = LocalizabilityTrainer(model_path=str(tiny_model_dir), lora=lora, max_text_tokens=32, lr=1e-2)
    pairs = [Pair(Image.new("RGB", (64, 64), COLORS[i % 4]), f"Reasoning number {i}.", i % 2,
                  "positive" if i % 2 else "swapped") for i in range(8)]
    trainer = Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(module, train_dataloaders=DataLoader(pairs, batch_size=4, collate_fn=list))
    path = str(tmp_path / "rloc.ckpt")
    trainer.save_checkpoint(path)
    return module, path


@pytest.mark.parametrize("lora", [None, LoraConfigSpec(r=4, alpha=8, dropout=0.5)], ids=["full", "lora"])
def test_head_from_a_trainer_checkpoint_scores_what_the_trainer_model_scores(tmp_path, tiny_model_dir, lora):
    module, path = _fit(tmp_path, tiny_model_dir, lora)
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if lora is None:  # only the trained weights were written; the vision side is re-read from model_path
        assert saved["globe_frozen_keys_from_model_path"] > 0 and not any(".visual." in k for k in saved["state_dict"])
    else:
        assert saved["state_dict"] and all("lora_" in k for k in saved["state_dict"])
    head = LocalizabilityReward.from_checkpoint(path, score_batch_size=2)
    assert not head.training and not any(p.requires_grad for p in head.parameters())
    assert head.model.settings == module.model.settings  # every setting it was trained with
    batch = reward_batch(TEXTS)
    got = head.score(batch)
    assert torch.allclose(module.model.probabilities(batch.images, batch.completions, batch_size=2), got, atol=1e-6, rtol=0)
    module.freeze()  # as the head holds it: bit for bit (with trainable weights some kernels sum in another order, ~3e-8)
    want = module.model.probabilities(batch.images, batch.completions, batch_size=2)
    assert torch.equal(got, want), (got, want)
    assert got[2] == 0.0 and bool(((got[[0, 1, 3, 4]] > 0) & (got[[0, 1, 3, 4]] < 1)).all())
    untrained = LocalizabilityReward(model_path=str(tiny_model_dir), max_text_tokens=32, score_batch_size=2)
    assert not torch.allclose(untrained.score(batch), got, atol=1e-4)  # the steps changed the weights


def test_settings_are_the_given_over_the_checkpoints_over_the_defaults(tmp_path, tiny_model_dir):
    module = LocalizabilityTrainer(model_path=str(tiny_model_dir), max_text_tokens=40, text="full", max_image_pixels=4096)
    path = tmp_path / "rloc.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    settings, state = resolve_settings(str(path), max_text_tokens=24, text=None, dtype="float32")
    assert (settings.max_text_tokens, settings.text, settings.max_image_pixels) == (24, "full", 4096)
    assert settings.keep_last_tokens == 32 and settings.dtype == "float32"  # the default; the given dtype
    assert state.keys() == module.model.state_dict().keys()
    settings, state = resolve_settings(None, max_text_tokens=24)
    assert state is None and settings.text == "think" and settings.max_image_pixels is None


def test_a_checkpoint_of_the_single_class_before_the_split_still_loads(tmp_path, tiny_model_dir):
    """Its backbone weights sat directly under ``model.`` (now ``model.vlm.``)."""
    torch.manual_seed(0)
    module = LocalizabilityTrainer(model_path=str(tiny_model_dir), max_text_tokens=32)
    with torch.no_grad():
        for p in module.model.vlm.parameters():
            p.add_(0.01 * torch.randn_like(p))
    old = {k.replace("model.vlm.", "model.", 1): v for k, v in module.state_dict().items()}
    path = tmp_path / "old.ckpt"
    hparams = {**module.hparams, "checkpoint": None, "name": "loc"}  # the old class's init arguments
    torch.save({"state_dict": old, "hyper_parameters": hparams, "pytorch-lightning_version": lightning.__version__}, path)
    batch = reward_batch(TEXTS)
    module.freeze()  # as the heads hold it (bit-for-bit comparisons)
    want = module.model.probabilities(batch.images, batch.completions)
    assert torch.equal(LocalizabilityReward.from_checkpoint(path).score(batch), want)
    loaded = LocalizabilityTrainer.load_from_checkpoint(path)  # Lightning's own loader, through on_load_checkpoint
    loaded.freeze()
    assert torch.equal(loaded.model.probabilities(batch.images, batch.completions), want)


def test_forward_calls_depend_on_the_number_of_completions_only(tiny_model_dir):
    head = LocalizabilityReward(model_path=str(tiny_model_dir), max_text_tokens=32, score_batch_size=2)
    calls = []
    hook = head.model.vlm.register_forward_hook(lambda *_: calls.append(1))
    try:
        for completions in (TEXTS, [None, "", None, "", 7], [None, "", TEXTS[0], "", 7]):
            calls.clear()
            head.score(reward_batch(completions))
            assert len(calls) == 3  # ceil(5 / 2), texts or not
        batch = reward_batch(TEXTS)
        calls.clear()
        padded = head.model.probabilities(batch.images, batch.completions, batch_size=2, calls=5)
        assert len(calls) == 5 and torch.equal(padded, head.score(batch))  # extra calls change nothing
        with pytest.raises(ValueError, match="need 3 forward calls"):
            head.model.probabilities(batch.images, batch.completions, batch_size=2, calls=2)
    finally:
        hook.remove()
