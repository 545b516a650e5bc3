"""``VLMBackbone``: everything that differs between vision-language model families, behind one interface.

Generic code (log-probs, micro-batches, both rollout engines, the warm start, the localizability
reward, model loading) asks the backbone of the model or processor in hand; only the files of this
package name a family, its tokens or its extra inputs. One subclass per family, one file each,
registered in ``globe.models.backbones`` under the config ``model_type`` values it serves.

What a backbone answers:

* the chat prompt with the image, and the processor call that turns prompts and images into model
  inputs (left padding, with any extra inputs the model needs for its positions);
* the image placeholder a chat-templated prompt carries before the processor expands it, and how a
  vLLM request must carry it (vLLM expands the placeholder itself);
* stop and end-of-turn tokens;
* the multimodal inputs: which tensors hold one row per image, which hold a block of rows per image
  and how long each block is, so a batch can be sliced by prompt and expanded by group;
* the forward arguments of the log-prob pass (images encoded once, features repeated per sample);
* the vision tower's module names (frozen / left out of LoRA) and the LoRA targets;
* the smallest image side its processor accepts;
* its tiny random model, built from a config (tests and demo).

Tensors: B prompts, I images, n samples per prompt, P prompt tokens, C completion tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image

from globe.prompts import build_messages

PROJECTION_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def language_model_projections(vision_tower_names: Sequence[str]) -> str:
    """A peft ``target_modules`` regex (full match): attention and MLP projections outside the vision tower.

    >>> import re
    >>> pattern = re.compile(language_model_projections(["visual"]))
    >>> bool(pattern.fullmatch("model.language_model.layers.0.self_attn.q_proj"))
    True
    >>> bool(pattern.fullmatch("model.visual.blocks.0.mlp.gate_proj"))
    False
    """
    towers = "|".join(vision_tower_names)
    return rf"^(?!.*\b(?:{towers})\b).*\.(?:{'|'.join(PROJECTION_NAMES)})$"


def repeat_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """Each row ``n`` times in place: ``[B, ...] -> [B*n, ...]`` (row ``b * n + j`` is copy j of row b)."""
    return x if n == 1 else x.repeat_interleave(n, dim=0)


def masked_placeholder_ids(
    input_ids: torch.Tensor, completion_ids: torch.Tensor, is_placeholder: torch.Tensor, placeholders: Sequence[int]
) -> torch.Tensor:
    """``input_ids`` ``[N, P+C]`` with the completion's image-slot tokens replaced by a token that is
    none (the smallest id that is not a placeholder): what slot detection and positions read."""
    other = next(i for i in range(len(placeholders) + 1) if i not in placeholders)
    prompt_len = input_ids.shape[1] - completion_ids.shape[1]
    return torch.cat([input_ids[:, :prompt_len], completion_ids.masked_fill(is_placeholder, other)], dim=1)


def unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside a peft wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def bpe_tokenizer(
    corpus: Iterable[str],
    special_tokens: Sequence[str],
    vocab_size: int,
    chat_template: str,
    eos_token: str,
    pad_token: str,
    added_tokens: Sequence[str] = (),
    **special: Any,
):
    """A byte-level BPE tokenizer trained on ``corpus`` for a tiny model: ``special_tokens`` first
    (ids 0..k-1), the family's EOS / pad tokens and ``chat_template``; ``special`` are further
    ``PreTrainedTokenizerFast`` keyword arguments (``additional_special_tokens``, ...) and
    ``added_tokens`` ordinary added tokens (decoded with the text)."""
    from transformers import PreTrainedTokenizerFast

    from globe.models.tiny import train_bpe

    fast = PreTrainedTokenizerFast(
        tokenizer_object=train_bpe(corpus, list(special_tokens), vocab_size),
        eos_token=eos_token,
        pad_token=pad_token,
        clean_up_tokenization_spaces=False,
        **special,
    )
    if added_tokens:
        fast.add_tokens(list(added_tokens))
    fast.chat_template = chat_template
    return fast


def save_tiny_model(model_class: type, config, seed: int, out: Path) -> None:
    """A random ``model_class(config)`` seeded with ``seed``, its generation config ending and padding
    with the text config's tokens, saved to ``out``."""
    torch.manual_seed(seed)
    model = model_class(config).eval()
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.save_pretrained(out)


class VLMBackbone:
    """One vision-language model family (see the module docstring). Subclasses set the class
    attributes and override what their family does differently; the defaults are those of a model
    that takes ``input_ids`` / ``attention_mask`` and one ``pixel_values`` block per image."""

    name: ClassVar[str] = ""
    """Registry name (``--backbone NAME``, the backbone file's name)."""
    model_types: ClassVar[tuple[str, ...]] = ()
    """Config ``model_type`` values this backbone serves."""
    image_placeholder: ClassVar[str] = ""
    """What the chat template writes for one image, before the processor expands it."""
    end_of_turn: ClassVar[str] = ""
    """The token that closes an assistant turn (the end of a supervised target)."""
    stop_tokens: ClassVar[tuple[str, ...]] = ()
    """Tokens that end a completion, besides the tokenizer's and the generation config's EOS."""
    vision_tower_names: ClassVar[tuple[str, ...]] = ()
    """Module name parts of the vision side (encoder and projector): frozen by ``freeze_vision``,
    never LoRA targets."""
    min_image_side: ClassVar[int] = 1
    """Smallest image side in pixels the processor accepts (images are never resized below it)."""
    image_keys: ClassVar[tuple[str, ...]] = ()
    """Processor outputs with one row per image."""
    pixel_keys: ClassVar[tuple[str, ...]] = ("pixel_values",)
    """Processor outputs with a block of rows per image (lengths: :meth:`image_rows`)."""
    bookkeeping_keys: ClassVar[tuple[str, ...]] = ()
    """Inputs kept for slicing only, never given to the model."""
    tiny_dir: ClassVar[str] = ""
    """Default directory name of the tiny model (``artifacts/<tiny_dir>``)."""
    vllm_limit_mm_per_prompt: ClassVar[dict[str, int]] = {"image": 1}
    """vLLM's ``limit_mm_per_prompt`` for one image per prompt."""

    # ------------------------------------------------------------------ tokens
    def token_id(self, tokenizer, token: str) -> int:
        """The id of ``token`` in ``tokenizer``'s vocabulary (an error when it is missing)."""
        vocab = tokenizer.get_vocab()
        if token not in vocab:
            raise ValueError(f"the tokenizer has no {token!r} token: not a {self.name} tokenizer?")
        return int(vocab[token])

    def end_of_turn_id(self, tokenizer) -> int:
        """Id of :attr:`end_of_turn`."""
        return self.token_id(tokenizer, self.end_of_turn)

    def stop_token_ids(self, tokenizer, generation_config=None) -> list[int]:
        """The tokenizer's EOS, :attr:`stop_tokens` the vocabulary has, and the generation config's
        EOS ids; sorted and unique."""
        ids: set[int] = set()
        if tokenizer.eos_token_id is not None:
            ids.add(int(tokenizer.eos_token_id))
        vocab = tokenizer.get_vocab()
        ids.update(vocab[token] for token in self.stop_tokens if token in vocab)
        config_eos = getattr(generation_config, "eos_token_id", None)
        if config_eos is not None:
            ids.update([config_eos] if isinstance(config_eos, int) else config_eos)
        if not ids:
            raise ValueError("no EOS token found; pass the stop token ids explicitly")
        return sorted(ids)

    def placeholder_token_ids(self, config) -> list[int]:
        """Ids the model takes for image (or video) slots wherever they occur in ``input_ids``."""
        ids = [getattr(config, name, None) for name in ("image_token_id", "video_token_id")]
        return [int(i) for i in ids if i is not None]

    def image_token_id(self, config) -> int:
        token_id = getattr(config, "image_token_id", None)
        if token_id is None:
            raise ValueError("the model config has no image_token_id; is it a vision-language model?")
        return int(token_id)

    # ------------------------------------------------------------------ processor
    def processor_classes(self) -> tuple[type, ...]:
        """Processor classes of this family (instances of subclasses count too)."""
        return ()

    def load_processor(self, path: str | Path):
        """The processor of a model directory of this family."""
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(str(path))

    def save_processor(self, processor, out_dir: str | Path) -> None:
        """Save ``processor`` so that :meth:`load_processor` and the stock processor (vLLM) read it."""
        processor.save_pretrained(out_dir)

    # ------------------------------------------------------------------ prompts
    def chat_prompt(self, processor, prompt: str) -> str:
        """The templated user turn (the image first, then ``prompt``) and the assistant header, with
        one un-expanded :attr:`image_placeholder`."""
        return self.chat_text(processor, build_messages(prompt))

    def chat_text(self, processor, messages: list[dict]) -> str:
        """Any chat (``messages`` in the processor's chat format) templated, generation prompt added."""
        return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode(
        self, processor, texts: Sequence[str], images: Sequence[Image.Image], padding_side: str = "left"
    ) -> dict[str, torch.Tensor]:
        """The processor's tensors for B (templated text, image) pairs: expanded image tokens, padding
        on ``padding_side``, and every extra input the model needs."""
        inputs = processor(text=list(texts), images=list(images), padding=True, padding_side=padding_side, return_tensors="pt")
        return {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor)}

    # ------------------------------------------------------------------ multimodal inputs
    def owns_inputs(self, inputs: Mapping[str, Any]) -> bool:
        """True when ``inputs`` (a processor batch) has this family's layout."""
        return bool(self.image_keys) and all(k in inputs for k in self.image_keys)

    def image_rows(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``[I]`` rows of each image's block in the :attr:`pixel_keys` tensors."""
        raise NotImplementedError(f"{type(self).__name__} does not say how many pixel rows each image has")

    def slice_inputs(
        self, inputs: Mapping[str, torch.Tensor], start: int, end: int, images_per_prompt: int = 1
    ) -> dict[str, torch.Tensor]:
        """Prompts ``start:end`` of a processor batch (each prompt with ``images_per_prompt`` images):
        per-prompt rows, their images' rows and their images' pixel blocks."""
        lo_image, hi_image = start * images_per_prompt, end * images_per_prompt
        offsets = None
        out = {}
        for key, value in inputs.items():
            if key in self.pixel_keys:
                if offsets is None:
                    rows = self.image_rows(inputs)  # [I]
                    offsets = torch.cat([rows.new_zeros(1), rows.cumsum(0)])  # [I + 1]
                out[key] = value[offsets[lo_image] : offsets[hi_image]]
            elif key in self.image_keys:
                out[key] = value[lo_image:hi_image]
            else:
                out[key] = value[start:end]
        return out

    def model_inputs(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What the model's ``forward`` / ``generate`` take from a processor batch (bookkeeping dropped)."""
        return {k: v for k, v in inputs.items() if k not in self.bookkeeping_keys}

    def logprob_inputs(
        self,
        model: torch.nn.Module,
        prompt_inputs: Mapping[str, torch.Tensor],
        completion_ids: torch.Tensor,
        n: int,
        share_image_features: bool = True,
    ) -> dict[str, Any]:
        """Forward arguments, besides ``input_ids`` / ``attention_mask`` ``[N, P+C]``, of the pass that
        scores ``completion_ids`` ``[N, C]`` (N = B * n, row ``b * n + j`` continues prompt b).

        ``share_image_features``: encode each image once and repeat its features n times (what
        ``generate`` does), or repeat the pixels and encode every copy. Default: text only."""
        if any(k in prompt_inputs for k in self.pixel_keys):
            raise NotImplementedError(f"{type(self).__name__} does not score image prompts")
        return {}

    def placeholder_inputs(
        self, model: torch.nn.Module, kwargs: dict[str, Any], completion_ids: torch.Tensor, is_placeholder: torch.Tensor
    ) -> dict[str, Any]:
        """The forward arguments of :meth:`logprob_inputs` (plus ``input_ids`` / ``attention_mask``)
        rebuilt for completions that hold image-slot tokens (``is_placeholder`` ``[N, C]``): those
        tokens must be embedded as the text they were sampled as, at text positions, and not be
        taken for image slots.

        Default, for models that take both ``input_ids`` and ``inputs_embeds``: embed the true ids,
        and give the model ids with those completion tokens replaced, for slot detection (and
        positions) only."""
        input_ids = kwargs["input_ids"]  # [N, P+C]
        kwargs = dict(kwargs, inputs_embeds=model.get_input_embeddings()(input_ids))  # [N, P+C, H]
        kwargs["input_ids"] = masked_placeholder_ids(input_ids, completion_ids, is_placeholder, self.placeholder_token_ids(model.config))
        return kwargs

    # ------------------------------------------------------------------ vision tower, LoRA
    @property
    def lora_target_modules(self) -> str:
        """peft ``target_modules``: the language model's attention and MLP projections."""
        return language_model_projections(self.vision_tower_names)

    def is_vision_parameter(self, name: str) -> bool:
        """True for a parameter (or module) name under the vision side."""
        return any(f".{v}." in f".{name}" for v in self.vision_tower_names)

    # ------------------------------------------------------------------ vLLM
    def check_vllm_prompt(self, text: str) -> None:
        """Refuse a prompt text vLLM would get wrong: it must hold exactly one un-expanded placeholder."""
        count = text.count(self.image_placeholder)
        if count != 1:
            raise ValueError(
                f"each prompt text needs exactly one un-expanded {self.image_placeholder} (found {count}): "
                "vLLM expands it itself"
            )

    def vllm_request(self, text: str, image: Image.Image) -> dict:
        """One vLLM prompt: the templated text with its placeholder, and the image."""
        self.check_vllm_prompt(text)
        return {"prompt": text, "multi_modal_data": {"image": image}}

    # ------------------------------------------------------------------ tiny model
    def build_tiny(self, out: Path, corpus: list[str], seed: int, hidden: int, layers: int, vocab_size: int) -> None:
        """Write a tiny random model of this family to ``out`` (see ``globe.models.tiny``)."""
        raise NotImplementedError(f"{type(self).__name__} has no tiny model")
