"""R_loc sharded with FSDP2 on two CPU processes (gloo), as ``GRPOPolicy.configure_model`` places it
under ``ModelParallelStrategy``: ``head.shard(mesh)`` leaves every parameter a ``DTensor`` shard
(each rank holds about half), and the sharded head scores what an unsharded copy scores, also
when the ranks hold different numbers of completions (the ranks agree on the forward calls)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.multiprocessing as mp
from test_sharding import _free_port  # the FSDP2 tests' harness: spawn two gloo ranks on a free port

TEXTS = [
    "<think>Snow on the ground and onion domes.</think><answer>country: Russia\ncity: Moscow</answer>",
    "<think>Palm trees and a pyramid in the desert.</think><answer>country: Egypt\ncity: Cairo</answer>",
    None,
    "<think>Red soil and eucalyptus trees</think><answer>country: Australia\ncity: Perth</answer>",
    "<think>Cyrillic text on a sign",
]


def _batch(completions, rank: int):
    from PIL import Image

    from data_modules.sample import GeoSample
    from globe.rewards.base import RewardBatch

    n = len(completions)
    images = [Image.new("RGB", (64 + 8 * i, 64), (40 + 100 * rank, 30 * i, 90)) for i in range(n)]
    samples = [GeoSample(key=str(i), image=im, lat=0.0, lon=0.0, country="", city="") for i, im in enumerate(images)]
    return RewardBatch(images, [""] * n, list(completions), samples)


def _worker(rank: int, world: int, port: int, model_dir: str, checkpoint: str | None, out_dir: str) -> None:
    import os

    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from globe.models.sharding import is_dtensor
    from globe.rewards.localizability import LocalizabilityReward

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    kwargs = {"checkpoint": checkpoint} if checkpoint else {"model_path": model_dir, "max_text_tokens": 32}
    plain = LocalizabilityReward(**kwargs, score_batch_size=2)
    head = LocalizabilityReward(**kwargs, score_batch_size=2)
    head.shard(init_device_mesh("cpu", (world,)))
    params = list(head.parameters())
    result = {
        "all_dtensor": bool(params) and all(is_dtensor(p) for p in params),
        "plain_dtensor": any(is_dtensor(p) for p in plain.parameters()),
        "local_fraction": sum(p.to_local().numel() for p in params) / sum(p.numel() for p in plain.parameters()),
        "frozen": not head.training and not any(p.requires_grad for p in params),
    }
    calls: list[int] = []
    hook = head.model.vlm.register_forward_hook(lambda *_: calls.append(1))
    # rank 0 scores five completions (3 calls of 2), rank 1 two (1 call, and 2 more to match rank 0);
    # then the other way round, with a batch of one empty completion on rank 0
    rounds = [TEXTS, TEXTS[:2]] if rank == 0 else [TEXTS[1:3], TEXTS]
    rounds[1] = [None] if rank == 0 else rounds[1]
    result["diff"], result["calls"], result["scores"] = [], [], []
    for completions in rounds:
        batch = _batch(completions, rank)
        calls.clear()
        got = head.score(batch)
        result["calls"].append(len(calls))
        want = plain.score(batch)
        result["diff"].append(float((got - want).abs().max()))
        result["scores"].append(got.tolist())
    hook.remove()
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()


def _lora_checkpoint(tmp_path, model_dir) -> str:
    """A trainer checkpoint with LoRA adapters that change the scores (peft starts B at zero)."""
    from globe.models.loading import LoraConfigSpec
    from globe.rewards.localizability_trainer import LocalizabilityTrainer

    torch.manual_seed(0)
    module = LocalizabilityTrainer(model_path=str(model_dir), lora=LoraConfigSpec(r=4, alpha=8), max_text_tokens=32)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    path = tmp_path / "rloc-lora.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return str(path)


@pytest.mark.distributed
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_sharded_head_holds_shards_and_scores_what_the_plain_one_does(tmp_path, tiny_model_dir, lora):
    checkpoint = _lora_checkpoint(tmp_path, tiny_model_dir) if lora else None
    mp.spawn(_worker, args=(2, _free_port(), str(tiny_model_dir), checkpoint, str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        r = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert r["all_dtensor"] and not r["plain_dtensor"] and r["frozen"]
        assert 0.4 < r["local_fraction"] < 0.6  # each rank holds about half of every weight
        assert r["calls"] == [3, 3]  # the busier rank's count, on both ranks, in both rounds
        assert max(r["diff"]) < 1e-6, r["diff"]
        assert len(r["scores"][0]) == (5 if rank == 0 else 2) and len(r["scores"][1]) == (1 if rank == 0 else 5)
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    assert r0["scores"][0][2] == 0.0 and r0["scores"][1] == [0.0]  # no reasoning text: 0
