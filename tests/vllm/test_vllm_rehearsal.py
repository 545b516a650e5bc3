"""The short paper-pipeline rehearsal with the paper's own rollout engine (vLLM, colocated on each
of 2 CPU ranks): every stage of ``benchmarks/rehearsal.py --engine vllm`` passes, including the
SIGKILL and the exact resume of a vLLM run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("test_rehearsal_shared", REPO / "tests" / "test_rehearsal.py")
shared = importlib.util.module_from_spec(_spec)
sys.modules["test_rehearsal_shared"] = shared
_spec.loader.exec_module(shared)


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.distributed
def test_short_rehearsal_with_the_vllm_engine(tmp_path):
    stages = shared.run_short_rehearsal(tmp_path / "rehearsal", "--engine", "vllm")
    shared.check_short_rehearsal(stages)
    assert "--model.init_args.engine=hf" not in " ".join(stages["grpo"]["commands"])  # the paper's engine ran
