"""Qwen2.5-VL (the paper's backbone): ChatML, images as 14-px patches merged 2 x 2, 3-D (M-RoPE) positions.

- Prompt: ChatML; an image is ``<|vision_start|><|image_pad|><|vision_end|>`` and the processor
  expands ``<|image_pad|>`` to one token per merged patch. vLLM takes the text with ONE un-expanded
  ``<|image_pad|>`` (ids expanded by the HF processor would be expanded again, silently wrong).
- Stops: ``<|im_end|>`` (end of turn) and ``<|endoftext|>``.
- Inputs: ``pixel_values`` ``[sum_i t_i*h_i*w_i, D]`` with ``image_grid_thw`` ``[I, 3]``
  (``globe.models.backbones.patch_grid``) and ``mm_token_type_ids`` ``[B, P]`` (1 on image tokens).
  Trap: without ``mm_token_type_ids`` the model cannot build its 3-D positions and silently falls
  back to 1-D ones; the log-probs then differ from ``generate``'s. The log-prob pass extends it with
  zeros over the completion.
- Vision tower: ``visual`` (patch embedding, blocks, merger). Minimum image side: 28 px (one merged
  patch); the processor's ``max_pixels`` bounds the size.
- Processor: the stock ``Qwen2_5_VLProcessor`` builds a video processor that needs torchvision;
  :class:`ImageOnlyQwen2_5_VLProcessor` keeps the tokenizer and ``Qwen2VLImageProcessorPil``.
- Tiny model: hidden 128 = 4 heads x 32, vision hidden 64 = 2 heads x 32, images resized to at most
  112 x 112 px, i.e. 8 x 8 patches merged into 16 image tokens; tied embeddings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from globe.models.backbones import patch_grid
from globe.models.backbones.base import VLMBackbone, bpe_tokenizer, repeat_rows, save_tiny_model
from globe.models.processor import ImageOnlyProcessorMixin

__all__ = [
    "CHAT_TEMPLATE",
    "ImageOnlyQwen2_5_VLProcessor",
    "MAX_IMAGE_PIXELS",
    "MIN_IMAGE_PIXELS",
    "Qwen2_5_VLBackbone",
    "SPECIAL_TOKENS",
    "tiny_config",
    "train_tokenizer",
]

# Qwen2.5-VL's special tokens, in Qwen's order. The model config refers to them by id.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# The chat format Qwen2.5-VL is trained on: ChatML, an image as
# <|vision_start|><|image_pad|><|vision_end|> (the processor expands <|image_pad|>).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

MAX_IMAGE_PIXELS = 112 * 112
MIN_IMAGE_PIXELS = 56 * 56


class ImageOnlyQwen2_5_VLProcessor(ImageOnlyProcessorMixin, Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` without the video processor (no torchvision needed)."""

    pil_image_processor_class = Qwen2VLImageProcessorPil


def save_grid_processor(processor, out_dir: str | Path, processor_class: str, video_processor_type: str) -> None:
    """Save a patch-grid processor so that both its image-only class and the stock one load it.

    Writes the stock file set: tokenizer, ``preprocessor_config.json``, a video-processor config
    (the stock processor insists on one; vLLM uses the stock processor) and ``processor_class``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(out)
    image_processor = processor.image_processor
    image_processor.save_pretrained(out)
    video = {
        "processor_class": processor_class,
        "video_processor_type": video_processor_type,
        "patch_size": image_processor.patch_size,
        "temporal_patch_size": image_processor.temporal_patch_size,
        "merge_size": image_processor.merge_size,
        "size": dict(image_processor.size),
        "image_mean": list(image_processor.image_mean),
        "image_std": list(image_processor.image_std),
    }
    (out / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2))
    for name in ("processor_config.json", "tokenizer_config.json"):
        path = out / name
        if path.exists():
            cfg = json.loads(path.read_text())
            if "processor_class" in cfg:
                cfg["processor_class"] = processor_class
                path.write_text(json.dumps(cfg, indent=2))


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 4096):
    """Byte-level BPE with the Qwen special tokens at ids 0..13, ChatML template, EOS ``<|im_end|>``."""
    return bpe_tokenizer(
        corpus, SPECIAL_TOKENS, vocab_size, CHAT_TEMPLATE, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )


def tiny_config(tokenizer, hidden: int = 128, layers: int = 2):
    """A Qwen2.5-VL config at toy size; head size 32 everywhere (vLLM's CPU minimum)."""
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    head_dim = 32
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=hidden // head_dim,
        num_key_value_heads=max(1, hidden // head_dim // 2),
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=True,
    )
    vision = dict(
        depth=2,
        hidden_size=64,
        intermediate_size=128,
        num_heads=2,
        out_hidden_size=hidden,
        fullatt_block_indexes=[1],
        window_size=112,
    )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


class Qwen2_5_VLBackbone(VLMBackbone):
    """Qwen2.5-VL (see the module docstring)."""

    name = "qwen2_5_vl"
    model_types = ("qwen2_5_vl",)
    image_placeholder = "<|image_pad|>"
    end_of_turn = "<|im_end|>"
    stop_tokens = ("<|im_end|>", "<|endoftext|>")
    vision_tower_names = ("visual",)
    min_image_side = 28  # patch 14 x merge 2
    image_keys = ("image_grid_thw",)
    pixel_keys = ("pixel_values",)
    tiny_dir = "tiny-qwen2.5-vl"
    vllm_limit_mm_per_prompt = {"image": 1, "video": 0}

    # stock processor, its image-only subclass and the stock names written for vLLM
    stock_processor = Qwen2_5_VLProcessor
    image_only_processor = ImageOnlyQwen2_5_VLProcessor
    stock_processor_name = "Qwen2_5_VLProcessor"
    stock_video_processor_name = "Qwen2VLVideoProcessor"

    def processor_classes(self) -> tuple[type, ...]:
        return (self.stock_processor,)

    def load_processor(self, path: str | Path):
        from globe.models.loading import torchvision_works

        if not torchvision_works():
            return self.image_only_processor.from_pretrained(path)
        return super().load_processor(path)

    def save_processor(self, processor, out_dir: str | Path) -> None:
        save_grid_processor(processor, out_dir, self.stock_processor_name, self.stock_video_processor_name)

    def encode(
        self, processor, texts: Sequence[str], images: Sequence[Image.Image], padding_side: str = "left"
    ) -> dict[str, torch.Tensor]:
        # mm_token_type_ids: the model's 3-D positions need it (asked for, whatever the processor's default)
        inputs = processor(
            text=list(texts),
            images=list(images),
            padding=True,
            padding_side=padding_side,
            return_tensors="pt",
            return_mm_token_type_ids=True,
        )
        return {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)}

    def image_rows(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return inputs["image_grid_thw"].prod(dim=1)  # [I] patches per image

    def repeat_features(self, features, counts: list[int], n: int):
        """The vision tower's output for I images -> the same for the ``n`` copies of each prompt."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        return BaseModelOutputWithPooling(pooler_output=patch_grid.repeat_per_image(features.pooler_output, counts, n))

    def logprob_inputs(
        self,
        model: torch.nn.Module,
        prompt_inputs: Mapping[str, torch.Tensor],
        completion_ids: torch.Tensor,
        n: int,
        share_image_features: bool = True,
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        mm_types = prompt_inputs.get("mm_token_type_ids")
        if mm_types is not None:  # trap: without it the positions (M-RoPE) differ from generate's
            zeros = torch.zeros_like(completion_ids, dtype=mm_types.dtype)
            kwargs["mm_token_type_ids"] = torch.cat([repeat_rows(mm_types, n), zeros], dim=1)  # [N, P+C]
        pixel_values = prompt_inputs.get("pixel_values")
        if pixel_values is None:
            return kwargs
        grid = prompt_inputs["image_grid_thw"]  # [I, 3]
        image_tokens = (prompt_inputs["input_ids"] == self.image_token_id(model.config)).sum(dim=1)  # [B]
        counts = patch_grid.images_per_prompt(image_tokens, grid)
        encode = getattr(model, "get_image_features", None)
        if share_image_features and encode is not None:
            features = encode(pixel_values, grid, return_dict=True)  # pooler_output: I x [tokens_i, H]
            kwargs["mm_encoder_outputs"] = {"image": self.repeat_features(features, counts, n)}
            kwargs["image_grid_thw"] = patch_grid.repeat_grid(grid, n, counts)
        else:
            kwargs["pixel_values"], kwargs["image_grid_thw"] = patch_grid.repeat_images(pixel_values, grid, n, counts)
        return kwargs

    def build_tiny(self, out: Path, corpus: list[str], seed: int, hidden: int, layers: int, vocab_size: int) -> None:
        from transformers import Qwen2_5_VLForConditionalGeneration

        tokenizer = train_tokenizer(corpus, vocab_size)
        config = tiny_config(tokenizer, hidden=hidden, layers=layers)
        save_tiny_model(Qwen2_5_VLForConditionalGeneration, config, seed, out)
        image_processor = Qwen2VLImageProcessorPil(min_pixels=MIN_IMAGE_PIXELS, max_pixels=MAX_IMAGE_PIXELS)
        processor = ImageOnlyQwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
        self.save_processor(processor, out)
