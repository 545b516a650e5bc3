"""Training R_loc: ``python cli.py fit --config configs/reward/localizability.yaml``.

Cross-entropy on the two answer logits ``[l_no, l_yes]`` of
:class:`~globe.rewards.localizability_model.LocalizabilityModel`, with label 1 for a localizable
image + its own reasoning, 0 for non-localizable images (with their own reasoning, or with
another sample's confident one) and for reasoning paired with the wrong image
(:mod:`data_modules.localizability_pairs`). AdamW on the trainable parameters (LoRA adapters, or
everything but a frozen vision side), optional linear warm-up.

Logged: ``train/loss``, ``train/auroc``, ``val/loss``, ``val/auroc`` (torchmetrics
``BinaryAUROC``), ``val/acc`` and the AUROC of the positives against each kind of negative
(``val/auroc_<kind>``).

Checkpoints (``globe.rewards.localizability_checkpoint``) hold the model settings flat among the
hyper-parameters and, with ``checkpoint_trainable_only``, the trainable weights only (the frozen
rest is re-read from ``model_path`` when loading). ``export_dir`` writes a Hugging Face
directory at the end of ``fit``. GRPO loads either, frozen:
``LocalizabilityReward(checkpoint=...)`` / ``LocalizabilityReward.from_checkpoint(path)``.

Deviation from the paper: the loss is on the two answer logits, not the full vocabulary (the
paper fine-tunes with the generic SFT loss on the answer token).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torchmetrics.classification import BinaryAUROC
from torchmetrics.functional.classification import binary_auroc

from globe.models.backbones import DEFAULT_TINY_PATH
from globe.models.loading import Dtype, LoraConfigSpec
from globe.rewards.localizability_checkpoint import model_state, write_export
from globe.rewards.localizability_model import (
    NO_WORDS,
    PAPER_QUESTION,
    YES_WORDS,
    LocalizabilityModel,
    LocalizabilitySettings,
)

__all__ = ["LocalizabilityTrainer"]

_SETTINGS = [f.name for f in dataclasses.fields(LocalizabilitySettings)]


class LocalizabilityTrainer(LightningModule):
    """Trains a :class:`LocalizabilityModel` (see the module docstring).

    Args:
        model_path: local Hugging Face VLM directory (the backbone).
        build_tiny_if_missing: build a tiny random model at ``model_path`` if it does not exist
            (demo and tests): ``true`` for the default family, or a backbone name.
        lora: LoRA adapters on the language model (``None``: fine-tune every parameter,
            see ``freeze_vision``).
        adapter_path: a saved peft adapter directory to start from.
        freeze_vision: keep the vision side frozen under full fine-tuning (the paper freezes the ViT).
        dtype: backbone dtype ("auto": bfloat16 on a GPU, float32 on the CPU).
        question: system prompt asking for yes / no.
        yes_words: words whose first tokens count as "yes".
        no_words: words whose first tokens count as "no".
        text: "think" (the reasoning inside ``<think>``) or "full" (the whole completion).
        max_text_tokens: longer reasoning is cut to this many tokens, from its start and its end.
        keep_last_tokens: how many of the kept tokens come from the end of a cut reasoning.
        max_image_pixels: images larger than this are downscaled first (``None``: leave to the processor).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear learning-rate warm-up steps.
        checkpoint_trainable_only: write only trainable parameters to checkpoints (the frozen
            rest is re-read from ``model_path`` at load time).
        export_dir: when set, :meth:`export_pretrained` writes the trained model there at the
            end of ``fit``.

    The first thirteen arguments are the model's
    :class:`~globe.rewards.localizability_model.LocalizabilitySettings`.
    """

    def __init__(
        self,
        model_path: str = DEFAULT_TINY_PATH,
        build_tiny_if_missing: bool | str = False,
        lora: LoraConfigSpec | None = None,
        adapter_path: str | None = None,
        freeze_vision: bool = True,
        dtype: Dtype = "auto",
        question: str = PAPER_QUESTION,
        yes_words: list[str] = list(YES_WORDS),  # noqa: B006 - jsonargparse reads defaults from the signature
        no_words: list[str] = list(NO_WORDS),  # noqa: B006
        text: Literal["think", "full"] = "think",
        max_text_tokens: int = 512,
        keep_last_tokens: int = 32,
        max_image_pixels: int | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        checkpoint_trainable_only: bool = True,
        export_dir: str | None = None,
    ) -> None:
        super().__init__()
        given = locals()
        settings = LocalizabilitySettings(**{k: given[k] for k in _SETTINGS})
        # plain values only, the settings flat: the checkpoint's hyper-parameters are what
        # ``LocalizabilityReward(checkpoint=...)`` reads back (with ``torch.load(weights_only=True)``)
        training = ("lr", "weight_decay", "warmup_steps", "checkpoint_trainable_only", "export_dir")
        self.save_hyperparameters({**settings.to_hparams(), **{k: given[k] for k in training}})
        self.model = LocalizabilityModel(settings)
        self.train_auroc = BinaryAUROC()
        self.val_auroc = BinaryAUROC()
        self._val_outputs: dict[str, list[torch.Tensor]] = defaultdict(list)

    # ------------------------------------------------------------------ steps
    def _step(self, batch: list, stage: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        texts = [self.model.reasoning_text(p.reasoning) for p in batch]
        labels = torch.tensor([int(p.label) for p in batch], device=self.device)
        logits = self.model.answer_logits([p.image for p in batch], texts)  # [B, 2]
        loss = F.cross_entropy(logits, labels)
        prob = torch.sigmoid(logits[:, 1] - logits[:, 0]).detach()
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=len(batch), on_step=stage == "train", on_epoch=True)
        return loss, prob, labels

    def training_step(self, batch: list, batch_idx: int) -> torch.Tensor:
        loss, prob, labels = self._step(batch, "train")
        self.train_auroc.update(prob, labels)
        self.log("train/auroc", self.train_auroc, on_step=False, on_epoch=True, batch_size=len(batch))
        return loss

    def validation_step(self, batch: list, batch_idx: int) -> None:
        _, prob, labels = self._step(batch, "val")
        self.val_auroc.update(prob, labels)
        self.log("val/auroc", self.val_auroc, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(batch))
        self.log("val/acc", ((prob > 0.5).long() == labels).float().mean(), on_epoch=True, batch_size=len(batch))
        for p, pr in zip(batch, prob):
            self._val_outputs[getattr(p, "kind", "negative" if not p.label else "positive")].append(pr.cpu())

    def on_validation_epoch_end(self) -> None:
        """AUROC of the positives against each kind of negative (which negatives are learnt)."""
        pos = self._val_outputs.get("positive", [])
        for kind, probs in self._val_outputs.items():
            if kind == "positive" or not pos or not probs:
                continue
            scores = torch.stack(pos + probs)
            target = torch.cat([torch.ones(len(pos)), torch.zeros(len(probs))]).long()
            self.log(f"val/auroc_{kind}", binary_auroc(scores, target), on_epoch=True)
        self._val_outputs.clear()

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.warmup_steps <= 0:
            return optimizer
        warmup = self.hparams.warmup_steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if not self.hparams.checkpoint_trainable_only:
            return
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        if not trainable:
            return  # nothing trains: keep everything
        state = checkpoint["state_dict"]
        dropped = [k for k in state if k.startswith("model.") and k not in trainable]
        for k in dropped:
            del state[k]
        checkpoint["globe_frozen_keys_from_model_path"] = len(dropped)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["state_dict"]
        # the model's keys (also those of checkpoints written before it was a module of its own)
        own = model_state(state)
        for k in [k for k in state if k.startswith("model.")]:
            del state[k]
        state.update({f"model.{k}": v for k, v in own.items()})
        if checkpoint.get("globe_frozen_keys_from_model_path"):
            for k, v in self.state_dict().items():  # the frozen weights, as loaded from model_path
                state.setdefault(k, v)

    def on_fit_end(self) -> None:
        if self.hparams.export_dir and self.trainer.is_global_zero:
            self.export_pretrained(self.hparams.export_dir)

    def export_pretrained(self, out_dir: str | Path) -> Path:
        """Write the model (full weights, or the LoRA adapter only), its processor and the
        scoring settings; ``LocalizabilityReward.from_checkpoint`` reads the directory back."""
        return write_export(self.model, out_dir)
