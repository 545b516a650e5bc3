"""Which tokens end a completion: shared by every rollout engine so they stop alike."""

from __future__ import annotations


def default_stop_token_ids(tokenizer, generation_config=None) -> list[int]:
    """The tokenizer's EOS, ChatML's ``<|im_end|>`` and ``<|endoftext|>`` when the vocabulary has
    them, and the generation config's EOS ids; sorted and unique."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    vocab = tokenizer.get_vocab()
    ids.update(vocab[token] for token in ("<|im_end|>", "<|endoftext|>") if token in vocab)
    config_eos = getattr(generation_config, "eos_token_id", None)
    if config_eos is not None:
        ids.update([config_eos] if isinstance(config_eos, int) else config_eos)
    if not ids:
        raise ValueError("no EOS token found; pass the stop token ids explicitly")
    return sorted(ids)
