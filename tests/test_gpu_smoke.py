"""benchmarks/gpu_smoke.py: the 7B shapes, the throughput arithmetic, the CUDA guard, and the
``--dry-run`` path (the same Trainer code on the CPU with the tiny model)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_smoke.py"
_spec = importlib.util.spec_from_file_location("gpu_smoke", SCRIPT)
gpu_smoke = importlib.util.module_from_spec(_spec)
sys.modules["gpu_smoke"] = gpu_smoke
_spec.loader.exec_module(gpu_smoke)


def _env(tmp_path: Path) -> dict:
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}


def test_7b_config_has_qwen2_5_vl_7b_parameter_count(tiny_model_dir):
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    config = gpu_smoke.qwen2_5_vl_config(AutoTokenizer.from_pretrained(str(tiny_model_dir)), gpu_smoke.QWEN2_5_VL_7B)
    with torch.device("meta"):  # shapes only, no memory
        model = AutoModelForImageTextToText.from_config(config)
    # Qwen2.5-VL-7B-Instruct's published size: 8,292,166,656 parameters
    assert sum(p.numel() for p in model.parameters()) == 8_292_166_656


def test_throughput_arithmetic():
    steps = [{"seconds": 2.0, "prompts": 4, "completion_length": 10.0}, {"seconds": 1.0, "prompts": 4, "completion_length": 5.0}]
    # 8 prompts in 3 s; tokens (10 x 4 + 5 x 4) x group 2 = 120 in 3 s
    assert gpu_smoke.throughput(steps, group=2) == {"examples_per_s": 2.6667, "tokens_per_s": 40.0, "s_per_step": 1.5}
    assert gpu_smoke.throughput([], group=2)["examples_per_s"] is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="the guard is for machines without CUDA")
def test_refuses_without_cuda(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120, env=_env(tmp_path))
    assert proc.returncode == 2
    assert "no CUDA device" in proc.stderr and "--dry-run" in proc.stderr


@pytest.mark.slow
def test_dry_run_runs_both_phases_through_the_trainer(tmp_path):
    out = tmp_path / "smoke.json"
    argv = [sys.executable, str(SCRIPT), "--dry-run", "--steps", "2", "--group", "2", "--prompts", "1",
            "--new-tokens", "4", "--workdir", str(tmp_path), "--out", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=_env(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert json.loads(proc.stdout[proc.stdout.index("{"):]) == report  # printed and written alike
    lora, full = report["phases"]
    assert (lora["phase"], lora["strategy"]) == ("lora", "SingleDeviceStrategy")
    assert (full["phase"], full["strategy"]) == ("full_fsdp2", "ModelParallelStrategy")
    assert 0 < lora["trainable_parameters"] < report["parameters"]  # adapters only
    assert full["trainable_parameters"] == report["parameters"]  # everything
    for phase in (lora, full):
        assert phase["steps"] == 2 and len(phase["per_step"]) == 2
        assert all(1 <= s["completion_length"] <= 4 for s in phase["per_step"])
        assert phase["all_steps"]["examples_per_s"] > 0 and phase["all_steps"]["tokens_per_s"] > 0
        assert phase["after_first_step"]["s_per_step"] == pytest.approx(phase["per_step"][1]["seconds"], abs=1e-3)
    assert not [p for p in os.listdir(tmp_path) if p.startswith("gpu-smoke-")]  # model folders removed
