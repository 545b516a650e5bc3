"""R_loc: yes/no scoring, batching, modes (``LocalizabilityReward`` and ``LocalizabilityModel``), CLI
training (``LocalizabilityTrainer``) and frozen reload."""

from __future__ import annotations

import json
import importlib.util
from pathlib import Path

import pytest
import torch
from PIL import Image

from data_modules.sample import GeoSample
from globe.models.loading import LoraConfigSpec
from globe.models.tiny import build_tiny_qwen2_5_vl
from globe.rewards.base import RewardBatch
from globe.rewards.localizability import CheckpointLoadError, LocalizabilityReward
from globe.rewards.localizability_model import LocalizabilityModel, LocalizabilitySettings
from globe.rewards.localizability_trainer import LocalizabilityTrainer

ROOT = Path(__file__).resolve().parents[1]
COLORS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (230, 230, 230)]


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> str:
    return str(build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny") / "model"))


@pytest.fixture(scope="module")
def head(tiny_path) -> LocalizabilityReward:
    torch.manual_seed(0)
    return LocalizabilityReward(model_path=tiny_path, max_text_tokens=48, score_batch_size=3)


def reward_batch(completions) -> RewardBatch:
    n = len(completions)
    images = [Image.new("RGB", (64 + 8 * i, 64), COLORS[i % 4]) for i in range(n)]
    samples = [GeoSample(key=str(i), image=im, lat=0.0, lon=0.0, country="", city="") for i, im in enumerate(images)]
    return RewardBatch(images, [""] * n, list(completions), samples)


TEXTS = [
    "<think>Snow on the ground and onion domes.</think><answer>country: Russia\ncity: Moscow</answer>",
    "<think>Palm trees and a pyramid in the desert.</think><answer>country: Egypt\ncity: Cairo</answer>",
    "<think>A plain wall with a window.</think><answer>country: France\ncity: Paris</answer>",
    "<think>Red soil and eucalyptus trees</think><answer>country: Australia\ncity: Perth</answer>",
    "<think>Cyrillic text on a sign",  # truncated
]


def test_score_is_p_yes_over_p_yes_plus_p_no_of_the_next_token(head):
    """Hand-worked from the full next-token distribution: sum of p over the yes ids / (yes + no)."""
    batch = reward_batch(TEXTS[:2])
    got = head.score(batch)
    with torch.no_grad():
        inputs = head.model.encode(batch.images, [head.model.reasoning_text(t) for t in TEXTS[:2]])
        p = head.model.vlm(**inputs).logits[:, -1].softmax(-1)  # [B, V] full vocabulary, every position kept
    yes_ids, no_ids = head.model.yes_ids, head.model.no_ids
    p_yes, p_no = p[:, yes_ids].sum(-1), p[:, no_ids].sum(-1)
    assert got.tolist() == pytest.approx((p_yes / (p_yes + p_no)).tolist(), abs=1e-5)
    assert len(set(yes_ids) | set(no_ids)) == len(yes_ids) + len(no_ids)


def test_batching_and_padding_do_not_change_scores(head):
    batch = reward_batch(TEXTS)
    chunked = head.score(batch)  # score_batch_size 3: chunks of 3 + 2, different padding
    head.score_batch_size = 16
    try:
        whole = head.score(batch)
    finally:
        head.score_batch_size = 3
    assert chunked.shape == (5,) and torch.allclose(chunked, whole, atol=1e-4)
    assert ((0.0 <= whole) & (whole <= 1.0)).all()


def test_malformed_completions_never_raise(head):
    got = head.score(reward_batch([None, "", "   ", "@@ garbage ##", "<think>", 7]))
    # no reasoning text at all -> 0 without a forward pass; other text is the model's call
    assert got[[0, 1, 2, 4, 5]].tolist() == [0.0] * 5
    assert 0.0 <= got[3].item() <= 1.0
    strict = LocalizabilityReward(model_path=head.hparams.model_path, max_text_tokens=48, require_well_formed=True)
    assert strict.score(reward_batch(["@@ garbage ##", TEXTS[4]])).tolist() == [0.0, 0.0]


def test_scoring_is_deterministic_in_train_mode(head, tiny_path):
    """The trainer puts submodules back in train mode; LoRA dropout must not leak into rewards."""
    torch.manual_seed(0)
    lora = LocalizabilityModel(LocalizabilitySettings(model_path=tiny_path, lora=LoraConfigSpec(r=4, alpha=8, dropout=0.5),
                                                      max_text_tokens=32))
    lora.train()
    batch = reward_batch(TEXTS[:3])
    a, b = lora.probabilities(batch.images, batch.completions), lora.probabilities(batch.images, batch.completions)
    assert torch.equal(a, b) and lora.training  # same values, mode restored
    assert {n for n, p in lora.named_parameters() if p.requires_grad} and all(
        "lora_" in n for n, p in lora.named_parameters() if p.requires_grad
    )
    head.train()  # as the policy's trainer leaves it: the frozen head scores in eval mode all the same
    try:
        assert torch.equal(head.score(batch), head.score(batch)) and head.training
    finally:
        head.eval()
    assert not any(p.requires_grad for p in head.parameters())


def test_text_is_cut_to_its_start_and_its_end(head):
    long = "<think>" + "palm trees and snow " * 200 + "so this is Cairo, Egypt.</think>"
    cut = head.model.reasoning_text(long)  # max_text_tokens 48: 16 from the start + keep_last_tokens 32
    assert cut.startswith("palm trees") and cut.endswith("so this is Cairo, Egypt.") and " ... " in cut
    ids = head.model.processor.tokenizer.encode(cut, add_special_tokens=False)
    assert len(ids) <= 48 + 6  # plus " ... " and re-tokenisation at the two cut points
    short = "<think>palm trees</think>"
    assert head.model.reasoning_text(short) == "palm trees"
    assert head.score(reward_batch([long])).shape == (1,)


# ---------------------------------------------------------------------- training through the CLI
def _cli_main():
    spec = importlib.util.spec_from_file_location("globe_cli", ROOT / "cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _override_yaml(tmp_path: Path, tiny_path: str, lora: bool) -> Path:
    lora_yaml = "{r: 4, alpha: 8, dropout: 0.0}" if lora else "null"
    text = f"""
model:
  init_args:
    model_path: {tiny_path}
    lora: {lora_yaml}
    freeze_vision: true
    max_text_tokens: 32
    warmup_steps: 0
    export_dir: {tmp_path}/export
data:
  init_args:
    source:
      init_args: {{root: {tmp_path}/geosynth, train_size: 48, val_size: 24, test_size: 4, min_shards: 1, batch_size: 8}}
    batch_size: 8
trainer:
  max_epochs: 1
  limit_train_batches: 3
  limit_val_batches: 2
  default_root_dir: {tmp_path}
  logger: false
  enable_progress_bar: false
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{dirpath: {tmp_path}/checkpoints, save_last: true, monitor: val/auroc, mode: max}}
"""
    path = tmp_path / "override.yaml"
    path.write_text(text)
    return path


def _fit(tmp_path: Path, tiny_path: str, lora: bool) -> Path:
    override = _override_yaml(tmp_path, tiny_path, lora)
    _cli_main()(["fit", "--config", str(ROOT / "configs/reward/localizability.yaml"), "--config", str(override)])
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    return ckpt


@pytest.mark.slow
def test_cli_fit_then_frozen_reload_scores_a_batch(tmp_path, tiny_path):
    ckpt = _fit(tmp_path, tiny_path, lora=False)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    # full fine-tuning with a frozen vision tower: the vision weights are re-read from model_path
    assert state["globe_frozen_keys_from_model_path"] > 0
    assert not any(".visual." in k for k in state["state_dict"])

    frozen = LocalizabilityReward.from_checkpoint(ckpt, score_batch_size=2)
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    assert frozen.model.settings.max_text_tokens == 32  # model-defining settings come from the checkpoint
    batch = reward_batch(TEXTS)
    scores = frozen.score(batch)
    assert scores.shape == (5,) and ((0 <= scores) & (scores <= 1)).all()

    # the same weights through Lightning's own loader and through the exported HF directory
    lightning_loaded = LocalizabilityTrainer.load_from_checkpoint(ckpt, export_dir=None)
    exported = LocalizabilityReward.from_checkpoint(tmp_path / "export")
    assert torch.allclose(lightning_loaded.model.probabilities(batch.images, batch.completions, 2), scores, atol=1e-5)
    assert torch.allclose(exported.score(batch), scores, atol=1e-5)
    # trained weights differ from the untrained backbone
    untrained = LocalizabilityReward(model_path=tiny_path, max_text_tokens=32)
    assert not torch.allclose(untrained.score(batch), scores, atol=1e-4)


@pytest.mark.slow
def test_cli_fit_with_lora_exports_an_adapter(tmp_path, tiny_path):
    ckpt = _fit(tmp_path, tiny_path, lora=True)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert state and all("lora_" in k for k in state)  # only the adapters are written
    assert (tmp_path / "export" / "adapter_config.json").is_file()
    batch = reward_batch(TEXTS[:3])
    from_ckpt = LocalizabilityReward.from_checkpoint(ckpt)
    from_adapter = LocalizabilityReward.from_checkpoint(tmp_path / "export")
    assert torch.allclose(from_ckpt.score(batch), from_adapter.score(batch), atol=1e-5)
    assert not any(p.requires_grad for p in from_adapter.parameters())


# ---------------------------------------------------------------------- untrusted checkpoints
class _TouchOnUnpickle:
    """Unpickling this creates ``path`` (stands for arbitrary code run by a crafted file)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _crafted_checkpoint(tmp_path: Path, tiny_path: str) -> tuple[Path, Path]:
    marker = tmp_path / "code-ran"
    ckpt = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"model_path": tiny_path}, "callbacks": _TouchOnUnpickle(marker)}, ckpt)
    return ckpt, marker


def test_crafted_checkpoint_runs_no_code_through_from_checkpoint(tmp_path, tiny_path):
    ckpt, marker = _crafted_checkpoint(tmp_path, tiny_path)
    with pytest.raises(CheckpointLoadError, match="cannot be loaded safely: it refers to io.open"):
        LocalizabilityReward.from_checkpoint(ckpt)
    assert not marker.exists()
    with pytest.raises(CheckpointLoadError, match="cannot be loaded safely"):
        LocalizabilityReward(checkpoint=str(ckpt))
    assert not marker.exists()


@pytest.mark.slow  # cli.py parses and instantiates the policy config with its heads (~10 s)
def test_crafted_checkpoint_runs_no_code_through_the_cli(tmp_path, tiny_path):
    ckpt, marker = _crafted_checkpoint(tmp_path, tiny_path)
    heads = json.dumps([{"class_path": "globe.rewards.localizability.LocalizabilityReward",
                         "init_args": {"name": "loc", "checkpoint": str(ckpt)}}])  # as configs/reward/heads_*.yaml
    with pytest.raises(Exception) as info:
        _cli_main()(["test", "--config", str(ROOT / "configs/demo.yaml"), f"--model.init_args.model_path={tiny_path}",
                     f"--model.init_args.rewards={heads}", "--model.init_args.reward_weights={loc: 1.0}",
                     "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path}"])
    assert "cannot be loaded safely: it refers to io.open" in str(info.value)  # jsonargparse quotes the error
    assert not marker.exists()


def test_checkpoint_with_a_lora_spec_in_its_hyper_parameters_loads(tmp_path, tiny_path):
    """The trainer stores ``lora`` as a plain dict (a checkpoint any ``torch.load(weights_only=True)``
    reads); one holding a LoraConfigSpec object (as given) loads too: the class is allow-listed."""
    from dataclasses import asdict

    torch.manual_seed(0)
    trainer = LocalizabilityTrainer(model_path=tiny_path, lora=LoraConfigSpec(r=4, alpha=8), max_text_tokens=40)
    assert trainer.hparams["lora"] == asdict(LoraConfigSpec(r=4, alpha=8))
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": dict(trainer.hparams)}, plain)
    assert torch.load(plain, weights_only=True)["hyper_parameters"]["lora"]["r"] == 4
    ckpt = tmp_path / "lora.ckpt"  # the keys a Lightning checkpoint has (written the way Lightning does)
    hparams = {**trainer.hparams, "lora": LoraConfigSpec(r=4, alpha=8)}
    torch.save({"state_dict": trainer.state_dict(), "hyper_parameters": hparams, "epoch": 0, "global_step": 3}, ckpt)
    back = LocalizabilityReward.from_checkpoint(ckpt)
    assert back.model.settings.max_text_tokens == 40 and back.hparams["lora"] == asdict(LoraConfigSpec(r=4, alpha=8))
    batch = reward_batch(TEXTS[:3])
    assert torch.allclose(back.score(batch), trainer.model.probabilities(batch.images, batch.completions), atol=1e-5)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not a checkpoint at all", "not a readable torch checkpoint"),
        ({"hyper_parameters": {"model_path": "m"}}, "no 'state_dict'"),
        ({"state_dict": {}, "hyper_parameters": {}}, "model_path"),
        ({"state_dict": {"w": "not a tensor"}, "hyper_parameters": {"model_path": "m"}}, "tensors"),
        ([1, 2, 3], "not an R_loc checkpoint"),
    ],
)
def test_unusable_checkpoints_get_a_clear_error(tmp_path, content, message):
    ckpt = tmp_path / "bad.ckpt"
    if isinstance(content, bytes):
        ckpt.write_bytes(content)
    else:
        torch.save(content, ckpt)
    with pytest.raises(CheckpointLoadError, match=message):
        LocalizabilityReward.from_checkpoint(ckpt)
    with pytest.raises(CheckpointLoadError, match="no checkpoint file"):
        LocalizabilityReward(checkpoint=str(tmp_path / "absent.ckpt"))


def test_head_nested_in_the_policy_config_keeps_its_own_hyperparameters(tmp_path, tiny_path):
    # LightningCLI gives every LightningModule it builds the `model` key's hyper-parameters; a loc head
    # nested in the policy's reward list once stored the policy's, then failed in score() at the
    # first validation batch (no `require_well_formed`)
    from lightning.pytorch import LightningDataModule, LightningModule
    from lightning.pytorch.cli import LightningCLI

    heads = json.dumps([{"class_path": "globe.rewards.localizability.LocalizabilityReward",
                         "init_args": {"name": "loc", "model_path": tiny_path, "max_text_tokens": 24}}])
    cli = LightningCLI(
        LightningModule, LightningDataModule, subclass_mode_model=True, subclass_mode_data=True, run=False,
        auto_configure_optimizers=False, save_config_callback=None,
        args=["--config", str(ROOT / "configs/demo.yaml"), f"--model.init_args.model_path={tiny_path}",
              f"--model.init_args.rewards={heads}", "--model.init_args.reward_weights={loc: 1.0}", "--trainer.logger=false", "--trainer.callbacks=[]",
              f"--trainer.default_root_dir={tmp_path}"],
    )
    (head,) = cli.model.reward_heads
    assert head.hparams.max_text_tokens == 24 and head.hparams.require_well_formed is False
    assert "group_size" not in head.hparams  # a policy argument
    assert head.score(reward_batch(TEXTS[:2])).shape == (2,)
