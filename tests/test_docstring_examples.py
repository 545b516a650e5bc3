"""Every ``>>>`` example in the project's docstrings runs and holds (doctest)."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULES = sorted(
    ".".join(path.relative_to(REPO).with_suffix("").parts)
    for package in ("globe", "data_modules", "callbacks")
    for path in (REPO / package).rglob("*.py")
    if ">>>" in path.read_text()
)


def test_the_examples_are_found():
    assert {"globe.grpo.advantages", "globe.rollout.seeds", "globe.rewards.geo_accuracy"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
