"""R_loc: a vision-language reward model that scores P(localizable | image, reasoning).

Model (as in the paper): a VLM (a local Hugging Face directory of any family with an adapter,
``globe.models.backbones``; the paper's 7B policy backbone with LoRA, a tiny random model in the
demo) sees a system prompt
asking whether the image is localizable, then the image and the reasoning, and answers with
its next token. With Y and N the token ids of the yes / no words (first token of "yes",
"Yes", "YES" and of "no", "No", "NO")::

    l_yes = logsumexp(logits[Y]),  l_no = logsumexp(logits[N])     # next-token logits
    R_loc = P(yes) / (P(yes) + P(no)) = sigmoid(l_yes - l_no)

which is the paper's ``pos_prob / (pos_prob + neg_prob)`` over the same token sets, computed
exactly from the logits instead of from an HTTP server's top-5 log-probs. The prompt, the
processor call (with the extra inputs the model's positions need: 3-D image positions are
built from the image token types, which :meth:`encode` always asks the processor for), the vision
tower's names and the smallest image side come from the backbone.

Training (``python cli.py fit --config configs/reward/localizability.yaml``): cross-entropy
on the two logits ``[l_no, l_yes]`` with label 1 for localizable image + its own reasoning, 0
for non-localizable images (with their own reasoning, or with another sample's confident one)
and for reasoning paired with the wrong image (:mod:`data_modules.localizability_pairs`).
Logged: ``train/loss``, ``train/auroc``, ``val/loss``, ``val/auroc`` (torchmetrics
``BinaryAUROC``), ``val/acc`` and the AUROC of the positives against each kind of negative
(``val/auroc_<kind>``).

Deviations from the paper: the loss is on the two answer logits, not the full vocabulary
(the paper fine-tunes with the generic SFT loss on the answer token); the reasoning given to
the model is the ``<think>`` part by default (``text="think"``; ``"full"`` passes the whole
completion as the paper does); a reasoning longer than ``max_text_tokens`` tokens keeps its
start and its last ``keep_last_tokens`` tokens (the conclusion naming the place), and the
image tokens are never cut; it scores in-process and batched, with no server.

Loading for GRPO: :meth:`LocalizabilityReward.from_checkpoint` takes a Lightning ``.ckpt``,
a directory written by :meth:`export_pretrained` (full model or LoRA adapter), and returns a
frozen, eval-mode head. A ``.ckpt`` is read with ``torch.load(weights_only=True)``: tensors,
plain Python values and :class:`~globe.models.loading.LoraConfigSpec` (the one object
Lightning stores among this class's hyper-parameters, a plain dataclass) — anything else in the
file is refused before it can run (:class:`CheckpointLoadError`), as is a file without a
``state_dict`` of tensors and ``hyper_parameters`` naming a ``model_path``. ``score`` switches to eval mode for its forward passes, because the
trainer puts every submodule of the policy back in train mode each epoch (LoRA dropout would
otherwise make the reward noisy). Completions with no reasoning text (None, empty) score 0
without a forward pass; any other text gets the model's judgement.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import pickle
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from PIL import Image
from torchmetrics.classification import BinaryAUROC
from torchmetrics.functional.classification import binary_auroc

from globe.answer import parse_answer
from globe.models.backbones import DEFAULT_TINY_PATH, backbone_for
from globe.models.loading import Dtype, LoraConfigSpec, load_vlm
from globe.rewards.base import RewardBatch, RewardHead, as_text, reasoning_of

__all__ = ["LocalizabilityReward", "PAPER_QUESTION", "answer_token_ids", "CheckpointLoadError", "read_checkpoint"]

#: the paper's reward-model system prompt (its plugin code)
PAPER_QUESTION = (
    "Given input image and its location reasoning text, please determine if the image is visually "
    "locatable, then output \u201cyes\u201d or \u201cno\u201d directly.\n"
)
SETTINGS_FILE = "globe_localizability.json"


class CheckpointLoadError(ValueError):
    """A checkpoint that cannot be loaded safely, or is not a LocalizabilityReward checkpoint."""


#: classes a checkpoint may hold besides tensors and plain values (Lightning keeps the init
#: arguments as given: ``lora`` may be this dataclass, rebuilt field by field, no code run)
SAFE_CHECKPOINT_CLASSES = (LoraConfigSpec,)


def read_checkpoint(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(hyper_parameters, state_dict) of a Lightning checkpoint of this class, read with
    ``torch.load(weights_only=True)`` (allow-list: :data:`SAFE_CHECKPOINT_CLASSES`).

    Raises :class:`CheckpointLoadError` for a missing file, one that is not a torch
    checkpoint, one holding any other object (its unpickling is refused, never run), and one
    without a ``state_dict`` of tensors or a ``hyper_parameters`` dict with a ``model_path``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointLoadError(f"no checkpoint file at {path}")
    try:
        with torch.serialization.safe_globals(list(SAFE_CHECKPOINT_CLASSES)):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found is None:  # garbage or a truncated file, not a refused object
            raise CheckpointLoadError(f"{path} is not a readable torch checkpoint: {str(e).splitlines()[0]}") from None
        raise CheckpointLoadError(  # weights_only refused a global: unpickling it would run code
            f"{path} cannot be loaded safely: it refers to {found.group(1)}, not a tensor, a plain value or "
            "LoraConfigSpec; refusing to unpickle it"
        ) from None
    except Exception as e:  # noqa: BLE001 - not a zip / not a torch file / truncated
        raise CheckpointLoadError(f"{path} is not a readable torch checkpoint: {type(e).__name__}: {e}") from None
    if not isinstance(ckpt, dict):
        raise CheckpointLoadError(f"{path} is not a LocalizabilityReward checkpoint (a {type(ckpt).__name__}, not a dict)")
    state, saved = ckpt.get("state_dict"), ckpt.get("hyper_parameters")
    if not isinstance(state, dict):
        raise CheckpointLoadError(f"{path} has no 'state_dict' dict: not a Lightning checkpoint")
    bad = [k for k, v in state.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise CheckpointLoadError(f"{path}: the state_dict must map names to tensors; bad entries: {bad[:3]}")
    if not isinstance(saved, dict) or not isinstance(saved.get("model_path"), str):
        raise CheckpointLoadError(f"{path} has no hyper_parameters with a model_path: not a LocalizabilityReward checkpoint")
    return saved, state


def answer_token_ids(tokenizer, words: list[str]) -> list[int]:
    """Distinct first token ids of ``words`` (the token a model emits to start each word)."""
    ids: list[int] = []
    for w in words:
        enc = tokenizer.encode(w, add_special_tokens=False)
        if enc and enc[0] not in ids:
            ids.append(enc[0])
    if not ids:
        raise ValueError(f"none of {words} encodes to a token")
    return ids


class LocalizabilityReward(RewardHead):
    """The localizability reward model (see the module docstring).

    Args:
        model_path: local Hugging Face VLM directory (the backbone).
        build_tiny_if_missing: build a tiny random model at ``model_path`` if it does not exist
            (demo and tests): ``true`` for the default family, or a backbone name
            (``globe.models.backbones``).
        lora: LoRA adapters on the language model (``None``: fine-tune every parameter,
            see ``freeze_vision``).
        adapter_path: a saved peft adapter directory to start from (or to score with).
        freeze_vision: keep the vision tower frozen under full fine-tuning (the paper freezes the ViT).
        dtype: backbone dtype ("auto": bfloat16 on a GPU, float32 on the CPU).
        question: system prompt asking for yes / no.
        yes_words: words whose first tokens count as "yes".
        no_words: words whose first tokens count as "no".
        text: "think" (the reasoning inside ``<think>``) or "full" (the whole completion).
        max_text_tokens: longer reasoning is cut to this many tokens, taken from its start
            and its end (the conclusion names the place).
        keep_last_tokens: how many of the kept tokens come from the end of a cut reasoning.
        max_image_pixels: images larger than this are downscaled first (``None``: leave to the processor).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear learning-rate warm-up steps.
        score_batch_size: completions per forward pass in ``score``.
        checkpoint_trainable_only: write only trainable parameters to checkpoints (the frozen
            rest is re-read from ``model_path`` at load time).
        export_dir: when set, :meth:`export_pretrained` writes the trained model there at the
            end of ``fit``.
        checkpoint: a Lightning checkpoint of this class to load (frozen scoring in GRPO); its
            model-defining arguments (model_path, lora, adapter_path, freeze_vision, question,
            yes_words, no_words, text, max_text_tokens, keep_last_tokens, max_image_pixels)
            replace the given ones.
        require_well_formed: score 0 unless the completion is ``<think>..</think><answer>..</answer>``.
        name: key of the head in scores, weights and logs.
    """

    name = "loc"

    def __init__(
        self,
        model_path: str = DEFAULT_TINY_PATH,
        build_tiny_if_missing: bool | str = False,
        lora: LoraConfigSpec | None = None,
        adapter_path: str | None = None,
        freeze_vision: bool = True,
        dtype: Dtype = "auto",
        question: str = PAPER_QUESTION,
        yes_words: list[str] = ["yes", "Yes", "YES"],  # noqa: B006 - jsonargparse reads defaults from the signature
        no_words: list[str] = ["no", "No", "NO"],  # noqa: B006
        text: Literal["think", "full"] = "think",
        max_text_tokens: int = 512,
        keep_last_tokens: int = 32,
        max_image_pixels: int | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        score_batch_size: int = 16,
        checkpoint_trainable_only: bool = True,
        export_dir: str | None = None,
        checkpoint: str | None = None,
        require_well_formed: bool = False,
        name: str = "loc",
    ) -> None:
        super().__init__(name=name)
        state = None
        if checkpoint is not None:  # the model-defining arguments come from the checkpoint
            saved, state = read_checkpoint(checkpoint)
            model_path, lora, adapter_path = saved["model_path"], saved.get("lora"), saved.get("adapter_path")
            freeze_vision = saved.get("freeze_vision", freeze_vision)
            question, text = saved.get("question", question), saved.get("text", text)
            yes_words, no_words = saved.get("yes_words", yes_words), saved.get("no_words", no_words)
            max_text_tokens = saved.get("max_text_tokens", max_text_tokens)
            keep_last_tokens = saved.get("keep_last_tokens", keep_last_tokens)
            max_image_pixels = saved.get("max_image_pixels", max_image_pixels)
            build_tiny_if_missing = build_tiny_if_missing or saved.get("build_tiny_if_missing", False)
        if isinstance(lora, dict):  # hyper-parameters read back from a checkpoint or a YAML dump
            lora = LoraConfigSpec(**lora)
        # its own arguments, given explicitly: LightningCLI hands every LightningModule it builds the
        # hyper-parameters of the `model` key, so a head nested in the policy's config would
        # otherwise store the policy's
        given = locals()
        names = [n for n in inspect.signature(LocalizabilityReward.__init__).parameters if n != "self"]
        hparams = {n: given[n] for n in names}
        if isinstance(lora, LoraConfigSpec):  # plain types only: checkpoints stay readable with weights_only=True
            hparams["lora"] = dataclasses.asdict(lora)
        self.save_hyperparameters(hparams)
        if text not in ("think", "full"):
            raise ValueError(f"text must be 'think' or 'full', got {text!r}")
        path = Path(model_path)
        if not path.exists():
            if not build_tiny_if_missing:
                raise FileNotFoundError(f"no model directory at {model_path} (set build_tiny_if_missing: true for the demo)")
            from globe.models.tiny import build_tiny

            build_tiny(path, backbone=None if build_tiny_if_missing is True else build_tiny_if_missing)
        if adapter_path is None:
            self.model, self.processor = load_vlm(path, dtype=dtype, lora=lora)
        else:  # saved adapters: trainable again when ``lora`` is given, frozen otherwise
            from peft import PeftModel

            base, self.processor = load_vlm(path, dtype=dtype, lora=None)
            self.model = PeftModel.from_pretrained(base, adapter_path, is_trainable=lora is not None)
        self.backbone = backbone_for(self.model)
        if lora is None and freeze_vision:
            for pname, param in self.model.named_parameters():
                if self.backbone.is_vision_parameter(pname):
                    param.requires_grad_(False)
        self.model.train()  # from_pretrained returns eval mode and Lightning keeps submodule modes
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "left"  # the answer logit is at position -1 of every row
        self.yes_ids = answer_token_ids(tokenizer, yes_words)
        self.no_ids = answer_token_ids(tokenizer, no_words)
        if set(self.yes_ids) & set(self.no_ids):
            raise ValueError(f"yes and no words share first tokens: {self.yes_ids} / {self.no_ids}")
        self.question = question
        self.text = text
        self.max_text_tokens = max_text_tokens
        self.keep_last_tokens = keep_last_tokens
        self.max_image_pixels = max_image_pixels
        self.score_batch_size = score_batch_size
        self.train_auroc = BinaryAUROC()
        self.val_auroc = BinaryAUROC()
        self._val_outputs: dict[str, list[torch.Tensor]] = defaultdict(list)
        if state is not None:
            merged = self.state_dict()
            merged.update(state)  # pruned checkpoints lack the frozen weights read from model_path
            self.load_state_dict(merged)

    # ------------------------------------------------------------------ inputs
    def reasoning_text(self, completion: Any) -> str:
        """The text the model judges: the reasoning (``text="think"``) or the whole completion;
        when longer than ``max_text_tokens`` tokens, its start and its last ``keep_last_tokens``
        tokens joined by " ... "."""
        text = reasoning_of(completion) if self.text == "think" else as_text(completion).strip()
        tokenizer = self.processor.tokenizer
        ids = tokenizer.encode(text, add_special_tokens=False)
        if len(ids) > self.max_text_tokens:
            tail = min(self.keep_last_tokens, self.max_text_tokens)
            head = tokenizer.decode(ids[: self.max_text_tokens - tail]).rstrip()
            text = f"{head} ... {tokenizer.decode(ids[len(ids) - tail :]).lstrip()}" if tail else head
        return text

    def _messages(self, text: str) -> list[dict]:
        return [
            {"role": "system", "content": self.question},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]},
        ]

    def _image(self, image: Image.Image) -> Image.Image:
        image = image.convert("RGB") if image.mode != "RGB" else image
        if self.max_image_pixels and image.width * image.height > self.max_image_pixels:
            s = (self.max_image_pixels / (image.width * image.height)) ** 0.5
            side = self.backbone.min_image_side  # never below what the processor accepts
            image = image.resize((max(side, int(image.width * s)), max(side, int(image.height * s))), Image.BICUBIC)
        return image

    def encode(self, images: list[Image.Image], texts: list[str]) -> dict[str, torch.Tensor]:
        """Processor inputs for B (image, already-extracted text) pairs, left-padded, on device,
        with the family's extra inputs (e.g. the image token types 3-D positions are built from)."""
        prompts = [self.backbone.chat_text(self.processor, self._messages(t)) for t in texts]
        inputs = self.backbone.encode(self.processor, prompts, [self._image(im) for im in images], padding_side="left")
        return {k: v.to(self.device) for k, v in inputs.items()}

    # ------------------------------------------------------------------ model
    def answer_logits(self, images: list[Image.Image], texts: list[str]) -> torch.Tensor:  # [B, 2] = [l_no, l_yes]
        out = self.model(**self.backbone.model_inputs(self.encode(images, texts)), logits_to_keep=1)
        last = out.logits[:, -1].float()  # [B, V]
        yes = last[:, self.yes_ids].logsumexp(-1)
        no = last[:, self.no_ids].logsumexp(-1)
        return torch.stack([no, yes], dim=-1)

    @torch.no_grad()
    def probabilities(self, images: list[Image.Image], completions: list[Any]) -> torch.Tensor:  # [N]
        """P(yes) / (P(yes) + P(no)) per (image, completion); 0 where the text is empty."""
        texts = [self.reasoning_text(c) for c in completions]
        out = torch.zeros(len(texts), dtype=torch.float32, device=self.device)
        rows = [i for i, t in enumerate(texts) if t]
        was_training = self.training
        self.eval()  # dropout off even when a parent module is in train mode
        try:
            for s in range(0, len(rows), self.score_batch_size):
                chunk = rows[s : s + self.score_batch_size]
                logits = self.answer_logits([images[i] for i in chunk], [texts[i] for i in chunk])
                out[chunk] = torch.sigmoid(logits[:, 1] - logits[:, 0]).to(out.dtype)
        finally:
            self.train(was_training)
        return out.nan_to_num_(0.0).clamp_(0.0, 1.0)

    def score(self, batch: RewardBatch) -> torch.Tensor:  # [N]
        completions = batch.completions
        if self.hparams.require_well_formed:
            completions = [c if parse_answer(c).well_formed else None for c in completions]
        return self.probabilities(batch.images, completions)

    # ------------------------------------------------------------------ training
    def _step(self, batch: list, stage: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        texts = [self.reasoning_text(p.reasoning) for p in batch]
        labels = torch.tensor([int(p.label) for p in batch], device=self.device)
        logits = self.answer_logits([p.image for p in batch], texts)  # [B, 2]
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
            return  # a frozen head: keep everything
        state = checkpoint["state_dict"]
        dropped = [k for k in state if k.startswith("model.") and k not in trainable]
        for k in dropped:
            del state[k]
        checkpoint["globe_frozen_keys_from_model_path"] = len(dropped)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if checkpoint.get("globe_frozen_keys_from_model_path"):
            state = checkpoint["state_dict"]
            for k, v in self.state_dict().items():  # the frozen weights, as loaded from model_path
                state.setdefault(k, v)

    def on_fit_end(self) -> None:
        if self.hparams.export_dir and self.trainer.is_global_zero:
            self.export_pretrained(self.hparams.export_dir)

    def export_pretrained(self, out_dir: str | Path) -> Path:
        """Write the model (full weights, or the LoRA adapter only), its processor and the
        scoring settings; :meth:`from_checkpoint` reads the directory back."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out)
        self.processor.save_pretrained(out)
        keys = ("question", "yes_words", "no_words", "text", "max_text_tokens", "keep_last_tokens", "max_image_pixels",
                "score_batch_size", "name")
        settings = {k: self.hparams[k] for k in keys}
        settings["base_model_path"] = str(Path(self.hparams.model_path).resolve())
        (out / SETTINGS_FILE).write_text(json.dumps(settings, indent=2))
        return out

    @classmethod
    def from_checkpoint(cls, path: str | Path, **overrides: Any) -> "LocalizabilityReward":
        """A frozen, eval-mode head from a Lightning ``.ckpt`` file or an exported directory
        (full Hugging Face model, or LoRA adapter on ``base_model_path``). ``overrides`` replace
        init arguments (e.g. ``score_batch_size``, ``model_path`` when the base model moved)."""
        path = Path(path)
        if path.is_file():
            head = cls(checkpoint=str(path), **{"export_dir": None, **overrides})
        else:
            settings_file = path / SETTINGS_FILE
            settings = json.loads(settings_file.read_text()) if settings_file.exists() else {}
            base = settings.pop("base_model_path", None)
            kwargs: dict[str, Any] = {**settings, "export_dir": None}
            if (path / "adapter_config.json").exists():
                if base is None:
                    base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
                kwargs.update(model_path=str(base), adapter_path=str(path))
            else:
                kwargs.update(model_path=str(path))
            kwargs.update(overrides)
            head = cls(**kwargs)
        head.freeze()
        return head.eval()
