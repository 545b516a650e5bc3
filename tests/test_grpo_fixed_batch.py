"""benchmarks/grpo_fixed_batch.py runs: log-probs agree with the sampler, and updates change the policy."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("grpo_fixed_batch", REPO / "benchmarks" / "grpo_fixed_batch.py")
fixed_batch = importlib.util.module_from_spec(_spec)
sys.modules["grpo_fixed_batch"] = fixed_batch
_spec.loader.exec_module(fixed_batch)


@pytest.mark.slow
def test_two_updates_on_one_batch(tmp_path, tiny_model_dir):
    policy = fixed_batch.demo_policy(str(tiny_model_dir), lr=1e-3, group=2)
    ckpt = tmp_path / "start.ckpt"
    torch.save({"state_dict": policy.state_dict()}, ckpt)
    rows = fixed_batch.run(ckpt, str(tiny_model_dir), str(tmp_path / "geosynth"), lr=1e-3, group=2, updates=2, seed=0,
                           prompts_per_batch=2, data_args={"train_size": 16, "val_size": 4, "test_size": 4, "image_size": 64})
    assert [r["update"] for r in rows] == [0, 1]
    assert rows[0]["max_abs_logprob_diff"] < 1e-4  # the policy's log-probs are the sampler's
    for row in rows:
        assert {"reward", "geo", "vis", "format", "zero_spread", "length"} <= set(row)
        assert all(math.isfinite(v) for v in row.values())
