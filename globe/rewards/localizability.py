"""R_loc: the frozen reward head that scores P(localizable | image, reasoning) in GRPO.

The paper's localizability reward is a VLM fine-tuned to answer yes / no to "is this image
localizable from this reasoning?", scored as ``P(yes) / (P(yes) + P(no))``. Here it is three parts:

1. :class:`~globe.rewards.localizability_model.LocalizabilityModel` (``localizability_model.py``):
   the backbone, its processor and the yes / no readout, built from one
   :class:`~globe.rewards.localizability_model.LocalizabilitySettings`;
2. :class:`~globe.rewards.localizability_trainer.LocalizabilityTrainer` (``localizability_trainer.py``):
   the LightningModule ``python cli.py fit --config configs/reward/localizability.yaml`` trains it with;
3. :class:`LocalizabilityReward` (this file): the model loaded frozen from what the trainer
   wrote (``globe.rewards.localizability_checkpoint``: a ``.ckpt`` read with
   ``torch.load(weights_only=True)``, or an exported directory), scoring completions batched
   and in-process.

Settings of a head: the arguments given (``None`` = not given) over those of ``checkpoint``
(the settings it was trained with, when there is one) over the defaults of
:class:`LocalizabilitySettings` -- one function, :func:`resolve_settings`. ``dtype`` is where the
head runs, not what it learnt: always the given one. ``lora`` and ``freeze_vision`` come from the
checkpoint only.

Scoring: eval mode for the forward passes (the trainer puts every submodule of the policy back
in train mode each epoch; LoRA dropout would make the reward noisy); completions with no
reasoning text (None, empty) score 0; chunks of ``score_batch_size`` completions by position, so
the number of forward calls depends on the number of completions only. Under FSDP2
(:meth:`LocalizabilityReward.shard`, called by ``GRPOPolicy`` under ``ModelParallelStrategy``)
each rank holds a shard of every weight and the ranks agree on the largest count of forward
calls before scoring (one all-reduce): a rank with fewer completions makes the extra calls on a
blank input, since each call all-gathers parameters with the other ranks.

Deviations from the paper: it scores in-process and batched, with no HTTP server and no top-5
log-prob approximation; see the model's and the trainer's modules for the rest.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import torch

from globe.answer import parse_answer
from globe.models.loading import Dtype
from globe.rewards.base import RewardBatch, RewardHead
from globe.rewards.localizability_checkpoint import (
    SETTINGS_FILE,
    CheckpointLoadError,
    exported_arguments,
    read_checkpoint,
    trained_settings,
)
from globe.rewards.localizability_model import (
    PAPER_QUESTION,
    LocalizabilityModel,
    LocalizabilitySettings,
    answer_token_ids,
    forward_calls,
)

__all__ = [
    "LocalizabilityReward",
    "LocalizabilityModel",
    "LocalizabilitySettings",
    "PAPER_QUESTION",
    "SETTINGS_FILE",
    "answer_token_ids",
    "CheckpointLoadError",
    "read_checkpoint",
    "resolve_settings",
]


def resolve_settings(checkpoint: str | None, **given: Any) -> tuple[LocalizabilitySettings, dict[str, torch.Tensor] | None]:
    """(settings, trained weights or ``None``) of a head: ``given`` (entries that are not ``None``)
    over the settings ``checkpoint`` was trained with (when given) over the defaults."""
    given = {k: v for k, v in given.items() if v is not None}
    if checkpoint is None:
        return LocalizabilitySettings(**given), None
    trained, state = trained_settings(checkpoint)
    return dataclasses.replace(trained, **given), state


class LocalizabilityReward(RewardHead):
    """R_loc, frozen (see the module docstring): ``score(batch) -> P(yes) / (P(yes) + P(no))``.

    Args:
        model_path: local Hugging Face VLM directory (with a checkpoint: where its base model
            is now, if it moved).
        checkpoint: a ``.ckpt`` written by ``LocalizabilityTrainer``: its settings and weights.
        build_tiny_if_missing: build a tiny random model at ``model_path`` if missing (demo, tests).
        adapter_path: a saved peft adapter directory on ``model_path``.
        dtype: backbone dtype ("auto": bfloat16 on a GPU, float32 on the CPU).
        question: system prompt asking for yes / no.
        yes_words: words whose first tokens count as "yes".
        no_words: words whose first tokens count as "no".
        text: "think" (the reasoning inside ``<think>``) or "full" (the whole completion).
        max_text_tokens: longer reasoning is cut to this many tokens, from its start and its end.
        keep_last_tokens: how many of the kept tokens come from the end of a cut reasoning.
        max_image_pixels: images larger than this are downscaled first (0: no limit).
        score_batch_size: completions per forward call.
        require_well_formed: score 0 unless the completion is ``<think>..</think><answer>..</answer>``.
        name: key of the head in scores, weights and logs.

    The model arguments (``model_path`` to ``max_image_pixels`` but ``dtype``) default to
    ``None``: the checkpoint's value, else the :class:`LocalizabilitySettings` default.
    """

    name = "loc"

    def __init__(
        self,
        model_path: str | None = None,
        checkpoint: str | None = None,
        build_tiny_if_missing: bool | str | None = None,
        adapter_path: str | None = None,
        dtype: Dtype = "auto",
        question: str | None = None,
        yes_words: list[str] | None = None,
        no_words: list[str] | None = None,
        text: Literal["think", "full"] | None = None,
        max_text_tokens: int | None = None,
        keep_last_tokens: int | None = None,
        max_image_pixels: int | None = None,
        score_batch_size: int = 16,
        require_well_formed: bool = False,
        name: str = "loc",
    ) -> None:
        super().__init__(name=name)
        settings, state = resolve_settings(
            checkpoint, model_path=model_path, build_tiny_if_missing=build_tiny_if_missing, adapter_path=adapter_path,
            dtype=dtype, question=question, yes_words=yes_words, no_words=no_words, text=text,
            max_text_tokens=max_text_tokens, keep_last_tokens=keep_last_tokens, max_image_pixels=max_image_pixels,
        )
        # its own values, given explicitly: LightningCLI hands every LightningModule it builds the
        # hyper-parameters of the `model` key, so a head nested in the policy's config would
        # otherwise store the policy's
        own = {"checkpoint": checkpoint, "score_batch_size": score_batch_size, "require_well_formed": require_well_formed, "name": name}
        self.save_hyperparameters({**settings.to_hparams(), **own})
        self.model = LocalizabilityModel(settings)
        if state is not None:  # pruned checkpoints lack the frozen weights, read from model_path
            self.model.load_state_dict({**self.model.state_dict(), **state})
        self.freeze()
        self.score_batch_size = score_batch_size
        self._shard_group = None  # the ranks' process group once sharded

    @classmethod
    def from_checkpoint(cls, path: str | Path, **overrides: Any) -> "LocalizabilityReward":
        """A frozen head from a trainer's ``.ckpt`` file or an exported directory (full Hugging
        Face model, or LoRA adapter on its ``base_model_path``). ``overrides`` are init arguments
        (e.g. ``score_batch_size``, or ``model_path`` when the base model moved)."""
        path = Path(path)
        if path.is_file():
            return cls(checkpoint=str(path), **overrides)
        return cls(**{**exported_arguments(path), **overrides})

    @torch.no_grad()
    def score(self, batch: RewardBatch) -> torch.Tensor:  # [N]
        completions = batch.completions
        if self.hparams.require_well_formed:
            completions = [c if parse_answer(c).well_formed else None for c in completions]
        calls = forward_calls(len(completions), self.score_batch_size)
        if self._shard_group is not None:  # every rank makes as many forward calls as the busiest
            import torch.distributed as dist

            count = torch.tensor([calls], device=self.model.device)
            dist.all_reduce(count, op=dist.ReduceOp.MAX, group=self._shard_group)
            calls = int(count.item())
        return self.model.probabilities(batch.images, completions, self.score_batch_size, calls=calls)

    def shard(self, mesh, mp_policy=None) -> None:
        """FSDP2 over the policy's ``mesh`` (``globe.models.sharding.shard_vlm``): each rank keeps
        a shard of every weight, so a 7B R_loc is not held whole on every rank. Collective: every
        rank of ``mesh`` calls it (and, after it, every ``score``)."""
        from globe.models.sharding import is_sharded, shard_vlm

        if not is_sharded(self.model.vlm):
            shard_vlm(self.model.vlm, mesh, mp_policy=mp_policy)
        self._shard_group = mesh.get_group()
