"""Qwen3-VL: Qwen2.5-VL's prompt and input layout, 16-px patches, and DeepStack vision features.

Differences from Qwen2.5-VL (``qwen2_5_vl.py``, whose behaviour it inherits):

- Patches are 16 px (merged 2 x 2: one image token per 32 x 32 px), so the minimum image side is
  32 px; images are normalised with mean = std = 0.5.
- The vision tower returns, besides the merged features, DeepStack features (``deepstack_features``:
  one list per injection layer, one tensor per image) that the language model adds to the hidden
  states at its first layers. Images encoded once for a group must have both repeated, in the same
  order, or the forward pass differs from ``generate``'s.
- Positions are interleaved M-RoPE (``mrope_interleaved``); ``mm_token_type_ids`` is required for
  them, as for Qwen2.5-VL (the model refuses image inputs without it).
- The model takes ``input_ids`` or ``inputs_embeds``, never both, so a completion holding a sampled
  image placeholder is scored differently (:meth:`Qwen3VLBackbone.placeholder_inputs`).
- The chat template adds no default system prompt; ``<think>`` / ``</think>`` are ordinary added
  tokens (decoded with the text, as in Qwen3's vocabulary).
- Processor: the stock ``Qwen3VLProcessor`` builds a video processor that needs torchvision;
  :class:`ImageOnlyQwen3VLProcessor` keeps the tokenizer and ``Qwen2VLImageProcessorPil``.
- Tiny model: text hidden 128 (4 heads x 32), vision hidden 64 (2 heads x 32), one DeepStack
  layer, images resized to at most 128 x 128 px (16 image tokens), tied embeddings.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor

from globe.models.backbones import patch_grid
from globe.models.backbones.base import bpe_tokenizer, masked_placeholder_ids, save_tiny_model, unwrapped
from globe.models.backbones.qwen2_5_vl import SPECIAL_TOKENS, Qwen2_5_VLBackbone
from globe.models.processor import ImageOnlyProcessorMixin

__all__ = ["CHAT_TEMPLATE", "ImageOnlyQwen3VLProcessor", "Qwen3VLBackbone", "ADDED_TOKENS"]

#: ordinary (not special) added tokens of Qwen3's vocabulary that the task's answers use
ADDED_TOKENS = ["<think>", "</think>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
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

MAX_IMAGE_PIXELS = 128 * 128
MIN_IMAGE_PIXELS = 64 * 64


class ImageOnlyQwen3VLProcessor(ImageOnlyProcessorMixin, Qwen3VLProcessor):
    """``Qwen3VLProcessor`` without the video processor (no torchvision needed)."""

    pil_image_processor_class = Qwen2VLImageProcessorPil


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 4096):
    """Byte-level BPE with the Qwen special tokens, ``<think>`` / ``</think>`` as added tokens."""
    return bpe_tokenizer(
        corpus, SPECIAL_TOKENS, vocab_size, CHAT_TEMPLATE, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        added_tokens=ADDED_TOKENS, additional_special_tokens=SPECIAL_TOKENS[1:],
    )


def tiny_config(tokenizer, hidden: int = 128, layers: int = 2):
    """A Qwen3-VL config at toy size; head size 32 everywhere (vLLM's CPU minimum)."""
    from transformers import Qwen3VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    head_dim = 32
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=hidden // head_dim,
        num_key_value_heads=max(1, hidden // head_dim // 2),
        head_dim=head_dim,
        max_position_embeddings=4096,
        # sections sum to head_dim / 2 (Qwen3-VL: [24, 20, 20] for head_dim 128)
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [6, 5, 5], "mrope_interleaved": True},
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
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        out_hidden_size=hidden,
        num_position_embeddings=64,  # an 8 x 8 grid of learnt positions, interpolated to each image
        deepstack_visual_indexes=[0],
    )
    return Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


class Qwen3VLBackbone(Qwen2_5_VLBackbone):
    """Qwen3-VL (see the module docstring)."""

    name = "qwen3_vl"
    model_types = ("qwen3_vl",)
    min_image_side = 32  # patch 16 x merge 2
    tiny_dir = "tiny-qwen3-vl"

    stock_processor = Qwen3VLProcessor
    image_only_processor = ImageOnlyQwen3VLProcessor
    stock_processor_name = "Qwen3VLProcessor"
    stock_video_processor_name = "Qwen3VLVideoProcessor"

    def repeat_features(self, features, counts: list[int], n: int):
        from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

        return BaseModelOutputWithDeepstackFeatures(
            pooler_output=patch_grid.repeat_per_image(features.pooler_output, counts, n),
            deepstack_features=[patch_grid.repeat_per_image(layer, counts, n) for layer in features.deepstack_features],
        )

    def placeholder_inputs(
        self, model: torch.nn.Module, kwargs: dict[str, Any], completion_ids: torch.Tensor, is_placeholder: torch.Tensor
    ) -> dict[str, Any]:
        """Completions holding image-slot tokens, for a model that takes ``input_ids`` or
        ``inputs_embeds`` but not both and finds slots in embeddings by equality to the placeholder's.

        - ``inputs_embeds``: the true ids embedded; no ``input_ids``;
        - ``position_ids``: the model's own 3-D positions (``get_rope_index``) of the ids with the
          completion's placeholders replaced (text positions for them, as ``generate`` gives);
        - the completion's placeholders are then found as slots too: each row's image features are
          followed by the placeholders' own embeddings (scattered back where they are, unchanged) and
          its DeepStack features by zeros (added to them: unchanged). Exact: the forward is the one of
          ids without placeholders, with those tokens' true embeddings.
        """
        input_ids = kwargs["input_ids"]  # [N, P+C]
        embeds = model.get_input_embeddings()(input_ids)  # [N, P+C, H]
        masked = masked_placeholder_ids(input_ids, completion_ids, is_placeholder, self.placeholder_token_ids(model.config))
        out = {k: v for k, v in kwargs.items() if k not in ("input_ids", "pixel_values")}
        out["inputs_embeds"] = embeds
        grid = kwargs.get("image_grid_thw")  # repeated per row
        if grid is None:  # text-only prompts: the model's text positions (never stale 3-D deltas)
            length = input_ids.shape[1]
            out["position_ids"] = torch.arange(length, device=input_ids.device).view(1, 1, -1).expand(4, len(input_ids), -1)
            return out
        out["position_ids"], _ = unwrapped(model).model.get_rope_index(
            masked, mm_token_type_ids=kwargs["mm_token_type_ids"], image_grid_thw=grid, attention_mask=kwargs["attention_mask"]
        )
        if "mm_encoder_outputs" in kwargs:
            features = kwargs["mm_encoder_outputs"]["image"]
        else:
            features = model.get_image_features(kwargs["pixel_values"], grid, return_dict=True)
        image_pad = self.image_token_id(model.config)
        prompt_len = input_ids.shape[1] - completion_ids.shape[1]
        counts = patch_grid.images_per_prompt((masked[:, :prompt_len] == image_pad).sum(dim=1), grid)  # images per row
        completion_slots = completion_ids == image_pad  # [N, C] what the model would take for more slots
        pooled, deep, start = [], [[] for _ in features.deepstack_features], 0
        for row, count in enumerate(counts):
            extra = embeds[row, prompt_len:][completion_slots[row]]  # [k, H] the placeholders' own embeddings
            pooled += list(features.pooler_output[start : start + count]) + [extra]
            for layer, layer_features in zip(deep, features.deepstack_features):
                layer += list(layer_features[start : start + count]) + [extra.new_zeros(extra.shape)]
            start += count
        from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

        out["mm_encoder_outputs"] = {"image": BaseModelOutputWithDeepstackFeatures(pooler_output=pooled, deepstack_features=deep)}
        return out

    def build_tiny(self, out: Path, corpus: list[str], seed: int, hidden: int, layers: int, vocab_size: int) -> None:
        from transformers import Qwen3VLForConditionalGeneration

        tokenizer = train_tokenizer(corpus, vocab_size)
        config = tiny_config(tokenizer, hidden=hidden, layers=layers)
        save_tiny_model(Qwen3VLForConditionalGeneration, config, seed, out)
        image_processor = Qwen2VLImageProcessorPil(
            patch_size=16, merge_size=2, temporal_patch_size=2, min_pixels=MIN_IMAGE_PIXELS, max_pixels=MAX_IMAGE_PIXELS,
            image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
        )
        processor = ImageOnlyQwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
        self.save_processor(processor, out)
