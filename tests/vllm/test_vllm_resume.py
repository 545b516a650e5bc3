"""Exact resume with the vLLM engine: the kill-and-resume run of ``tests/test_resume_cli.py``
(warm start, GRPO with the KL term, cosine schedules, two workers, a validation) with
``engine: vllm``. After the restore the engine holds stale weights until the policy syncs it
(``GRPOPolicy.current_engine``): a missed sync samples other completions and ends elsewhere."""

from __future__ import annotations

import pytest

import test_resume_cli as shared  # tests/ is on sys.path (pytest's rootdir conftest)


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
