"""Tiny random models for the distillation's CPU demo and tests, built from configs.

* :func:`build_tiny_segformer` — a SegFormer with a handful of geo classes (ADE20K-style names
  the concept vocabulary knows), random weights, its ``preprocessor_config.json``: it drives
  the segmentation filter's real path (``SegmentationLabels``) with made-up classes;
* :func:`build_tiny_text_encoder` — a 2-layer BERT and a word-level tokenizer trained offline: the agreement filter's ``reasoning: embedding`` path.

(The tiny VLM teachers are ``globe.models.tiny.build_tiny``.)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["TINY_SEGMENTATION_LABELS", "build_tiny_segformer", "build_tiny_text_encoder"]

TINY_SEGMENTATION_LABELS = ("sky", "building", "tree", "palm", "road", "water", "sand", "grass", "mountain", "car",
                            "signboard", "snow")


def build_tiny_segformer(out_dir: str | Path, labels: Sequence[str] = TINY_SEGMENTATION_LABELS, seed: int = 0) -> Path:
    """A random SegFormer directory at ``out_dir`` (reused when its ``config.json`` exists)."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    config = SegformerConfig(
        num_encoder_blocks=1, depths=[1], sr_ratios=[1], hidden_sizes=[16], patch_sizes=[7], strides=[4],
        num_attention_heads=[1], mlp_ratios=[2], decoder_hidden_size=16, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
    )
    torch.manual_seed(seed)
    SegformerForSemanticSegmentation(config).save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps({"size": {"height": 64, "width": 64}, "do_normalize": True}))
    return out


def _word_tokenizer():
    """A whitespace word-level tokenizer over the concept vocabulary and a few prompt words (offline)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from globe.distill.prompt import DISTILL_PROMPT
    from globe.rewards.visual_concepts import ConceptVocabulary

    corpus = [DISTILL_PROMPT, *ConceptVocabulary.load().phrases()]
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"], show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")


def build_tiny_text_encoder(out_dir: str | Path, seed: int = 0) -> Path:
    """A random 2-layer BERT with a word-level tokenizer at ``out_dir`` (reused if present)."""
    from transformers import BertConfig, BertModel

    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    tokenizer = _word_tokenizer()
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
