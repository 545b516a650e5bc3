"""The short paper-pipeline rehearsal with the paper's own rollout engine (vLLM, colocated on each
of 2 CPU ranks): every stage of ``benchmarks/rehearsal.py --engine vllm`` passes, including the
SIGKILL and the exact resume of a vLLM run."""

from __future__ import annotations

import pytest

import test_rehearsal as shared  # tests/ is on sys.path (pytest's rootdir conftest)


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.distributed
def test_short_rehearsal_with_the_vllm_engine(tmp_path):
    stages = shared.run_short_rehearsal(tmp_path / "rehearsal", "--engine", "vllm")
    shared.check_short_rehearsal(stages)
    assert "--model.init_args.engine=hf" not in " ".join(stages["grpo"]["commands"])  # the paper's engine ran
