"""Which tokens end a completion: shared by every rollout engine so they stop alike."""

from __future__ import annotations

from globe.models.backbones import VLMBackbone, backbone_for


def default_stop_token_ids(tokenizer, generation_config=None, backbone: VLMBackbone | str | None = None) -> list[int]:
    """The tokenizer's EOS, the family's end-of-turn and end-of-text tokens (``backbone.stop_tokens``)
    when the vocabulary has them, and the generation config's EOS ids; sorted and unique.

    ``backbone``: the model family (a ``VLMBackbone``, its name, a model directory...); ``None``:
    the tokenizer's and the generation config's EOS only."""
    family = VLMBackbone() if backbone is None else backbone_for(backbone)
    return family.stop_token_ids(tokenizer, generation_config)
