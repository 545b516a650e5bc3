"""The R_loc model: a VLM that answers whether a photo is localizable from a reasoning.

It sees a system prompt asking whether the image is localizable, then the image and the
reasoning, and answers with its next token. With Y and N the token ids of the yes / no words
(first token of "yes", "Yes", "YES" and of "no", "No", "NO")::

    l_yes = logsumexp(logits[Y]),  l_no = logsumexp(logits[N])     # next-token logits
    P(localizable) = P(yes) / (P(yes) + P(no)) = sigmoid(l_yes - l_no)

which is the paper's ``pos_prob / (pos_prob + neg_prob)`` over the same token sets, computed
exactly from the logits instead of from an HTTP server's top-5 log-probs.

Everything family-specific goes through the backbone adapter (``globe.models.backbones``): the
chat template, the processor call with the extra inputs the model's positions need (3-D image
positions are built from the image token types, which the adapter always asks for), the vision
parameters' names and the smallest image side the processor accepts.

Deviations from the paper: the reasoning given to the model is the ``<think>`` part by default
(``text="think"``; ``"full"`` passes the whole completion as the paper does); a reasoning longer
than ``max_text_tokens`` tokens keeps its start and its last ``keep_last_tokens`` tokens (the
conclusion naming the place), and the image tokens are never cut.

:class:`LocalizabilityModel` is built from one :class:`LocalizabilitySettings`; it is trained by
:class:`~globe.rewards.localizability_trainer.LocalizabilityTrainer` and scores GRPO completions
inside the frozen head :class:`~globe.rewards.localizability.LocalizabilityReward`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import torch
from PIL import Image

from globe.models.backbones import DEFAULT_TINY_PATH, backbone_for
from globe.models.loading import Dtype, LoraConfigSpec, load_vlm
from globe.rewards.base import as_text, reasoning_of

__all__ = ["LocalizabilityModel", "LocalizabilitySettings", "PAPER_QUESTION", "answer_token_ids", "forward_calls"]

#: the paper's reward-model system prompt (its plugin code)
PAPER_QUESTION = (
    "Given input image and its location reasoning text, please determine if the image is visually "
    "locatable, then output \u201cyes\u201d or \u201cno\u201d directly.\n"
)
YES_WORDS = ("yes", "Yes", "YES")
NO_WORDS = ("no", "No", "NO")
#: the side of the blank image of a forward call made only to match other ranks' calls
_BLANK_SIDE = 64


@dataclass
class LocalizabilitySettings:
    """What defines an R_loc model: its weights, its prompt and answer words, how it reads its inputs."""

    model_path: str = DEFAULT_TINY_PATH
    """Local Hugging Face VLM directory (the backbone)."""
    build_tiny_if_missing: bool | str = False
    """Build a tiny random model at ``model_path`` if it does not exist (demo and tests): ``true``
    for the default family, or a backbone name (``globe.models.backbones``)."""
    lora: LoraConfigSpec | None = None
    """LoRA adapters on the language model (``None``: every parameter, see ``freeze_vision``)."""
    adapter_path: str | None = None
    """A saved peft adapter directory on ``model_path`` (trainable again when ``lora`` is set)."""
    freeze_vision: bool = True
    """Without LoRA, keep the vision side frozen (the paper freezes the ViT)."""
    dtype: Dtype = "auto"
    """Backbone dtype ("auto": bfloat16 on a GPU, float32 on the CPU)."""
    question: str = PAPER_QUESTION
    """System prompt asking for yes / no."""
    yes_words: list[str] = field(default_factory=lambda: list(YES_WORDS))
    """Words whose first tokens count as "yes"."""
    no_words: list[str] = field(default_factory=lambda: list(NO_WORDS))
    """Words whose first tokens count as "no"."""
    text: Literal["think", "full"] = "think"
    """What the model judges: the reasoning inside ``<think>``, or the whole completion."""
    max_text_tokens: int = 512
    """Longer reasoning is cut to this many tokens, taken from its start and its end."""
    keep_last_tokens: int = 32
    """How many of the kept tokens of a cut reasoning come from its end (the conclusion)."""
    max_image_pixels: int | None = None
    """Larger images are downscaled first (``None`` or 0: left to the processor)."""

    def __post_init__(self) -> None:
        if isinstance(self.lora, Mapping):  # read back from a checkpoint or a YAML dump
            self.lora = LoraConfigSpec(**self.lora)
        if self.text not in ("think", "full"):
            raise ValueError(f"text must be 'think' or 'full', got {self.text!r}")

    def to_hparams(self) -> dict[str, Any]:
        """Plain values only (``lora`` as a dict): a checkpoint holding them reads back with
        ``torch.load(weights_only=True)``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_hparams(cls, saved: Mapping[str, Any]) -> "LocalizabilitySettings":
        """The settings among a checkpoint's hyper-parameters (other keys ignored, missing ones default)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in names})


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


def forward_calls(n: int, batch_size: int) -> int:
    """Forward calls that score ``n`` rows in chunks of ``batch_size``: ``ceil(n / batch_size)``.

    >>> forward_calls(5, 2), forward_calls(4, 2), forward_calls(0, 2)
    (3, 2, 0)
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return -(-n // batch_size)


class LocalizabilityModel(torch.nn.Module):
    """The backbone, its processor and the yes / no readout (see the module docstring).

    Attributes:
        settings: what the model was built from.
        vlm: the transformers model (a peft wrapper around it with LoRA or an adapter).
        processor: its processor (left padding: the answer logit is at position -1 of every row).
        backbone: the family's adapter.
        yes_ids, no_ids: the answer token ids.
    """

    def __init__(self, settings: LocalizabilitySettings) -> None:
        super().__init__()
        self.settings = settings
        path = Path(settings.model_path)
        if not path.exists():
            if not settings.build_tiny_if_missing:
                raise FileNotFoundError(f"no model directory at {path} (set build_tiny_if_missing: true for the demo)")
            from globe.models.tiny import build_tiny

            tiny = settings.build_tiny_if_missing
            build_tiny(path, backbone=None if tiny is True else tiny)
        if settings.adapter_path is None:
            self.vlm, self.processor = load_vlm(path, dtype=settings.dtype, lora=settings.lora)
        else:  # saved adapters: trainable again when ``lora`` is given, frozen otherwise
            from peft import PeftModel

            base, self.processor = load_vlm(path, dtype=settings.dtype, lora=None)
            self.vlm = PeftModel.from_pretrained(base, settings.adapter_path, is_trainable=settings.lora is not None)
        self.backbone = backbone_for(self.vlm)
        if settings.lora is None and settings.freeze_vision:
            for name, param in self.vlm.named_parameters():
                if self.backbone.is_vision_parameter(name):
                    param.requires_grad_(False)
        self.vlm.train()  # from_pretrained returns eval mode
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "left"  # the answer logit is at position -1 of every row
        self.yes_ids = answer_token_ids(tokenizer, settings.yes_words)
        self.no_ids = answer_token_ids(tokenizer, settings.no_words)
        if set(self.yes_ids) & set(self.no_ids):
            raise ValueError(f"yes and no words share first tokens: {self.yes_ids} / {self.no_ids}")

    @property
    def device(self) -> torch.device:
        return next(self.vlm.parameters()).device  # a sharded parameter's local device

    # ------------------------------------------------------------------ inputs
    def reasoning_text(self, completion: Any) -> str:
        """The text the model judges: the reasoning (``text="think"``) or the whole completion;
        when longer than ``max_text_tokens`` tokens, its start and its last ``keep_last_tokens``
        tokens joined by " ... "."""
        s = self.settings
        text = reasoning_of(completion) if s.text == "think" else as_text(completion).strip()
        tokenizer = self.processor.tokenizer
        ids = tokenizer.encode(text, add_special_tokens=False)
        if len(ids) > s.max_text_tokens:
            tail = min(s.keep_last_tokens, s.max_text_tokens)
            head = tokenizer.decode(ids[: s.max_text_tokens - tail]).rstrip()
            text = f"{head} ... {tokenizer.decode(ids[len(ids) - tail :]).lstrip()}" if tail else head
        return text

    def _messages(self, text: str) -> list[dict]:
        return [
            {"role": "system", "content": self.settings.question},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]},
        ]

    def _image(self, image: Image.Image) -> Image.Image:
        image = image.convert("RGB") if image.mode != "RGB" else image
        limit = self.settings.max_image_pixels
        if limit and image.width * image.height > limit:
            s = (limit / (image.width * image.height)) ** 0.5
            side = self.backbone.min_image_side  # never below what the processor accepts
            image = image.resize((max(side, int(image.width * s)), max(side, int(image.height * s))), Image.BICUBIC)
        return image

    def encode(self, images: list[Image.Image], texts: list[str]) -> dict[str, torch.Tensor]:
        """Processor inputs for B (image, already-extracted text) pairs, left-padded, on device,
        with the family's extra inputs (e.g. the image token types 3-D positions are built from)."""
        prompts = [self.backbone.chat_text(self.processor, self._messages(t)) for t in texts]
        inputs = self.backbone.encode(self.processor, prompts, [self._image(im) for im in images], padding_side="left")
        device = self.device
        return {k: v.to(device) for k, v in inputs.items()}

    # ------------------------------------------------------------------ outputs
    def answer_logits(self, images: list[Image.Image], texts: list[str]) -> torch.Tensor:  # [B, 2] = [l_no, l_yes]
        """One forward call: the logsumexp of the yes and of the no token logits at the next position."""
        out = self.vlm(**self.backbone.model_inputs(self.encode(images, texts)), logits_to_keep=1)
        last = out.logits[:, -1].float()  # [B, V]
        yes = last[:, self.yes_ids].logsumexp(-1)
        no = last[:, self.no_ids].logsumexp(-1)
        return torch.stack([no, yes], dim=-1)

    def forward(self, images: list[Image.Image], texts: list[str]) -> torch.Tensor:  # [B, 2]
        return self.answer_logits(images, texts)

    @torch.no_grad()
    def probabilities(
        self, images: list[Image.Image], completions: list[Any], batch_size: int = 16, calls: int | None = None
    ) -> torch.Tensor:  # [N]
        """P(yes) / (P(yes) + P(no)) per (image, completion), in eval mode (no dropout, whatever
        mode a parent module left this one in); 0 where the reasoning text is empty.

        Rows go in chunks of ``batch_size`` by position: ``forward_calls(N, batch_size)`` forward
        calls whatever the texts are (a row without text takes its place in its chunk and is set
        to 0 after), or ``calls`` when given (at least that many: the extra calls score a blank
        image and are discarded). A sharded model's ranks must make the same calls: its
        parameter all-gathers are collectives.
        """
        texts = [self.reasoning_text(c) for c in completions]
        n = len(texts)
        needed = forward_calls(n, batch_size)
        calls = needed if calls is None else calls
        if calls < needed:
            raise ValueError(f"{n} rows in chunks of {batch_size} need {needed} forward calls, got calls={calls}")
        out = torch.zeros(n, dtype=torch.float32, device=self.device)
        was_training = self.training
        self.eval()
        try:
            for c in range(calls):
                rows = list(range(c * batch_size, min(n, (c + 1) * batch_size)))
                if not rows:  # a call the other ranks make: same collectives, result unused
                    self.answer_logits([Image.new("RGB", (_BLANK_SIDE, _BLANK_SIDE))], [""])
                    continue
                logits = self.answer_logits([images[i] for i in rows], [texts[i] for i in rows])
                out[rows] = torch.sigmoid(logits[:, 1] - logits[:, 0]).to(out.dtype)
        finally:
            self.train(was_training)
        out[[i for i, t in enumerate(texts) if not t]] = 0.0
        return out.nan_to_num_(0.0).clamp_(0.0, 1.0)
