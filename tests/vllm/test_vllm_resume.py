"""Exact resume with the vLLM engine: the kill-and-resume run of ``tests/test_resume_cli.py``
(warm start, GRPO with the KL term, cosine schedules, two workers, a validation) with
``engine: vllm``. After the restore the engine holds stale weights until the policy syncs it
(``GRPOPolicy.current_engine``): a missed sync samples other completions and ends elsewhere."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("test_resume_cli_shared", REPO / "tests" / "test_resume_cli.py")
shared = importlib.util.module_from_spec(_spec)
sys.modules["test_resume_cli_shared"] = shared
_spec.loader.exec_module(shared)


@pytest.mark.vllm
@pytest.mark.slow
def test_sigkill_then_resume_with_vllm_ends_at_the_uninterrupted_weights(tmp_path, tiny_model_dir, geosynth_root):
    shared.check_exact_resume(tmp_path, tiny_model_dir, geosynth_root, "single",
                              ("--model.init_args.engine=vllm", "--model.init_args.vllm={max_model_len: 1024}"))


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.distributed
def test_sigkill_then_resume_with_vllm_on_two_fsdp2_ranks(tmp_path, tiny_model_dir, geosynth_root):
    """Each rank's colocated engine is rebuilt after the restore and synced from the gathered weights."""
    shared.check_exact_resume(tmp_path, tiny_model_dir, geosynth_root, "fsdp2",
                              ("--model.init_args.engine=vllm", "--model.init_args.vllm={max_model_len: 1024}"))
