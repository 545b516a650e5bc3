"""FSDP2 sharding of the policy (``globe.models.sharding``) on two CPU processes (gloo).

Each rank holds an unsharded copy of the same model next to the sharded one and checks that the
sharded model computes the same thing: generation (ranks asking for different lengths, which
hangs or mis-pairs the all-gathers without ``synced_gpus``), trainer log-probs (also when only one
rank's completions hold a vision placeholder token), gradients, and
the gathered weights the vLLM sync and the Hugging Face export read (LoRA merged too).
"""

from __future__ import annotations

import copy
import json
import socket

import pytest
import torch
import torch.multiprocessing as mp

from globe.models.sharding import full_tensor, is_dtensor, is_sharded


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def _worker(rank: int, world: int, port: int, model_dir: str, out_dir: str, lora: bool, bf16: bool = False) -> None:
    import os

    import torch.distributed as dist
    from PIL import Image
    from torch.distributed.device_mesh import init_device_mesh

    from globe.grpo.logprobs import completion_logprobs
    from globe.models.loading import LoraConfigSpec, load_vlm
    from globe.models.sharding import shard_vlm
    from globe.rollout.base import SamplingConfig
    from globe.rollout.hf_engine import HFRolloutEngine
    from globe.rollout.prompts_batch import build_prompt_batch
    from globe.rollout.vllm_weights import hf_named_weights

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, processor = load_vlm(model_dir, dtype="float32", lora=LoraConfigSpec(r=4, alpha=8) if lora else None)
    if lora:  # peft starts B at zero: give the adapters a non-zero update so the merge matters
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(std=0.05)
    plain = copy.deepcopy(model)
    expected_weights = {n: t.clone() for n, t in hf_named_weights(plain)}
    mp_policy = None
    if bf16:  # gather and compute in bf16, keep float32 master weights, reduce gradients in float32
        from torch.distributed.fsdp import MixedPrecisionPolicy

        mp_policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    shard_vlm(model, init_device_mesh("cpu", (world,)), mp_policy=mp_policy)
    if bf16:
        _mixed_precision_checks(rank, model, processor, out_dir)
        dist.destroy_process_group()
        return
    result: dict = {"sharded": is_sharded(model), "plain_sharded": is_sharded(plain)}
    result["local_fraction"] = sum(p.to_local().numel() for p in model.parameters() if is_dtensor(p)) / sum(
        p.numel() for p in plain.parameters()
    )

    # ranks draw different prompts and lengths: rank 1 needs more decoding steps than rank 0
    images = [Image.new("RGB", (64, 64), (40 + 100 * rank, 90, 30)), Image.new("RGB", (64, 64), (10, 200, 30 * rank))]
    prompts = build_prompt_batch(processor, images, "Where was this photo taken?")
    sampling = SamplingConfig(temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=6 + 5 * rank, seed=rank)
    got = HFRolloutEngine(model, processor).generate(prompts, 2, sampling)
    want = HFRolloutEngine(plain, processor).generate(prompts, 2, sampling)
    result["same_samples"] = torch.equal(got.ids, want.ids)
    result["samples_shape"] = list(got.ids.shape)

    logp = completion_logprobs(model, prompts.inputs, got.ids, got.mask)
    logp_plain = completion_logprobs(plain, prompts.inputs, want.ids, want.mask)
    result["logprob_diff"] = float((logp.detach() - logp_plain.detach()).abs().max())
    result["logprob_vs_sampler"] = float((logp.detach() - got.logprobs).abs().max())

    # gradients: FSDP2 averages over ranks, so compare with the mean of both ranks' plain gradients
    (-logp.sum()).backward()
    (-logp_plain.sum()).backward()
    grad_diff = 0.0
    for p, q in zip(model.parameters(), plain.parameters(), strict=True):
        if q.grad is None:
            continue
        mean_grad = q.grad.clone()
        dist.all_reduce(mean_grad)
        mean_grad /= world
        grad_diff = max(grad_diff, float((full_tensor(p.grad) - mean_grad).abs().max()))
    result["grad_diff"] = grad_diff

    # only rank 1 "sampled" a vision placeholder as text: the extra embedding call it needs is a
    # parameter all-gather, so rank 0 must make it too (it once did not: mismatched collectives)
    odd = got.ids.clone()
    if rank == 1:
        odd[0, 0] = model.config.image_token_id
    with torch.no_grad():
        logp_odd = completion_logprobs(model, prompts.inputs, odd, got.mask)
        logp_odd_plain = completion_logprobs(plain, prompts.inputs, odd, want.mask)
    result["placeholder_logprob_diff"] = float((logp_odd - logp_odd_plain).abs().max())

    gathered = {n: t.clone() for n, t in hf_named_weights(model)}
    result["weight_names_equal"] = gathered.keys() == expected_weights.keys()
    result["weight_diff"] = _max_diff(gathered, expected_weights)
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()


def _mixed_precision_checks(rank: int, model, processor, out_dir: str) -> None:
    """bf16 compute over float32 master weights: an update far below bf16's resolution survives."""
    from PIL import Image

    from globe.grpo.logprobs import completion_logprobs
    from globe.rollout.base import SamplingConfig
    from globe.rollout.hf_engine import HFRolloutEngine
    from globe.rollout.prompts_batch import build_prompt_batch

    prompts = build_prompt_batch(processor, [Image.new("RGB", (64, 64), (40 + 100 * rank, 90, 30))], "Where?")
    got = HFRolloutEngine(model, processor).generate(prompts, 2, SamplingConfig(max_new_tokens=6, seed=rank))
    logits_dtype = []
    hook = model.lm_head.register_forward_hook(lambda m, i, o: logits_dtype.append(o.dtype))
    logp = completion_logprobs(model, prompts.inputs, got.ids, got.mask)
    hook.remove()
    before = {n: full_tensor(p.detach()).clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
    (-logp.sum()).backward()
    optimizer.step()
    after = {n: full_tensor(p.detach()) for n, p in model.named_parameters()}
    name = "model.language_model.layers.0.mlp.up_proj.weight"
    delta = after[name] - before[name]
    result = {
        "param_dtypes": sorted({str(p.dtype) for p in model.parameters()}),
        "logits_dtype": str(logits_dtype[0]),
        "changed_fraction": float((delta != 0).float().mean()),
        # the same update applied to bf16 weights: mostly rounded away
        "bf16_kept_fraction": float((before[name].bfloat16() + delta.bfloat16() != before[name].bfloat16()).float().mean()),
    }
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump(result, f)


@pytest.mark.distributed
def test_sharded_bf16_compute_keeps_float32_master_weights(tmp_path, tiny_model_dir):
    mp.spawn(_worker, args=(2, _free_port(), str(tiny_model_dir), str(tmp_path), False, True), nprocs=2, join=True)
    for rank in (0, 1):
        r = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert r["param_dtypes"] == ["torch.float32"]
        assert r["logits_dtype"] == "torch.bfloat16"
        assert r["changed_fraction"] > 0.9
        assert r["bf16_kept_fraction"] < 0.1


@pytest.mark.distributed
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_sharded_policy_computes_what_the_plain_one_does(tmp_path, tiny_model_dir, lora):
    mp.spawn(_worker, args=(2, _free_port(), str(tiny_model_dir), str(tmp_path), lora), nprocs=2, join=True)
    for rank in (0, 1):
        r = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert r["sharded"] and not r["plain_sharded"]
        assert 0.4 < r["local_fraction"] < 0.6  # each rank holds about half of every weight
        assert r["samples_shape"] == [4, 6 + 5 * rank]
        assert r["same_samples"], "sharded generate drew other tokens than the plain model"
        assert r["logprob_diff"] < 1e-5
        assert r["logprob_vs_sampler"] < 1e-5
        assert r["placeholder_logprob_diff"] < 1e-5
        assert r["grad_diff"] < 1e-5
        assert r["weight_names_equal"]
        assert r["weight_diff"] == 0.0  # gathering is a copy: bit for bit


def test_full_tensor_leaves_plain_tensors_alone():
    t = torch.arange(3.0)
    assert full_tensor(t) is t
    assert not is_dtensor(t)
    assert not is_sharded(torch.nn.Linear(2, 2))
