"""Numerical parity of GLOBE's GRPO objectives with TRL's ``GRPOTrainer``, one step at a time.

For each loss type the two share, both sides get the same step of the tiny Qwen2.5-VL
(``build_tiny_qwen2_5_vl``): the same prompts and images, the same completion token ids (some
ending in EOS, some cut at the maximum length), the same rewards of two heads, and the same old
and reference log-probs. Then they are compared at three points:

1. advantages and loss mask: TRL's own ``_generate_and_score_completions`` (its reward scaling,
   ``multi_objective_aggregation`` and ``mask_truncated_completions``) against GLOBE's
   ``group_advantages`` / ``decoupled_advantages`` and ``GRPOPolicy.loss_mask``'s rule;
2. the loss on one leaf tensor of per-token log-probs: TRL's ``compute_loss`` with its log-prob
   forward replaced by that leaf, against ``globe.grpo.loss.grpo_loss``; loss value and gradient
   with respect to the leaf;
3. the loss through the model: TRL's ``compute_loss`` on its real forward (fused LM head) against
   ``completion_logprobs`` + ``grpo_loss`` on a second copy of the same weights; loss value and
   gradient with respect to every parameter. Micro-batched cases go through TRL's
   ``_prepare_inputs`` (generation batch split into ``gradient_accumulation_steps`` shuffled
   micro-batches) and GLOBE's group chunks with the step's ``StepSize``.

TRL's generation is the one part that is not driven: ``_generate_single_turn`` returns the
prepared token ids (a random model almost never samples EOS, so truncation would not vary), and
the reward functions return prepared numbers. Everything after it is TRL's code. The step is
off-policy (``num_iterations=2``, so TRL computes old log-probs; then both copies of the model
move by the same seeded noise before the loss) and ``beta=0.04``, so clipping and the KL term act.

    bash benchmarks/setup_trl_env.sh          # once: .venv-bench with trl (never in .venv)
    OMP_NUM_THREADS=1 .venv-bench/bin/python benchmarks/trl_parity.py [--write-docs]

Without trl (the main ``.venv``) only the GLOBE side and the table code are importable; the
tests use them on hand-made numbers.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
DOC = REPO / "docs" / "trl_parity.md"
FIGURES_START, FIGURES_END = "<!-- parity:start -->", "<!-- parity:end -->"
REWARD_WEIGHTS = {"geo": 1.0, "format": 0.5}
# float32 tolerances, stated before the run: the leaf-tensor loss runs the same formula in two
# codes (a few float32 roundings apart); through the model the log-probs come from two different
# log-softmax kernels (TRL's chunked fused LM head vs log_softmax + gather) and sums over 4,096 logits
TOL_ADVANTAGE = 1e-6  # absolute
TOL_LEAF = 1e-6  # absolute, loss and d loss / d logp
TOL_MODEL_LOSS = 1e-5  # absolute
TOL_MODEL_GRAD = 1e-4  # relative to the largest |gradient| entry of the parameters


@dataclass(frozen=True)
class Case:
    """One configuration, named by GLOBE's keys; ``trl_*`` give TRL's names of it."""

    name: str
    loss_type: str  # GLOBE loss_type
    scale_rewards: str = "group"
    mask_truncated: bool = False
    reward_aggregation: str = "sum_then_normalize"
    micro_batches: int = 1  # TRL gradient_accumulation_steps; GLOBE group chunks
    epsilon: float = 0.2
    epsilon_high: float = 0.28
    bias_correction_kl: bool = False  # TRL use_bias_correction_kl (GLOBE has no such term)
    expect_equal: bool = True  # False: a documented difference, reported and not judged as a failure

    @property
    def trl_loss_type(self) -> str:
        return "grpo" if self.loss_type == "gspo" else self.loss_type

    @property
    def importance_sampling_level(self) -> str:
        return "sequence" if self.loss_type == "gspo" else "token"

    def trl_settings(self) -> str:
        parts = [f"loss_type={self.trl_loss_type}"]
        if self.loss_type == "gspo":
            parts.append("importance_sampling_level=sequence")
        parts.append(f"scale_rewards={self.scale_rewards}")
        if self.reward_aggregation != "sum_then_normalize":
            parts.append(f"multi_objective_aggregation={self.reward_aggregation}")
        if self.mask_truncated:
            parts.append("mask_truncated_completions")
        if self.micro_batches > 1:
            parts.append(f"gradient_accumulation_steps={self.micro_batches}")
        parts.append(f"epsilon={self.epsilon:g}/{self.epsilon_high:g}")
        parts.append(f"use_bias_correction_kl={self.bias_correction_kl}")
        return ", ".join(parts)


CASES: tuple[Case, ...] = (
    Case("grpo", "grpo"),
    Case("dr_grpo", "dr_grpo", scale_rewards="none"),
    Case("dapo", "dapo"),
    Case("bnpo", "bnpo"),
    Case("gspo (paper clip)", "gspo", epsilon=3e-4, epsilon_high=4e-4),
    Case("gspo (clip 0.2)", "gspo"),
    Case("grpo, masked truncated", "grpo", mask_truncated=True),
    Case("dr_grpo, masked truncated", "dr_grpo", scale_rewards="none", mask_truncated=True),
    Case("dapo, masked truncated", "dapo", mask_truncated=True),
    Case("bnpo, masked truncated", "bnpo", mask_truncated=True),
    Case("dapo, batch std", "dapo", scale_rewards="batch"),
    Case("dapo, normalize_then_sum", "dapo", scale_rewards="batch", reward_aggregation="normalize_then_sum"),
    Case("grpo, 2 micro-batches", "grpo", micro_batches=2),
    Case("dr_grpo, 2 micro-batches", "dr_grpo", scale_rewards="none", micro_batches=2),
    Case("dapo, 2 micro-batches", "dapo", micro_batches=2),
    Case("bnpo, 2 micro-batches", "bnpo", micro_batches=2, expect_equal=False),
    Case("dapo, TRL's default KL", "dapo", bias_correction_kl=True, expect_equal=False),
)


@dataclass(frozen=True)
class Setup:
    prompts: int = 4  # B
    group: int = 4  # G
    max_len: int = 12  # L_max: TRL max_completion_length, GLOBE max_new_tokens
    beta: float = 0.04
    temperature: float = 1.0
    perturb: float = 0.5  # weight noise after the rollout (relative to each tensor's mean |w|)
    seed: int = 0


# ---------------------------------------------------------------- the shared step (no TRL)
def make_step(setup: Setup, vocab: list[int], eos_id: int) -> dict:
    """Completion token lists (rows ``b * G + j``) and rewards of two heads, seeded.

    About a third of the completions run to ``max_len`` without EOS (truncated); the others end
    in EOS after 2 to ``max_len`` tokens. Group 1 gets the same rewards for every completion
    (a zero-spread group)."""
    g = torch.Generator().manual_seed(setup.seed)
    n = setup.prompts * setup.group
    lists = []
    for i in range(n):
        truncated = i % 3 == 1
        length = setup.max_len if truncated else int(torch.randint(2, setup.max_len + 1, (1,), generator=g))
        ids = [vocab[int(k)] for k in torch.randint(0, len(vocab), (length,), generator=g)]
        if not truncated:
            ids[-1] = eos_id
        lists.append(ids)
    geo = torch.randint(0, 5, (n,), generator=g).float() / 4  # 0, 0.25, ..., 1
    fmt = torch.randint(0, 2, (n,), generator=g).float()
    flat = slice(setup.group, 2 * setup.group)
    geo[flat], fmt[flat] = 0.5, 1.0
    return {"completions": lists, "rewards": {"geo": geo, "format": fmt}}


def globe_completions(lists: list[list[int]], eos_ids: list[int], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ids [N, C], mask [N, C], truncated [N])`` as GLOBE's engines give them: right padding,
    EOS inside the mask, truncated = no EOS at the end."""
    width = max(len(x) for x in lists)
    ids = torch.full((len(lists), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(lists), width), dtype=torch.long)
    for i, x in enumerate(lists):
        ids[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    truncated = torch.tensor([x[-1] not in eos_ids for x in lists])
    return ids, mask, truncated


def globe_advantages(case: Case, heads: dict[str, torch.Tensor], weights: dict[str, float], group: int) -> torch.Tensor:
    """``GRPOPolicy.advantages``: the weighted sum then ``scale_rewards``, or GDPO's normalize_then_sum."""
    from globe.grpo.advantages import decoupled_advantages, group_advantages

    if case.reward_aggregation == "normalize_then_sum":
        return decoupled_advantages(heads, weights, group, scale=case.scale_rewards)[0]
    total = sum(float(weights[k]) * heads[k] for k in weights)
    return group_advantages(total, group, scale=case.scale_rewards)[0]


def globe_loss_mask(case: Case, mask: torch.Tensor, truncated: torch.Tensor) -> torch.Tensor:
    """``GRPOPolicy.loss_mask``: truncated rows zeroed under ``mask_truncated_completions``."""
    if not case.mask_truncated:
        return mask
    return mask * (~truncated.bool()).unsqueeze(1).to(mask.dtype)


def globe_loss(
    case: Case, logp: torch.Tensor, old: torch.Tensor, ref: torch.Tensor, advantages: torch.Tensor,
    loss_mask: torch.Tensor, max_len: int, beta: float, row_chunks: list[tuple[int, int]] | None = None,
) -> tuple[torch.Tensor, dict]:
    """``GRPOPolicy.optimize``'s loss on one rank: each chunk of rows normalised by the sizes of the
    whole step (``StepSize``); the chunk losses add up. Returns the loss and the step's clip fraction."""
    from globe.grpo.loss import grpo_loss
    from globe.grpo.loss_types import StepSize

    tokens = loss_mask.sum().to(torch.float32).clamp(min=1)
    step = StepSize(rows=loss_mask.shape[0], local_tokens=tokens, global_tokens=tokens, world_size=1.0, max_completion_length=max_len)
    total, clipped = None, 0.0
    for s, e in row_chunks or [(0, loss_mask.shape[0])]:
        loss, stats = grpo_loss(logp[s:e], old[s:e], ref[s:e], advantages[s:e], loss_mask[s:e], beta=beta,
                                eps_low=case.epsilon, eps_high=case.epsilon_high, loss_type=case.loss_type, step=step)
        total = loss if total is None else total + loss
        clipped += float(stats["clip_fraction"]) * float(loss_mask[s:e].sum())
    return total, {"clip_fraction": clipped / float(tokens)}


# ---------------------------------------------------------------- comparison and table (no TRL)
@dataclass
class Row:
    case: str
    trl_settings: str
    expect_equal: bool
    advantage_diff: float | None  # max |A_trl - A_globe|; None where not compared
    mask_equal: bool | None
    leaf_loss_trl: float | None
    leaf_loss_globe: float | None
    leaf_grad_diff: float | None  # max |d loss / d logp|, TRL vs GLOBE
    model_loss_trl: float
    model_loss_globe: float
    model_grad_diff: float  # max |d loss / d theta| difference over every parameter
    model_grad_scale: float  # max |d loss / d theta| (GLOBE)
    logp_diff: float | None = None  # max |logp_trl - logp_globe| on the loss tokens
    clip_fraction: float | None = None  # GLOBE's clip fraction of the step (shows clipping acts)
    extra: dict = field(default_factory=dict)


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference of two tensors of one shape (0 for empty ones)."""
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return float((a - b).abs().max()) if a.numel() else 0.0


def judge(row: Row) -> dict[str, bool]:
    """Each check of a row against the stated tolerances (a check not made is absent)."""
    checks = {}
    if row.advantage_diff is not None:
        checks["advantages"] = row.advantage_diff <= TOL_ADVANTAGE
    if row.mask_equal is not None:
        checks["mask"] = row.mask_equal
    if row.leaf_loss_trl is not None:
        checks["leaf loss"] = abs(row.leaf_loss_trl - row.leaf_loss_globe) <= TOL_LEAF
        checks["leaf grad"] = row.leaf_grad_diff <= TOL_LEAF
    checks["model loss"] = abs(row.model_loss_trl - row.model_loss_globe) <= TOL_MODEL_LOSS
    checks["model grad"] = row.model_grad_diff <= TOL_MODEL_GRAD * max(row.model_grad_scale, 1e-12)
    return checks


def verdict(row: Row) -> str:
    """``pass`` / ``FAIL``; a documented difference reads ``differs (expected)`` or ``equal (difference expected)``."""
    ok = all(judge(row).values())
    if row.expect_equal:
        return "pass" if ok else "FAIL"
    return "equal (difference expected)" if ok else "differs (expected)"


def _num(x: float | None, fmt: str = ".3e") -> str:
    return "—" if x is None else format(x, fmt)


def markdown(rows: list[Row], meta: dict) -> str:
    """The figures block of docs/trl_parity.md."""
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    lines = [
        f"Measured {meta['date']}: {versions}; float32 on the CPU. One step of {meta['setup']['prompts']} prompts x "
        f"{meta['setup']['group']} completions, max {meta['setup']['max_len']} completion tokens, beta {meta['setup']['beta']}, "
        f"weights moved by seeded noise between rollout and loss (old != current).",
        "",
        f"Tolerances (float32): advantages {TOL_ADVANTAGE:g} abs; leaf-tensor loss and gradient {TOL_LEAF:g} abs; "
        f"loss through the model {TOL_MODEL_LOSS:g} abs; parameter gradients {TOL_MODEL_GRAD:g} x the largest |gradient|.",
        "",
        "| case | TRL settings | max \\|dA\\| | mask equal | leaf: loss TRL | leaf: loss GLOBE | leaf: \\|d loss\\| | "
        "leaf: max \\|d grad\\| | model: loss TRL | model: loss GLOBE | model: \\|d loss\\| | model: max \\|d grad\\| | "
        "model: max \\|grad\\| | max \\|d logp\\| | clipped | result |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mask = "—" if r.mask_equal is None else ("yes" if r.mask_equal else "NO")
        clip = "—" if r.clip_fraction is None else f"{100 * r.clip_fraction:.0f}%"
        leaf_loss_diff = None if r.leaf_loss_trl is None else abs(r.leaf_loss_trl - r.leaf_loss_globe)
        lines.append(
            f"| {r.case} | `{r.trl_settings}` | {_num(r.advantage_diff, '.1e')} | {mask} | {_num(r.leaf_loss_trl, '.7f')} | "
            f"{_num(r.leaf_loss_globe, '.7f')} | {_num(leaf_loss_diff, '.1e')} | {_num(r.leaf_grad_diff, '.1e')} | "
            f"{r.model_loss_trl:.7f} | {r.model_loss_globe:.7f} | {abs(r.model_loss_trl - r.model_loss_globe):.1e} | "
            f"{r.model_grad_diff:.1e} | {r.model_grad_scale:.2f} | {_num(r.logp_diff, '.1e')} | {clip} | {verdict(r)} |"
        )
    failed = [r.case for r in rows if verdict(r) == "FAIL"]
    lines += ["", f"{sum(r.expect_equal for r in rows) - len(failed)} of {sum(r.expect_equal for r in rows)} parity cases pass"
              + (f"; failed: {', '.join(failed)}." if failed else ".")]
    return "\n".join(lines)


def write_doc_figures(text: str, doc: Path = DOC) -> None:
    """Replace the figures block of ``doc`` (between the two markers) with ``text``."""
    body = doc.read_text()
    if FIGURES_START not in body or FIGURES_END not in body:
        raise RuntimeError(f"{doc} has no {FIGURES_START} ... {FIGURES_END} block")
    head, rest = body.split(FIGURES_START, 1)
    _, tail = rest.split(FIGURES_END, 1)
    doc.write_text(f"{head}{FIGURES_START}\n{text}\n{FIGURES_END}{tail}")


# ---------------------------------------------------------------- TRL side
def perturb_(model: torch.nn.Module, scale: float, seed: int) -> None:
    """Move every parameter by seeded noise, ``scale * mean|w| * N(0, 1)`` (same noise for the same weights)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            p.add_(torch.randn(p.shape, generator=g) * scale * (p.abs().mean() + 1e-3))


def images(setup: Setup) -> list:
    """B seeded noise images of 56 x 56 (the tiny processor's smallest size: 4 image tokens each)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(setup.seed)
    return [Image.fromarray(rng.integers(0, 256, (56, 56, 3), dtype=np.uint8)) for _ in range(setup.prompts)]


def build_trainer(case: Case, setup: Setup, model_dir: Path, step: dict, out_dir: Path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from globe.models.loading import load_vlm

    rewards = step["rewards"]

    def head(name: str):
        def reward(completions, row, **kwargs) -> list[float]:
            return [float(rewards[name][i]) for i in row]
        reward.__name__ = name
        return reward

    model, processor = load_vlm(model_dir, dtype="float32")
    n = setup.prompts * setup.group
    args = GRPOConfig(
        output_dir=str(out_dir), per_device_train_batch_size=n // case.micro_batches,
        gradient_accumulation_steps=case.micro_batches, num_generations=setup.group,
        max_completion_length=setup.max_len, temperature=setup.temperature, beta=setup.beta,
        epsilon=case.epsilon, epsilon_high=case.epsilon_high, num_iterations=2,  # 2: TRL computes old log-probs
        loss_type=case.trl_loss_type, importance_sampling_level=case.importance_sampling_level,
        scale_rewards=case.scale_rewards, multi_objective_aggregation=case.reward_aggregation,
        mask_truncated_completions=case.mask_truncated, use_bias_correction_kl=case.bias_correction_kl,
        reward_weights=[REWARD_WEIGHTS[k] for k in REWARD_WEIGHTS],
        use_cpu=True, bf16=False, fp16=False, report_to="none", save_strategy="no", disable_tqdm=True,
        log_completions=False, shuffle_dataset=False, seed=setup.seed,
    )
    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": "x"}]], "row": [0]})  # unused: batches are built here
    trainer = GRPOTrainer(model=model, reward_funcs=[head(k) for k in REWARD_WEIGHTS], args=args,
                          train_dataset=dataset, processing_class=processor)
    # the one replaced step: the prepared completions instead of sampling (TRL's own list-of-ids format)
    trainer._generate_single_turn = lambda *a, **k: ([list(x) for x in step["completions"]], None)
    trainer.current_gradient_accumulation_steps = case.micro_batches  # set by Trainer.train() in a real run
    return trainer


def trl_logprobs(trainer, inputs: dict) -> torch.Tensor:
    """TRL's per-token log-probs for ``inputs``, called as ``_compute_loss`` calls them."""
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    attn = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    with torch.no_grad():
        logp, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, attn, inputs["completion_ids"].size(1), pixel_values=inputs.get("pixel_values"),
            image_grid_thw=inputs.get("image_grid_thw"), num_images=inputs.get("num_images"),
            mm_token_type_ids=inputs.get("mm_token_type_ids"))
    return logp


def run_case(case: Case, setup: Setup, model_dir: Path, workdir: Path) -> Row:
    from globe.grpo.logprobs import completion_logprobs
    from globe.grpo.microbatch import group_chunks, slice_prompt_inputs
    from globe.models.loading import load_vlm
    from globe.prompts import build_messages
    from globe.rollout.prompts_batch import build_prompt_batch

    torch.manual_seed(setup.seed)  # TRL's shuffle of the generation batch
    _, processor = load_vlm(model_dir, dtype="float32")
    tok = processor.tokenizer
    eos_id = tok.eos_token_id
    special = set(tok.all_special_ids) | {tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|video_pad|>")}
    vocab = [i for i in range(len(tok)) if i not in special]
    step = make_step(setup, vocab, eos_id)
    trainer = build_trainer(case, setup, model_dir, step, workdir / "trl-out")
    model = trainer.model.train()
    pictures = images(setup)
    batch = [{"prompt": build_messages(), "image": pictures[b], "row": b * setup.group + j}
             for b in range(setup.prompts) for j in range(setup.group)]

    captured: dict = {}
    generate_and_score = trainer._generate_and_score_completions

    def capture(x):
        out = generate_and_score(x)
        captured.update(out)  # the whole generation batch, in row order b * G + j, before TRL shuffles it
        return out

    trainer._generate_and_score_completions = capture
    micro = []
    for k in range(case.micro_batches):  # TRL's own split into gradient-accumulation micro-batches
        trainer._step = k
        micro.append(trainer._prepare_inputs(batch))

    # GLOBE's view of the same step
    ids, mask, truncated = globe_completions(step["completions"], list(trainer.eos_token_ids), tok.pad_token_id)
    if not torch.equal(ids, captured["completion_ids"]):
        raise RuntimeError("TRL and GLOBE hold different completion ids")
    prompts = build_prompt_batch(processor, pictures)
    if not torch.equal(prompts.inputs["input_ids"], captured["prompt_ids"][:: setup.group]):
        raise RuntimeError("TRL's chat-templated prompt ids differ from GLOBE's")
    loss_mask = globe_loss_mask(case, mask, truncated)
    advantages = globe_advantages(case, step["rewards"], REWARD_WEIGHTS, setup.group)
    old, ref = captured["old_per_token_logps"], captured["ref_per_token_logps"]

    # off-policy: both copies of the weights move by the same noise
    globe_model, _ = load_vlm(model_dir, dtype="float32")
    globe_model.train()
    perturb_(model, setup.perturb, setup.seed + 1)
    perturb_(globe_model, setup.perturb, setup.seed + 1)
    for (name, p), (_, q) in zip(sorted(model.named_parameters()), sorted(globe_model.named_parameters())):
        if not torch.equal(p, q):
            raise RuntimeError(f"the two copies of the weights differ at {name}")

    # 3. through the model: TRL's real compute_loss on each micro-batch (already divided by the accumulation steps)
    model.zero_grad()
    trl_total = 0.0
    for inputs in micro:
        loss = trainer.compute_loss(model, inputs)
        loss.backward()
        trl_total += float(loss.detach())
    trl_grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    chunks = group_chunks(setup.prompts, setup.prompts // case.micro_batches if case.micro_batches > 1 else None)
    g = setup.group
    logp = torch.cat([completion_logprobs(globe_model, slice_prompt_inputs(prompts.inputs, s, e), ids[s * g: e * g],
                                          mask[s * g: e * g], setup.temperature) for s, e in chunks])
    row_chunks = [(s * g, e * g) for s, e in chunks]
    globe_total, stats = globe_loss(case, logp, old, ref, advantages, loss_mask, setup.max_len, setup.beta, row_chunks)
    globe_model.zero_grad()
    globe_total.backward()
    globe_grads = {n: p.grad for n, p in globe_model.named_parameters() if p.grad is not None}
    if set(trl_grads) != set(globe_grads):
        raise RuntimeError(f"different parameters got gradients: {sorted(set(trl_grads) ^ set(globe_grads))[:5]}")
    grad_diff = max(max_abs_diff(trl_grads[n], globe_grads[n]) for n in globe_grads)
    grad_scale = max(float(globe_grads[n].abs().max()) for n in globe_grads)
    on = loss_mask.bool()
    logp_trl = trl_logprobs(trainer, captured)
    logp_diff = max_abs_diff(logp_trl[on], logp.detach()[on])

    # 2. the leaf tensor (one step in one piece: micro-batched cases are compared through the model only)
    leaf = dict.fromkeys(("leaf_loss_trl", "leaf_loss_globe", "leaf_grad_diff"))
    if case.micro_batches == 1:
        values = logp.detach()
        leaf_trl = values.clone().requires_grad_(True)
        trainer._get_per_token_logps_and_entropies = lambda *a, **k: (leaf_trl, torch.zeros_like(values), None)
        loss_trl = trainer.compute_loss(model, captured)
        loss_trl.backward()
        leaf_globe = values.clone().requires_grad_(True)
        loss_globe, _ = globe_loss(case, leaf_globe, old, ref, advantages, loss_mask, setup.max_len, setup.beta)
        loss_globe.backward()
        leaf = {"leaf_loss_trl": float(loss_trl.detach()), "leaf_loss_globe": float(loss_globe.detach()),
                "leaf_grad_diff": max_abs_diff(leaf_trl.grad * on, leaf_globe.grad * on)}

    return Row(
        case=case.name, trl_settings=case.trl_settings(), expect_equal=case.expect_equal,
        advantage_diff=max_abs_diff(captured["advantages"], advantages),
        mask_equal=bool(torch.equal(captured["completion_mask"].bool(), loss_mask.bool())),
        model_loss_trl=trl_total, model_loss_globe=float(globe_total.detach()), model_grad_diff=grad_diff,
        model_grad_scale=grad_scale, logp_diff=logp_diff, clip_fraction=float(stats["clip_fraction"]),
        extra={"truncated": int(truncated.sum()), "tokens": int(loss_mask.sum()),
               "micro_batch_tokens": [int(m["completion_mask"].sum()) for m in micro]},
        **leaf,
    )


def versions() -> dict:
    import transformers
    import trl

    return {"trl": trl.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": sys.version.split()[0]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", default=None, help="comma-separated case names (default: all)")
    p.add_argument("--json", default=str(REPO / "artifacts" / "benchmarks" / "trl_parity.json"))
    p.add_argument("--write-docs", action="store_true", help=f"replace the figures block of {DOC.relative_to(REPO)}")
    p.add_argument("--workdir", default=None, help="where the tiny model is built (default: a temporary directory)")
    a = p.parse_args(argv)
    if importlib.util.find_spec("trl") is None:
        sys.exit("trl is not installed here: run `bash benchmarks/setup_trl_env.sh`, then use .venv-bench/bin/python")
    import transformers

    from globe.models.tiny import build_tiny_qwen2_5_vl

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    torch.set_num_threads(1)
    setup = Setup()
    wanted = None if a.cases is None else {c.strip() for c in a.cases.split(",")}
    cases = [c for c in CASES if wanted is None or c.name in wanted]
    rows = []
    with tempfile.TemporaryDirectory(prefix="trl-parity-") as tmp:
        workdir = Path(a.workdir or tmp)
        model_dir = build_tiny_qwen2_5_vl(workdir / "tiny-qwen2.5-vl", seed=setup.seed)
        for case in cases:
            start = time.perf_counter()
            row = run_case(case, setup, model_dir, workdir)
            rows.append(row)
            print(f"{case.name:32s} {verdict(row):28s} {judge(row)} ({time.perf_counter() - start:.1f} s)", flush=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "versions": versions(), "setup": asdict(setup)}
    text = markdown(rows, meta)
    print(text)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2))
    if a.write_docs:
        write_doc_figures(text)
        print(f"figures written to {DOC}")
    return int(any(verdict(r) == "FAIL" for r in rows))


if __name__ == "__main__":
    sys.exit(main())
