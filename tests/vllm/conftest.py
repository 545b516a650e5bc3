"""Tests of the vLLM rollout engine: they run in the vLLM environment (``.ci/vllm_env`` builds
``.venv-vllm``) and are skipped, with the reason, wherever ``import vllm`` fails (the main ``.venv``).

Tests marked ``vllm`` need the engine; the others (weight naming, LoRA merging) run everywhere.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

# Read by vLLM when it is imported and when an engine starts: keep the engine in this process (weight
# sync by reference), a 1 GiB KV cache on the CPU (unset, it takes 6-11 GiB), and quiet logs.
os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


def _vllm_import_error() -> str | None:
    # trap: pytest puts tests/ on sys.path, where this folder would import as an empty namespace
    # package called "vllm"; only a spec with a file (the installed package) counts
    spec = importlib.util.find_spec("vllm")
    if spec is None or spec.origin is None:
        return "vllm is not installed"
    try:
        from vllm import LLM  # noqa: F401
    except Exception as error:  # a broken install must skip, not fail, the main suite
        return f"import vllm failed: {type(error).__name__}: {error}"
    return None


VLLM_IMPORT_ERROR = _vllm_import_error()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if VLLM_IMPORT_ERROR is None:
        return
    if os.environ.get("GLOBE_REQUIRE_VLLM") == "1":  # the CI's vLLM stage: a broken install must fail
        raise pytest.UsageError(f"GLOBE_REQUIRE_VLLM=1 but {VLLM_IMPORT_ERROR}")
    skip = pytest.mark.skip(reason=f"{VLLM_IMPORT_ERROR}; run .ci/vllm_env, then .venv-vllm/bin/python -m pytest tests/vllm")
    for item in items:
        if item.get_closest_marker("vllm") is not None:
            item.add_marker(skip)
