"""``GRPOPolicy``: GRPO fine-tuning of a vision-language policy, rollouts inside ``training_step``.

One training step (one batch of B images) is an orchestration of small overridable methods:

    prompts     = self.build_prompts(batch)             # chat template + processor
    completions = self.rollout(prompts)                 # engine: G samples per prompt
    rewards     = self.score(batch, prompts, completions)  # reward heads, weighted sum
    advantages  = self.advantages(rewards.total)        # group-normalised
    stats       = self.optimize(prompts, completions, advantages)  # mu passes, micro-batched
    self.engine.sync_weights(self.model)                # engine samples from the new weights

This module is the LightningModule: the orchestration, the set-up (loading, FSDP2 sharding of the
policy, its reference and the reward heads), evaluation and checkpoint contents. The parts live
beside it, each in its own file:

    globe/grpo/trajectory.py      Rewards, Rollout, TrainBatch, Trajectory: what a step carries, with shapes
    globe/grpo/update.py          GRPOUpdate: the loss over micro-batches of whole groups, num_iterations
                                  passes, token normalisation over the global step, the step's stats
    globe/grpo/reference.py       ReferencePolicy: pi_ref of the KL term (adapters off, or a frozen copy)
    globe/grpo/dynamic_step.py    a step under dynamic sampling: refill, kept batch, padding, logs
    globe/grpo/collectives.py     the decisions every rank takes alike (refill rounds, maxima, token counts)
    globe/grpo/settings.py        LossSettings, OptimSettings, WarmStartSettings, DynamicSamplingSettings:
                                  the grouped arguments (model.init_args.loss.beta, ...), checked when built
    globe/warm_start.py           the supervised warm start and the switch to GRPO
    globe/rollout/factory.py      make_engine: the HF or vLLM rollout engine (and vLLM's logprobs_mode)
    globe/grpo/advantages.py, loss.py, loss_types.py, dynamic_sampling.py, lr_schedule.py ...
                                  the pure math, tested with hand-worked numbers

Algorithm (paper, sec. 3.3): GRPO with A = (r - mean_g) / (std_g + eps), clipped surrogate with
epsilon 0.2, k3 KL to the reference policy with beta 0.001, no SFT cold start.

Deviations and additions, all configurable:
- ``warm_start.steps``: the first steps are supervised (teacher-forced NLL of the sample's
  reference reasoning) instead of GRPO. The paper has no such stage; the demo uses it because a
  tiny random model cannot produce the answer format by chance. Logged under ``warm_start/``.
- ``loss.epsilon_high`` (clip-higher), ``loss.loss_type`` (``dapo``: the global token mean, the default;
  ``grpo``: the paper's sequence mean; ``dr_grpo``, ``bnpo``, ``gspo``: ``globe.grpo.loss_types``),
  ``loss.scale_rewards`` (``group`` / ``batch`` / ``none``), ``loss.reward_aggregation: normalize_then_sum``
  (GDPO: each head normalised in its group before the weighted sum), ``optim.num_iterations`` > 1
  (several passes over one rollout batch with the rollout's old log-probs).
- Truncated importance sampling (``loss.is_cap``) corrects for the sampler (vLLM) and the trainer
  computing different log-probs for the same tokens; the mismatch is logged.
- Rollout seeds come from (seed, stage, step or batch index, rank), never from the global RNG
  (``globe.rollout.seeds``): runs reproduce whatever else drew random numbers, and every
  validation decodes batch k with the same seed, so checkpoints are compared on the same draws.
- Completions cut at ``max_new_tokens`` are scored like any other (their answer is usually
  missing, so the accuracy heads give 0) and their fraction is logged, never silently hidden.
  ``loss.mask_truncated_completions`` (DAPO's overlong filtering, TRL's option of that name) zeroes their
  rows of the loss mask instead: they still count in the group statistics and the logs.
- ``eval_group_size`` k > 1 draws k samples per validation / test image: the metrics of the first
  sample are logged as with k = 1, and those of the best of the k by distance under
  ``<stage>/best_of_k/``.
- ``dynamic_sampling.enabled`` (DAPO; EasyR1's ``online_filtering``; ``globe.grpo.dynamic_sampling``): groups
  of equal rewards are dropped after scoring, and further training batches are drawn (from the fit
  loop's own iterator, ``globe.train_batches``, so the data position and an exact resume count
  them), rolled out and scored until the step holds ``batch_size`` informative groups or
  ``dynamic_sampling.max_tries`` extra batches were drawn. Every rank runs the same rounds; ranks
  short of groups pad with loss-free groups so every rank runs the same micro-batches; a step with
  no informative group on any rank steps the optimiser with no gradient (weights and AdamW moments
  unchanged). Logged under ``train/dynamic_sampling/``.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule

from globe.evaluation import PREDICTION_COLUMNS, Prediction, best_of_k, evaluate_completions, first_samples, metric_inputs
from globe.grpo import collectives, dynamic_step
from globe.grpo.advantages import decoupled_advantages, group_advantages
from globe.grpo.dynamic_sampling import Refill, informative_groups
from globe.grpo.lr_schedule import LRPhase, build_scheduler
from globe.grpo.reference import ReferencePolicy
from globe.grpo.settings import (
    DynamicSamplingSettings, LossSettings, OptimSettings, WarmStartSettings, as_settings,
)
from globe.grpo.trajectory import Rewards, Rollout, TrainBatch
from globe.grpo.update import GRPOUpdate, loss_mask
from globe.metrics import GeoAccuracy
from globe.models.backbones import backbone_for
from globe.models.loading import LoraConfigSpec, load_vlm, resolve_dtype
from globe.models.sharding import shard_vlm
from globe.output_files import atomic_writer, check_writable_dir, check_writable_file
from globe.prompts import GEO_PROMPT
from globe.rewards.base import RewardBatch, RewardHead
from globe.rewards.combine import combine_rewards
from globe.rollout import seeds
from globe.rollout.base import Completions, PromptBatch, RolloutEngine, SamplingConfig
from globe.rollout.factory import make_engine
from globe.rollout.prompts_batch import build_prompt_batch, prompt_inputs_to
from globe.sample import GeoSample
from globe.train_batches import FitLoopBatches
from globe.warm_start import in_warm_start, nll_step, start_grpo, starts_grpo, target_tokens

log = logging.getLogger(__name__)


class GRPOPolicy(LightningModule):
    """GRPO on a Hugging Face VLM. Every argument is a config key (``model.init_args.<name>``).

    Args:
        model_path: local Hugging Face model directory of a family with an adapter
            (``globe.models.backbones``: the paper's first, others by their ``model_type``).
        build_tiny_if_missing: build a tiny demo model at ``model_path`` when absent: ``true`` for
            the default family, or a backbone name (``python -m globe.models.tiny --backbone NAME``).
        dtype: ``auto`` (bf16 on GPU, fp32 on CPU), ``float32`` or ``bfloat16``.
        lora: LoRA adapters (peft) on the language model; ``None`` = full fine-tuning.
        gradient_checkpointing: trade compute for activation memory.
        fsdp_compute_dtype: under ``ModelParallelStrategy`` (FSDP2), gather and compute in this
            dtype while the sharded master weights keep the loaded dtype and gradients are reduced
            in float32 (load ``dtype: float32`` + ``bfloat16`` here = bf16 training with fp32
            master weights, as DeepSpeed's bf16 mode does). ``None``: compute in the loaded dtype.
        rewards: reward heads (each has a ``name``).
        reward_weights: weight per head name (paper: accuracy 1.0, localizability 0.5,
            grounding 0.2, format 1.0). Heads missing here weigh 1.0.
        engine: ``hf`` (transformers ``generate``) or ``vllm``.
        vllm: keyword arguments of ``VLLMRolloutEngine`` (memory share, sleep mode, ...).
        group_size: G completions per prompt (paper: 16).
        sampling: training sampling (paper: T 1.0, top_p 0.9, top_k 50, 1024 tokens).
        eval_sampling: validation / test decoding (paper: T 0.1, 512 tokens).
        loss: the GRPO objective (``globe.grpo.settings.LossSettings``): ``beta`` (KL, paper 0.001;
            0 disables the reference policy), ``epsilon`` / ``epsilon_high`` (clip range),
            ``loss_type`` (``dapo``: token mean over the whole global step, the default; ``grpo``:
            the paper's sequence mean; ``dr_grpo``, ``bnpo``, ``gspo``: ``globe.grpo.loss_types``),
            ``scale_rewards`` (``group`` / ``batch`` / ``none``), ``reward_aggregation``
            (``sum_then_normalize``, the paper's, or GDPO's ``normalize_then_sum``),
            ``mask_truncated_completions`` and ``is_cap`` (truncated importance sampling).
        optim: AdamW and the GRPO phase's schedule (``OptimSettings``): ``learning_rate`` (peak),
            ``weight_decay``, ``warmup_steps``, ``lr_decay`` (``constant``, the paper's, ``cosine``
            or ``linear`` to ``min_lr_ratio x learning_rate`` at ``trainer.max_steps``; its state is
            checkpointed), ``max_grad_norm``, ``num_iterations`` (passes per rollout batch) and
            ``micro_batch_prompts`` (whole groups per forward / backward).
        warm_start: supervised steps before GRPO (``WarmStartSettings``; demo only, see the module
            doc): ``steps``, ``lr``, ``warmup_steps``, ``decay`` and ``reset_optimizer`` (start
            GRPO with fresh AdamW moments, ``globe.grpo.optimizer_state``).
        prompt: the user prompt (default: the paper's).
        prefer_coordinates: validation / test / predict take the answer's ``coordinates:`` line
            for the distance when it is valid, else the geocoded names (``GeoJudge``).
        predictions_csv: where ``test`` writes its predictions (default: the logger's directory).
        thresholds_km: accuracy thresholds of the evaluation.
        eval_group_size: samples per image in validation / test; metrics of the first sample, plus
            the best of the k by distance under ``<stage>/best_of_k/`` when k > 1.
        dynamic_sampling: DAPO's dynamic sampling (``DynamicSamplingSettings``; the module doc and
            docs/grpo.md): ``enabled`` drops the groups of equal rewards and refills the step with
            groups of further training batches, up to ``max_tries`` extra batches; a kept group
            needs a reward std of at least ``min_std`` (0: any spread).
        rollout_batches: training batches a GRPO step rolls out together: its own and
            ``rollout_batches - 1`` more drawn from the fit loop's stream (``globe.train_batches``,
            counted in the data position), so a GRPO step can hold more prompts than a warm-start
            step learns from (the data module has one ``batch_size``). Under dynamic sampling the
            step's target is ``rollout_batches x batch_size`` informative groups.
    """

    def __init__(
        self,
        model_path: str,
        build_tiny_if_missing: bool | str = False,
        dtype: Literal["auto", "float32", "bfloat16"] = "auto",
        lora: LoraConfigSpec | None = None,
        gradient_checkpointing: bool = False,
        fsdp_compute_dtype: Literal["bfloat16", "float16", "float32"] | None = None,
        rewards: list[RewardHead] | None = None,
        reward_weights: dict[str, float] | None = None,
        engine: Literal["hf", "vllm"] = "hf",
        vllm: dict[str, Any] | None = None,
        group_size: int = 16,
        sampling: SamplingConfig = SamplingConfig(),
        eval_sampling: SamplingConfig = SamplingConfig(temperature=0.1, top_p=1.0, top_k=0, max_new_tokens=512),
        loss: LossSettings = LossSettings(),
        optim: OptimSettings = OptimSettings(),
        warm_start: WarmStartSettings = WarmStartSettings(),
        prompt: str = GEO_PROMPT,
        prefer_coordinates: bool = False,
        predictions_csv: str | None = None,
        thresholds_km: tuple[float, ...] = (1, 25, 200, 750, 2500),
        eval_group_size: int = 1,
        dynamic_sampling: DynamicSamplingSettings = DynamicSamplingSettings(),
        rollout_batches: int = 1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["rewards"])
        if group_size < 2:
            raise ValueError(f"group_size must be >= 2 for group-normalised advantages, got {group_size}")
        if eval_group_size < 1:
            raise ValueError(f"eval_group_size must be >= 1, got {eval_group_size}")
        if rollout_batches < 1:
            raise ValueError(f"rollout_batches must be >= 1, got {rollout_batches}")
        self.automatic_optimization = False
        # a Python caller (or a stored checkpoint's hyper-parameters) may hand the groups over as dicts
        self.sampling = sampling if isinstance(sampling, SamplingConfig) else SamplingConfig(**sampling)
        self.eval_sampling = eval_sampling if isinstance(eval_sampling, SamplingConfig) else SamplingConfig(**eval_sampling)
        self.lora = lora if lora is None or isinstance(lora, LoraConfigSpec) else LoraConfigSpec(**lora)
        self.loss = as_settings(LossSettings, loss)
        self.optim = as_settings(OptimSettings, optim)
        self.warm_start = as_settings(WarmStartSettings, warm_start)
        self.dynamic_sampling = as_settings(DynamicSamplingSettings, dynamic_sampling)
        self.loss_type = self.loss.loss_type
        self.scale_rewards = self.loss.effective_scale_rewards
        # plain values only in the hyper-parameters: a checkpoint loads with torch.load(weights_only=True)
        for name in ("sampling", "eval_sampling", "lora", "loss", "optim", "warm_start", "dynamic_sampling"):
            value = getattr(self, name)
            self.hparams[name] = None if value is None else asdict(value)
        self.reward_heads = torch.nn.ModuleList(rewards or [])
        names = [h.name for h in self.reward_heads]
        if len(set(names)) != len(names):
            raise ValueError(f"reward heads need distinct names, got {names}")
        unknown = set(reward_weights or {}) - set(names)
        if unknown:
            raise ValueError(f"reward_weights names {sorted(unknown)} match no reward head (heads: {names})")
        for head in self.reward_heads:
            head.requires_grad_(False).eval()
        self.val_geo = GeoAccuracy(thresholds_km)
        self.test_geo = GeoAccuracy(thresholds_km)
        self.val_best_geo = GeoAccuracy(thresholds_km)  # best of eval_group_size samples (k > 1)
        self.test_best_geo = GeoAccuracy(thresholds_km)
        self.model: torch.nn.Module | None = None
        self.processor = None
        self.reference: ReferencePolicy | None = None
        self._engine: RolloutEngine | None = None
        self._engine_stale = False  # the trained weights changed since the engine's last sync
        self._gazetteer = None
        self._test_rows: list[Prediction] = []
        self.last_rollout: dict[str, Any] | None = None  # read by the completions-table callback

    # ------------------------------------------------------------------ set-up
    def configure_model(self) -> None:
        """Load the policy (and its reference) once, under the strategy's init context."""
        if self.model is not None:
            return
        self._refuse_wrapping_strategies()
        hp = self.hparams
        path = Path(hp.model_path)
        if not path.exists():
            if not hp.build_tiny_if_missing:
                raise FileNotFoundError(f"model_path {path} does not exist (set build_tiny_if_missing for the demo model)")
            from globe.models.tiny import build_tiny

            build_tiny(path, backbone=None if hp.build_tiny_if_missing is True else hp.build_tiny_if_missing)
        self.model, self.processor = load_vlm(str(path), dtype=hp.dtype, lora=self.lora, gradient_checkpointing=hp.gradient_checkpointing)
        self.model.train()  # from_pretrained returns eval mode; reward heads stay frozen in eval
        fitting = self._trainer is None or self.trainer.state.fn == "fit"
        # the KL reference matters for training only: evaluation does not copy a 7B model for nothing
        self.reference = ReferencePolicy.create(self.model, self.lora) if self.loss.beta != 0.0 and fitting else None
        if self.reference is not None and self.reference.frozen_copy is not None:
            # a submodule, so it moves with the policy and (after a warm start) is checkpointed
            self.reference_model = self.reference.frozen_copy
        mesh = self._data_parallel_mesh()
        if mesh is None:
            if hp.fsdp_compute_dtype is not None:
                if fitting:
                    raise ValueError("fsdp_compute_dtype needs trainer.strategy ModelParallelStrategy (FSDP2 sharding)")
                # evaluating a sharded run's checkpoint on one device: compute in the same dtype
                self.model.to(resolve_dtype(hp.fsdp_compute_dtype))
            return
        # ModelParallelStrategy: FSDP2 over the data-parallel ranks (globe/models/sharding.py)
        mp_policy = None
        if hp.fsdp_compute_dtype is not None:
            from torch.distributed.fsdp import MixedPrecisionPolicy

            mp_policy = MixedPrecisionPolicy(param_dtype=resolve_dtype(hp.fsdp_compute_dtype), reduce_dtype=torch.float32)
        shard_vlm(self.model, mesh, mp_policy=mp_policy)
        if self.reference is not None and self.reference.frozen_copy is not None:
            shard_vlm(self.reference.frozen_copy, mesh, mp_policy=mp_policy)
        for head in self.reward_heads:  # frozen heads with a model of their own shard alike (RewardHead.shard)
            head.shard(mesh, mp_policy=mp_policy)

    def _refuse_wrapping_strategies(self) -> None:
        """FSDP1 (``strategy: fsdp``) and DeepSpeed wrap the whole LightningModule: parameters are
        gathered only inside the wrapper's forward, while a GRPO step calls the model directly,
        several times (generate, old / reference log-probs, micro-batches) and reads whole weights
        for the vLLM sync. Sharding goes through ``ModelParallelStrategy`` (FSDP2) instead."""
        if self._trainer is None:
            return
        from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy

        strategy = self.trainer.strategy
        if isinstance(strategy, (FSDPStrategy, DeepSpeedStrategy)):
            raise ValueError(
                f"GRPOPolicy does not run under {type(strategy).__name__}; shard with FSDP2: trainer.strategy "
                "class_path lightning.pytorch.strategies.ModelParallelStrategy, init_args {data_parallel_size: N, "
                "tensor_parallel_size: 1} (see the paper configs in configs/grpo/, docs/distributed.md)"
            )

    def _data_parallel_mesh(self):
        """The data-parallel ``DeviceMesh`` under Lightning's ``ModelParallelStrategy``, else ``None``.

        The policy shards with FSDP2 only (``globe.models.sharding``); tensor parallelism of the
        trainer is refused (vLLM's own ``tensor_parallel_size`` is a separate, rollout-side setting).
        """
        mesh = self.device_mesh if self._trainer is not None else None
        if mesh is None:
            return None
        if "tensor_parallel" in (mesh.mesh_dim_names or ()) and mesh["tensor_parallel"].size() > 1:
            raise ValueError(
                f"GRPOPolicy shards with FSDP2 over data-parallel ranks only; got tensor_parallel_size="
                f"{mesh['tensor_parallel'].size()} (use ModelParallelStrategy(data_parallel_size=N, tensor_parallel_size=1))"
            )
        return mesh["data_parallel"] if "data_parallel" in (mesh.mesh_dim_names or ()) else mesh

    @property
    def engine(self) -> RolloutEngine:
        """The rollout engine, created on first use (vLLM needs the final device; ``globe.rollout.factory``)."""
        if self._engine is None:
            hp = self.hparams
            self._engine = make_engine(hp.engine, self.model, self.processor, hp.model_path, hp.vllm, self.sampling)
            if hp.engine == "vllm":
                self._engine_stale = True  # start from the trainer's weights (e.g. a checkpoint)
        return self._engine

    @property
    def gazetteer(self):
        if self._gazetteer is None:
            from globe.geo.judge import shared_gazetteer

            self._gazetteer = shared_gazetteer()  # the instance the reward heads use, not a second copy
        return self._gazetteer

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.optim.learning_rate, weight_decay=self.optim.weight_decay)
        # stepped by hand after every optimiser step (manual optimisation); Lightning checkpoints its state
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": build_scheduler(optimizer, self.lr_phases()), "interval": "step"}}

    def lr_phases(self) -> list[LRPhase]:
        """The warm-start phase, then the GRPO phase up to ``trainer.max_steps`` (or the estimated
        number of steps of an epoch-bounded run)."""
        optim, warm = self.optim, self.warm_start
        total = warm.steps + 1
        if self._trainer is not None:
            total = self.trainer.max_steps if self.trainer.max_steps > 0 else int(self.trainer.estimated_stepping_batches)
        grpo_steps = max(total - warm.steps, 1)

        def phase(steps: int, peak: float, warmup: int, decay: str) -> LRPhase:
            return LRPhase(steps, peak, min(warmup, steps), decay, optim.min_lr_ratio if decay != "constant" else 0.0)

        return [
            phase(warm.steps, warm.lr or optim.learning_rate, warm.warmup_steps, warm.decay),
            phase(grpo_steps, optim.learning_rate, optim.warmup_steps, optim.lr_decay),
        ]

    def _optimizer_step(self, optimizer) -> None:
        optimizer.step()
        try:
            scheduler = self.lr_schedulers()
        except RuntimeError:  # no trainer attached (the policy used as a library)
            scheduler = None
        if scheduler is not None:
            scheduler.step()

    # ------------------------------------------------------------------ the GRPO step
    def training_step(self, batch: list[GeoSample], batch_idx: int) -> None:
        if in_warm_start(self.global_step, self.warm_start.steps):
            return self.warm_start_step(batch)
        if starts_grpo(self.global_step, self.warm_start.steps):
            start_grpo(self.reference, self.optimizers(), self.warm_start.reset_optimizer)
        timings = {}
        t0 = time.perf_counter()
        batch = self.grpo_batch(batch)
        prompts = self.build_prompts(batch)
        completions = self.rollout(prompts)
        timings["time/rollout_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        rewards = self.score(batch, prompts, completions)
        advantages, zero_spread = self.advantages(rewards.total, rewards.heads)
        timings["time/score_s"] = time.perf_counter() - t1
        if self.dynamic_sampling.enabled:
            return self.dynamic_sampling_step(Rollout(batch, prompts, completions, rewards, zero_spread), timings)
        t2 = time.perf_counter()
        stats = self.optimize(prompts, completions, advantages)
        self._engine_stale = True  # synced before the next rollout (``current_engine``)
        timings["time/optimize_s"] = time.perf_counter() - t2
        self.log_step(batch, completions, rewards, zero_spread, stats, timings)

    def grpo_batch(self, batch: list[GeoSample]) -> list[GeoSample]:
        """The step's prompts: its own batch and ``rollout_batches - 1`` further training batches.

        A batch is drawn only when every rank can draw one (one all-reduce per batch), so every
        rank rolls out the same number of prompts and runs the same collectives; when the epoch's
        stream runs out the step rolls out what it has. A stream that ends early on some rank all
        the same (shorter than its length) leaves every rank the batches all of them got; a batch
        drawn beyond that is consumed untrained, with a warning.
        """
        wanted = self.hparams.rollout_batches - 1
        if wanted == 0:
            return batch
        source = FitLoopBatches(self.trainer if self._trainer is not None else None)
        drawn: list[list[GeoSample]] = []
        for _ in range(wanted):
            if not self._agree(True, source.can_draw()):
                break
            more = source.draw()
            if more is None:
                break
            drawn.append(list(more))
        usable = -self._all_reduce_max(-len(drawn))
        if usable < len(drawn):
            log.warning("rollout_batches: step %d drops %d drawn batch(es): another rank's stream ran out",
                        self.global_step, len(drawn) - usable)
        return [*batch, *(s for more in drawn[:usable] for s in more)]

    # ------------------------------------------------------------------ dynamic sampling (globe.grpo.dynamic_step)
    def dynamic_sampling_step(self, first: Rollout, timings: dict[str, float]) -> None:
        """The rest of a step under ``dynamic_sampling``: refill, keep, optimise (or step without
        gradient when no rank kept a group), log."""
        dynamic_step.run(self, first, timings)

    def informative(self, rollout: Rollout) -> torch.Tensor:
        """``[B]`` bool: the groups of ``rollout`` that dynamic sampling keeps (``informative_groups``)."""
        return informative_groups(rollout.zero_spread, rollout.rewards.total, self.hparams.group_size, self.dynamic_sampling.min_std)

    def refill(self, first: Rollout) -> tuple[list[Rollout], Refill]:
        """Roll out further training batches until this step has enough informative groups."""
        return dynamic_step.refill(self, first)

    def kept_batch(self, rollouts: list[Rollout], refill: Refill) -> TrainBatch | None:
        """The kept groups plus padding groups up to the fullest rank's micro-batch count; ``None``
        when no rank kept a group (``globe.grpo.dynamic_step.kept_batch``)."""
        return dynamic_step.kept_batch(
            rollouts, refill, group_size=self.hparams.group_size, micro_batch_prompts=self.optim.micro_batch_prompts,
            max_kept=self._all_reduce_max(len(refill.kept)), build_prompts=self.build_prompts, advantages=self.advantages,
            pad_token_id=self._pad_token_id(),
        )

    def _pad_token_id(self) -> int:
        tokenizer = getattr(self.processor, "tokenizer", None)
        pad = getattr(tokenizer, "pad_token_id", None)
        return int(pad) if pad is not None else 0

    def _world_size(self) -> int:
        return self.trainer.world_size if self._trainer is not None else 1

    def _agree(self, need: bool, can_draw: bool) -> bool:
        """Another refill round, decided alike on every rank (``globe.grpo.collectives.agree``)."""
        return collectives.agree(need, can_draw, self._world_size(), self.device)

    def _all_reduce_max(self, value: int) -> int:
        return collectives.all_reduce_max(value, self._world_size(), self.device)

    def build_prompts(self, batch: list[GeoSample]) -> PromptBatch:
        prompts = build_prompt_batch(self.processor, [s.image for s in batch], self.hparams.prompt)
        prompts.inputs = prompt_inputs_to(prompts.inputs, self.device)
        return prompts

    def rollout_seed(self, stage: str, index: int, sampling: SamplingConfig) -> int:
        """The seed of one rollout call (``globe.rollout.seeds``): from the sampling's ``seed``, or
        ``seed_everything``'s when unset, the stage, the step or batch index and the rank."""
        base = sampling.seed if sampling.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        return seeds.rollout_seed(base, stage, index, self.global_rank)

    @torch.no_grad()
    def rollout(
        self, prompts: PromptBatch, sampling: SamplingConfig | None = None, n: int | None = None, seed: int | None = None
    ) -> Completions:
        """``n`` (default ``group_size``) samples per prompt; ``seed`` default: this training step's."""
        sampling = sampling or self.sampling
        seed = self.rollout_seed("train", self.global_step, sampling) if seed is None else seed
        sampling = replace(sampling, seed=seed)
        was_training = self.model.training
        self.model.eval()
        engine = self.current_engine()
        completions = engine.generate(prompts, n or self.hparams.group_size, sampling)
        engine.sleep()
        self.model.train(was_training)
        return completions

    def current_engine(self) -> RolloutEngine:
        """The engine, awake and holding the trained weights: synced whenever they changed since
        its last sync (an optimiser step, a warm-start step, a restored checkpoint) or it dropped
        them (vLLM ``sleep_level: 2``). Every rank calls it at the same points (the sync is
        collective under FSDP2)."""
        engine = self.engine
        engine.wake()
        if self._engine_stale or engine.needs_sync:
            engine.sync_weights(self.model)
            self._engine_stale = False
        return engine

    @torch.no_grad()
    def score(self, batch: list[GeoSample], prompts: PromptBatch, completions: Completions) -> Rewards:
        reward_batch = RewardBatch.from_groups(batch, completions.texts, prompts.texts)
        heads = {h.name: h.score(reward_batch).float().cpu() for h in self.reward_heads}
        total = combine_rewards(heads, self.reward_weights(heads)) if heads else torch.zeros(len(completions.texts))
        return Rewards(heads=heads, total=total)

    def reward_weights(self, heads) -> dict[str, float]:
        """The weight of each scored head (1.0 for a head that ``reward_weights`` does not name)."""
        return {name: (self.hparams.reward_weights or {}).get(name, 1.0) for name in heads}

    def advantages(self, total: torch.Tensor, heads: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(advantages [B*G], zero_spread [B])`` of the rewards: the weighted sum normalised in its
        group (``sum_then_normalize``), or each head first (``normalize_then_sum``, needs ``heads``)."""
        if self.loss.reward_aggregation == "normalize_then_sum":
            if not heads:
                raise ValueError("reward_aggregation='normalize_then_sum' needs the per-head scores (heads=...)")
            return decoupled_advantages(heads, self.reward_weights(heads), self.hparams.group_size, scale=self.scale_rewards)
        return group_advantages(total, self.hparams.group_size, scale=self.scale_rewards)

    # ------------------------------------------------------------------ the update (globe.grpo.update)
    def grpo_update(self) -> GRPOUpdate:
        """This step's update: the policy, its reference and optimiser, the loss settings."""
        hp = self.hparams
        return GRPOUpdate(
            model=self.model, reference=self.reference, optimizer=self.optimizers(), optimizer_step=self._optimizer_step,
            backward=self.manual_backward, group_size=hp.group_size, temperature=self.sampling.temperature,
            max_completion_length=self.sampling.max_new_tokens, loss=self.loss, optim=self.optim,
            correct_sampler=hp.engine != "hf",  # the HF engine samples with the trainer's own log-probs
            world_size=self._world_size(), device=self.device,
        )

    def optimize(
        self, prompts: PromptBatch, completions: Completions, advantages: torch.Tensor, pad_rows: torch.Tensor | None = None
    ) -> dict[str, float]:
        """``num_iterations`` optimiser steps over the rollout, micro-batched by whole groups, each
        normalised by the sizes of the whole step (``GRPOUpdate.optimize``). ``pad_rows`` ``[B*G]``
        (dynamic sampling): rows that only make up the micro-batch count (no loss, not counted)."""
        return self.grpo_update().optimize(prompts, completions, advantages, pad_rows)

    def step_without_gradient(self) -> dict[str, float]:
        """``num_iterations`` optimiser steps without gradient: no weight or moment moves; the LR
        schedule and ``global_step`` advance (``GRPOUpdate.step_without_gradient``)."""
        return self.grpo_update().step_without_gradient()

    def loss_mask(self, completions: Completions) -> torch.Tensor:
        """The completion mask, with the rows of truncated completions zeroed under
        ``mask_truncated_completions`` (``globe.grpo.update.loss_mask``)."""
        return loss_mask(completions, self.loss.mask_truncated_completions)

    def log_step(self, batch, completions: Completions, rewards: Rewards, zero_spread, stats, timings) -> None:
        lengths = completions.mask.sum(dim=1).float()
        logs = {
            "train/reward": rewards.total.mean(),
            "train/reward_std": rewards.total.std(),
            "train/zero_spread_fraction": zero_spread.float().mean(),
            "train/truncated_fraction": completions.truncated.float().mean(),
            # completions whose loss is masked (mask_truncated_completions); 0 when the option is off
            "train/masked_truncated_fraction": completions.truncated.float().mean() * float(self.loss.mask_truncated_completions),
            "train/completion_length": lengths.mean(),
            "train/completion_length_max": lengths.max(),
        }
        for name, values in rewards.heads.items():
            logs[f"train/reward/{name}"] = values.mean()
            logs[f"train/reward/{name}_std"] = values.std()
        for key, value in stats.items():
            logs[f"train/{key}"] = value
        logs.update(timings)
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if hasattr(datamodule, "data_stats"):  # skipped samples (corrupt image, missing field...) by reason
            logs.update({k if k.startswith("data/") else f"data/{k}": float(v) for k, v in datamodule.data_stats().items()})
        self.log_dict(logs, batch_size=len(batch))
        self.log("reward", rewards.total.mean(), prog_bar=True, logger=False, batch_size=len(batch))
        self.last_rollout = {
            "keys": [s.key for s in batch for _ in range(self.hparams.group_size)],
            "completions": completions.texts,
            "rewards": rewards.total.tolist(),
            "heads": {k: v.tolist() for k, v in rewards.heads.items()},
        }

    # ------------------------------------------------------------------ supervised warm start (globe.warm_start)
    def warm_start_step(self, batch: list[GeoSample]) -> None:
        """Teacher-forced NLL of each sample's reference reasoning (not in the paper; see module doc)."""
        targets = [s.reasoning for s in batch]
        if not all(targets):
            raise ValueError("warm_start.steps > 0 needs samples with a reference `reasoning` (GeoSynth / MP16-Reason)")
        optimizer = self.optimizers()
        lr = optimizer.param_groups[0]["lr"]
        prompts = self.build_prompts(batch)
        tokenizer = self.processor.tokenizer
        ids, mask = target_tokens(tokenizer, targets, backbone_for(self.model).end_of_turn_id(tokenizer))
        loss = nll_step(self.model, prompts.inputs, ids.to(self.device), mask.to(self.device), optimizer,
                        self._optimizer_step, self.manual_backward, self.optim.max_grad_norm)
        self._engine_stale = True
        self.log_dict({"warm_start/nll": loss, "warm_start/lr": lr}, batch_size=len(batch))
        self.log("nll", loss, prog_bar=True, logger=False, batch_size=len(batch))

    # ------------------------------------------------------------------ evaluation
    def _evaluate(
        self, batch: list[GeoSample], batch_idx: int, metric: GeoAccuracy, stage: str, best_metric: GeoAccuracy | None = None
    ) -> list[Prediction]:
        """Decode ``eval_group_size`` samples per image; the first one's predictions feed ``metric``
        and the logs (and are returned), the best of them by distance feeds ``best_metric``."""
        k = self.hparams.eval_group_size
        prompts = self.build_prompts(batch)
        # batch k decodes with the same seed at every validation: checkpoints meet the same random numbers
        seed = self.rollout_seed(stage, batch_idx, self.eval_sampling)
        completions = self.rollout(prompts, sampling=self.eval_sampling, n=k, seed=seed)
        if k > 1:
            samples = [s for s in batch for _ in range(k)]  # row b * k + j: sample j of image b
            every = evaluate_completions(self.gazetteer, samples, completions.texts, prefer_coordinates=self.hparams.prefer_coordinates)
            if best_metric is not None:
                best_metric.update(**metric_inputs(best_of_k(every, k)))
            predictions, completions = every[::k], first_samples(completions, k)
        else:
            predictions = evaluate_completions(self.gazetteer, batch, completions.texts, prefer_coordinates=self.hparams.prefer_coordinates)
        metric.update(**metric_inputs(predictions))
        rewards = self.score(batch, prompts, completions)
        logs = {f"{stage}/reward": rewards.total.mean(), f"{stage}/truncated_fraction": completions.truncated.float().mean()}
        logs.update({f"{stage}/reward/{k}": v.mean() for k, v in rewards.heads.items()})
        self.log_dict(logs, batch_size=len(batch), sync_dist=True)
        return predictions

    def validation_step(self, batch: list[GeoSample], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, self.val_geo, "val", self.val_best_geo)

    def on_validation_epoch_end(self) -> None:
        self._log_metric(self.val_geo, "val")
        if self.hparams.eval_group_size > 1:
            self._log_metric(self.val_best_geo, "val/best_of_k")

    def test_step(self, batch: list[GeoSample], batch_idx: int) -> None:
        self._test_rows += self._evaluate(batch, batch_idx, self.test_geo, "test", self.test_best_geo)

    def on_test_epoch_end(self) -> None:
        self._log_metric(self.test_geo, "test")
        if self.hparams.eval_group_size > 1:
            self._log_metric(self.test_best_geo, "test/best_of_k")
        try:
            self._write_predictions(self._test_rows)
        except OSError as exn:  # the metrics above are logged and printed all the same
            warnings.warn(f"GRPOPolicy: the test predictions could not be written: {exn}", RuntimeWarning, stacklevel=1)
        self._test_rows = []

    def predict_step(self, batch: list[GeoSample], batch_idx: int) -> list[Prediction]:
        """Decode (``eval_sampling``), parse and geocode each image: one ``Prediction`` per sample,
        with the completion, the parsed names and the geocoded coordinates (written to disk by
        ``callbacks.prediction_writer.PredictionWriter``). Labels, when the data has them, are
        compared as in ``test``; without labels the name checks are NaN."""
        prompts = self.build_prompts(batch)
        seed = self.rollout_seed("predict", batch_idx, self.eval_sampling)
        completions = self.rollout(prompts, sampling=self.eval_sampling, n=1, seed=seed)
        return evaluate_completions(self.gazetteer, batch, completions.texts, prefer_coordinates=self.hparams.prefer_coordinates)

    def _log_metric(self, metric: GeoAccuracy, stage: str) -> None:
        values = metric.compute()
        metric.reset()
        logs = {f"{stage}/{k}": v.float() for k, v in values.items() if not (v.is_floating_point() and math.isnan(v))}
        self.log_dict(logs, prog_bar=False, sync_dist=True)  # equal on every rank already (torchmetrics synced)

    def _predictions_path(self) -> Path:
        path = self.hparams.predictions_csv
        if path is None:
            log_dir = self.trainer.log_dir if self._trainer is not None and self.trainer.log_dir else "."
            path = str(Path(log_dir) / "predictions_test.csv")
        if self._trainer is not None and self.trainer.world_size > 1:
            path = str(Path(path).with_suffix(f".rank{self.global_rank}.csv"))
        return Path(path)

    def _write_predictions(self, rows: list[Prediction]) -> None:
        """The test predictions as CSV, written atomically (one file per rank under several)."""
        path = self._predictions_path()
        with atomic_writer(path, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=PREDICTION_COLUMNS)
            writer.writeheader()
            writer.writerows(r.row() for r in rows)
        self.predictions_path = str(path)

    def setup(self, stage: str) -> None:
        """Check every output path before the long work starts (not after an hour of decoding)."""
        if stage == "test":
            check_writable_file(self._predictions_path(), "predictions_csv")
        if stage == "fit" and self._trainer is not None:
            for callback in self.trainer.checkpoint_callbacks:
                dirpath = getattr(callback, "dirpath", None)
                if dirpath:
                    check_writable_dir(dirpath, "checkpoint directory")

    # Frozen reward heads are configuration (each loads from its own checkpoint), not training
    # state: a 7B R_loc would otherwise double every policy checkpoint. They are left out of the
    # state dict itself, so single-file and distributed (FSDP2) checkpoints both omit them, and
    # loading puts the configured heads back.
    #
    # The frozen reference copy (full fine-tuning with beta > 0) is checkpointed only when it can
    # differ from ``model_path``, i.e. after a warm start refreshed it from trained weights; else it
    # is rebuilt exactly from ``model_path`` and would only double every checkpoint.
    def _stateless_prefixes(self) -> tuple[str, ...]:
        keep_reference = self.warm_start.steps > 0
        return ("reward_heads.",) if keep_reference else ("reward_heads.", "reference_model.")

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        state = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        drop = tuple(prefix + p for p in self._stateless_prefixes())
        for key in [k for k in state if k.startswith(drop)]:
            del state[key]
        return state

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        drop = self._stateless_prefixes()
        if not hasattr(self, "reference_model"):  # evaluation builds no reference
            drop = (*drop, "reference_model.")
        state = {k: v for k, v in state_dict.items() if not k.startswith(drop)}
        current = super().state_dict(keep_vars=True)
        # configured heads, and the reference where the checkpoint has none (rebuilt from model_path)
        state.update({k: v for k, v in current.items() if k.startswith(drop) or (k.startswith("reference_model.") and k not in state)})
        return super().load_state_dict(state, strict=strict, assign=assign)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._engine_stale = True  # restored weights reach the engine before its next rollout

    def on_fit_start(self) -> None:
        if not self.reward_heads:
            raise ValueError("GRPOPolicy has no reward heads: set model.init_args.rewards (see configs/reward/heads_*.yaml)")

    def on_fit_end(self) -> None:
        if self._engine is not None and self.hparams.engine == "vllm":
            self._engine.sleep()
