"""InternVL3 (transformers' ``InternVLForConditionalGeneration``, ``model_type`` ``internvl``): tiles, pixel shuffle, 1-D positions.

The checkpoints in transformers' format are the ``-hf`` ones (e.g. ``OpenGVLab/InternVL3-8B-hf``:
InternViT-300M + Qwen2.5-7B); the original ``OpenGVLab/InternVL3-8B`` needs remote code and has
another ``model_type`` (``internvl_chat``), not served here.

- Prompt: ChatML (the language model is a Qwen2.5); an image is ``<IMG_CONTEXT>`` in the templated
  text, which the processor expands to ``<img>`` + ``<IMG_CONTEXT>`` x (tokens per tile x tiles) +
  ``</img>``. vLLM takes the text with the one un-expanded ``<IMG_CONTEXT>`` and the image.
- Stops: ``<|im_end|>`` (end of turn) and ``<|endoftext|>``.
- Inputs: every image is cut into square tiles (``crop_to_patches``: the grid closest to its aspect
  ratio, at most ``max_patches`` tiles, plus a thumbnail when there are several), each resized to
  the vision tower's input size; ``pixel_values`` is ``[sum_i tiles_i, 3, H, W]``. The processor
  drops the tile count of each image, which slicing a batch by prompt needs, so :meth:`encode` puts
  it back as ``num_patches`` ``[I]`` (read from the ``<img>`` ... ``</img>`` spans of the ids) and
  :meth:`model_inputs` leaves it out of the model's arguments. No extra position inputs: the
  language model uses ordinary 1-D positions.
- Log-probs: each tile's features (``[tiles, tokens, H]``, after pixel shuffle and the MLP
  projector) are computed once per prompt and repeated for its n samples. The model takes
  ``input_ids`` or ``inputs_embeds``, never both: a completion holding a sampled ``<IMG_CONTEXT>``
  is scored from embeddings with the image features scattered into the prompt's slots here.
- Vision side: ``vision_tower`` (InternViT) and ``multi_modal_projector`` (frozen together by
  ``freeze_vision``; the projector's linears are not LoRA targets). The vision tower also has
  ``q_proj`` / ``k_proj`` / ``v_proj``: the LoRA regex leaves them out.
- Images of any size are accepted (every tile is resized), so the minimum side is 1 px.
- Processor: the stock ``InternVLProcessor`` builds a video processor that needs torchvision;
  :class:`ImageOnlyInternVLProcessor` keeps the tokenizer and ``GotOcr2ImageProcessorPil``.
- Tiny model: vision hidden 64 (2 heads x 32), 112-px tiles of 8 x 8 patches of 14 px, shuffled
  to 16 tokens per tile, at most 4 tiles; text hidden 128 (4 heads x 32); untied embeddings (as
  InternVL3-8B; the Qwen tiny models are tied, so the vLLM weight sync is tested both ways).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil
from transformers.models.internvl.processing_internvl import InternVLProcessor

from globe.models.backbones.base import VLMBackbone, bpe_tokenizer, masked_placeholder_ids, save_tiny_model
from globe.models.processor import ImageOnlyProcessorMixin

__all__ = ["CHAT_TEMPLATE", "ImageOnlyInternVLProcessor", "InternVL3Backbone", "SPECIAL_TOKENS"]

# InternVL3's special tokens (its Qwen2.5 language model's ChatML ones, then the image ones)
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<img>",
    "</img>",
    "<IMG_CONTEXT>",
    "<video>",
    "<quad>",
    "</quad>",
    "<ref>",
    "</ref>",
    "<box>",
    "</box>",
]
#: the tokens the processor finds by name (tokenizer attributes ``start_image_token`` ...)
IMAGE_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}

# InternVL3-hf's chat format without its default system prompt: ChatML, an image as "<IMG_CONTEXT>\n"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

TILE = 112  # tiny model: tile side in pixels
MAX_TILES = 4
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class ImageOnlyInternVLProcessor(ImageOnlyProcessorMixin, InternVLProcessor):
    """``InternVLProcessor`` without the video processor (no torchvision needed)."""

    pil_image_processor_class = GotOcr2ImageProcessorPil


def tiles_per_image(input_ids: torch.Tensor, start_id: int, end_id: int, tokens_per_tile: int) -> torch.Tensor:
    """``[I]`` tiles of every image, in prompt order, from its ``<img>`` ... ``</img>`` span of ``input_ids`` ``[B, P]``.

    >>> tiles_per_image(torch.tensor([[0, 7, 5, 5, 5, 5, 8, 1], [7, 5, 5, 8, 7, 5, 5, 8]]), 7, 8, 2)
    tensor([2, 1, 1])
    """
    counts = []
    for row in input_ids.tolist():
        starts = [i for i, t in enumerate(row) if t == start_id]
        ends = [i for i, t in enumerate(row) if t == end_id]
        if len(starts) != len(ends):
            raise ValueError("unbalanced image start / end tokens in a prompt (truncated?)")
        for s, e in zip(starts, ends):
            inside = e - s - 1
            if inside <= 0 or inside % tokens_per_tile:
                raise ValueError(f"an image span of {inside} tokens is not a whole number of {tokens_per_tile}-token tiles")
            counts.append(inside // tokens_per_tile)
    return torch.tensor(counts, dtype=torch.long)


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 4096):
    """Byte-level BPE with InternVL3's special tokens, ChatML template, EOS ``<|im_end|>``."""
    return bpe_tokenizer(
        corpus, SPECIAL_TOKENS, vocab_size, CHAT_TEMPLATE, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens=IMAGE_TOKENS,
    )


def tiny_config(tokenizer, hidden: int = 128, layers: int = 2):
    """An InternVL config at toy size (Qwen2 language model); head size 32 everywhere (vLLM's CPU minimum)."""
    from transformers import InternVLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    head_dim = 32
    patch = 14
    tokens_per_tile = (TILE // patch) ** 2 // 4  # pixel shuffle with ratio 0.5 merges 2 x 2 patches
    text = dict(
        model_type="qwen2",
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=hidden // head_dim,
        num_key_value_heads=max(1, hidden // head_dim // 2),
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,
    )
    vision = dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        image_size=[TILE, TILE],
        patch_size=[patch, patch],
    )
    return InternVLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<IMG_CONTEXT>"],
        image_seq_length=tokens_per_tile,
        downsample_ratio=0.5,
        tie_word_embeddings=False,
    )


class InternVL3Backbone(VLMBackbone):
    """InternVL3 in transformers' format (see the module docstring)."""

    name = "internvl3"
    model_types = ("internvl",)
    image_placeholder = "<IMG_CONTEXT>"
    end_of_turn = "<|im_end|>"
    stop_tokens = ("<|im_end|>", "<|endoftext|>")
    vision_tower_names = ("vision_tower", "multi_modal_projector")
    min_image_side = 1
    image_keys = ("num_patches",)
    pixel_keys = ("pixel_values",)
    bookkeeping_keys = ("num_patches",)
    tiny_dir = "tiny-internvl3"
    vllm_limit_mm_per_prompt = {"image": 1, "video": 0}

    def processor_classes(self) -> tuple[type, ...]:
        return (InternVLProcessor,)

    def load_processor(self, path: str | Path):
        from globe.models.loading import torchvision_works

        if not torchvision_works():
            return ImageOnlyInternVLProcessor.from_pretrained(path)
        return super().load_processor(path)

    def save_processor(self, processor, out_dir: str | Path) -> None:
        """The stock file set: tokenizer, ``preprocessor_config.json``, ``processor_config.json``
        (``image_seq_length``) and the video-processor config the stock processor insists on."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        processor.save_pretrained(out)
        image_processor = processor.image_processor
        image_processor.save_pretrained(out)
        config_file = out / "processor_config.json"
        config = json.loads(config_file.read_text()) if config_file.exists() else {}
        config.update(processor_class="InternVLProcessor", image_seq_length=int(processor.image_seq_length))
        config_file.write_text(json.dumps(config, indent=2))
        video = {
            "processor_class": "InternVLProcessor",
            "video_processor_type": "InternVLVideoProcessor",
            "size": dict(image_processor.size),
            "image_mean": list(image_processor.image_mean),
            "image_std": list(image_processor.image_std),
        }
        (out / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2))
        path = out / "tokenizer_config.json"
        if path.exists():
            cfg = json.loads(path.read_text())
            if "processor_class" in cfg:
                cfg["processor_class"] = "InternVLProcessor"
                path.write_text(json.dumps(cfg, indent=2))

    def encode(
        self, processor, texts: Sequence[str], images: Sequence[Image.Image], padding_side: str = "left"
    ) -> dict[str, torch.Tensor]:
        inputs = processor(text=list(texts), images=list(images), padding=True, padding_side=padding_side, return_tensors="pt")
        out = {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)}
        if "pixel_values" in out:
            out["num_patches"] = tiles_per_image(
                out["input_ids"], processor.start_image_token_id, processor.end_image_token_id, processor.image_seq_length
            )
            if int(out["num_patches"].sum()) != out["pixel_values"].shape[0]:
                raise ValueError("image spans in the ids and pixel_values tiles do not match")
        return out

    def owns_inputs(self, inputs: Mapping[str, Any]) -> bool:
        return "num_patches" in inputs

    def image_rows(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return inputs["num_patches"]  # [I] tiles per image

    def logprob_inputs(
        self,
        model: torch.nn.Module,
        prompt_inputs: Mapping[str, torch.Tensor],
        completion_ids: torch.Tensor,
        n: int,
        share_image_features: bool = True,
    ) -> dict[str, Any]:
        pixel_values = prompt_inputs.get("pixel_values")  # [T, 3, H, W]
        if pixel_values is None:
            return {}
        config = model.config
        image_tokens = (prompt_inputs["input_ids"] == self.image_token_id(config)).sum(dim=1)  # [B]
        per_tile = int(config.image_seq_length)
        if bool((image_tokens % per_tile).any()):
            raise ValueError(f"image tokens per prompt {image_tokens.tolist()} are not whole {per_tile}-token tiles")
        tiles = (image_tokens // per_tile).tolist()  # [B] tiles per prompt
        if sum(tiles) != pixel_values.shape[0]:
            raise ValueError(f"{sum(tiles)} tiles in the prompts' image tokens, {pixel_values.shape[0]} in pixel_values")
        encode = getattr(model, "get_image_features", None)
        if share_image_features and encode is not None:
            features = encode(pixel_values=pixel_values, return_dict=True).pooler_output  # [T, tokens, H]
            repeated = torch.cat([block for block in features.split(tiles) for _ in range(n)])  # [n*T, tokens, H]
            from transformers.modeling_outputs import BaseModelOutputWithPooling

            return {"mm_encoder_outputs": {"image": BaseModelOutputWithPooling(pooler_output=repeated)}}
        return {"pixel_values": torch.cat([block for block in pixel_values.split(tiles) for _ in range(n)])}

    def placeholder_inputs(
        self, model: torch.nn.Module, kwargs: dict[str, Any], completion_ids: torch.Tensor, is_placeholder: torch.Tensor
    ) -> dict[str, Any]:
        """Completions holding ``<IMG_CONTEXT>``: the model's own forward, done up to the language
        model here (embed the true ids, scatter the tiles' features into the prompt's slots only) and
        given as ``inputs_embeds`` without images. Exact: positions are 1-D and do not read the ids."""
        input_ids = kwargs["input_ids"]  # [N, P+C]
        embeds = model.get_input_embeddings()(input_ids)  # [N, P+C, H]
        out = {k: v for k, v in kwargs.items() if k not in ("input_ids", "pixel_values", "mm_encoder_outputs")}
        if "mm_encoder_outputs" in kwargs:
            features = kwargs["mm_encoder_outputs"]["image"].pooler_output  # [n*T, tokens, H]
        elif "pixel_values" in kwargs:
            features = model.get_image_features(pixel_values=kwargs["pixel_values"], return_dict=True).pooler_output
        else:
            features = None
        if features is not None:
            masked = masked_placeholder_ids(input_ids, completion_ids, is_placeholder, self.placeholder_token_ids(model.config))
            slots = (masked == self.image_token_id(model.config)).unsqueeze(-1)  # [N, P+C, 1] the prompts' slots
            embeds = embeds.masked_scatter(slots.to(embeds.device), features.to(embeds.device, embeds.dtype))
        out["inputs_embeds"] = embeds
        return out

    def build_tiny(self, out: Path, corpus: list[str], seed: int, hidden: int, layers: int, vocab_size: int) -> None:
        from transformers import InternVLForConditionalGeneration

        tokenizer = train_tokenizer(corpus, vocab_size)
        config = tiny_config(tokenizer, hidden=hidden, layers=layers)
        save_tiny_model(InternVLForConditionalGeneration, config, seed, out)
        image_processor = GotOcr2ImageProcessorPil(
            size={"height": TILE, "width": TILE}, crop_to_patches=True, min_patches=1, max_patches=MAX_TILES,
            image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, do_normalize=True,
        )
        processor = ImageOnlyInternVLProcessor(
            image_processor=image_processor, tokenizer=tokenizer, image_seq_length=config.image_seq_length,
            chat_template=CHAT_TEMPLATE,
        )
        self.save_processor(processor, out)
