"""benchmarks/trl_parity.py without TRL: its GLOBE side on hand-worked numbers, the comparison
verdicts and the table it writes into the docs."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("trl_parity", REPO / "benchmarks" / "trl_parity.py")
parity = importlib.util.module_from_spec(_spec)
sys.modules["trl_parity"] = parity
_spec.loader.exec_module(parity)

EOS, PAD = 9, 0


def test_completions_pad_right_and_flag_missing_eos():
    ids, mask, truncated = parity.globe_completions([[5, EOS], [5, 6, 7]], eos_ids=[EOS], pad_id=PAD)
    assert ids.tolist() == [[5, EOS, PAD], [5, 6, 7]]
    assert mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert truncated.tolist() == [False, True]
    masked = parity.globe_loss_mask(parity.Case("x", "dapo", mask_truncated=True), mask, truncated)
    assert masked.tolist() == [[1, 1, 0], [0, 0, 0]]
    assert parity.globe_loss_mask(parity.Case("x", "dapo"), mask, truncated) is mask


def test_advantages_hand_worked():
    # one group of 2, heads geo [1, 0] and format [1, 1] (constant); weights 1.0 / 0.5:
    # total [1.5, 0.5], mean 1, unbiased std 0.7071 -> group scaling +-1 / (0.7071 + 1e-4)
    heads = {"geo": torch.tensor([1.0, 0.0]), "format": torch.tensor([1.0, 1.0])}
    group = parity.globe_advantages(parity.Case("x", "dapo"), heads, parity.REWARD_WEIGHTS, group=2)
    a = 0.5 / (math.sqrt(0.5) + 1e-4)
    assert group.tolist() == pytest.approx([a, -a], abs=1e-6)
    none = parity.globe_advantages(parity.Case("x", "dr_grpo", scale_rewards="none"), heads, parity.REWARD_WEIGHTS, group=2)
    assert none.tolist() == pytest.approx([0.5, -0.5])
    # normalize_then_sum: geo -> +-0.7070, format constant -> 0; then divided by the batch std
    gdpo = parity.globe_advantages(parity.Case("x", "dapo", scale_rewards="batch", reward_aggregation="normalize_then_sum"),
                                   heads, parity.REWARD_WEIGHTS, group=2)
    g = 0.5 / (math.sqrt(0.5) + 1e-4)
    assert gdpo.tolist() == pytest.approx([g / (g * math.sqrt(2) + 1e-4), -g / (g * math.sqrt(2) + 1e-4)], abs=1e-6)


def test_globe_loss_hand_worked_and_chunks_add_up():
    # on-policy (ratio 1), beta 0, A = [1, -3], mask [[1, 1], [1, 0]]: per-token loss -A, token sum 1
    logp = torch.zeros(2, 2, requires_grad=True)
    adv, mask = torch.tensor([1.0, -3.0]), torch.tensor([[1, 1], [1, 0]])
    # grpo: sequence means [-1, 3] -> 1; dr_grpo: 1 / (N 2 * L_max 4); dapo = bnpo on one rank: 1 / 3 tokens
    expected = {"grpo": 1.0, "gspo": 1.0, "dr_grpo": 1 / 8, "dapo": 1 / 3, "bnpo": 1 / 3}
    for loss_type, value in expected.items():
        case = parity.Case("x", loss_type)
        loss, stats = parity.globe_loss(case, logp, logp.detach(), logp.detach(), adv, mask, max_len=4, beta=0.0)
        assert loss.item() == pytest.approx(value, abs=1e-7), loss_type
        assert stats["clip_fraction"] == 0.0
        chunked, _ = parity.globe_loss(case, logp, logp.detach(), logp.detach(), adv, mask, max_len=4, beta=0.0,
                                       row_chunks=[(0, 1), (1, 2)])
        assert chunked.item() == pytest.approx(loss.item(), abs=1e-7), loss_type  # divided by the whole step's sizes


def test_case_names_trl_settings():
    gspo = parity.Case("g", "gspo", epsilon=3e-4, epsilon_high=4e-4)
    assert (gspo.trl_loss_type, gspo.importance_sampling_level) == ("grpo", "sequence")
    assert "importance_sampling_level=sequence" in gspo.trl_settings()
    assert len({c.name for c in parity.CASES}) == len(parity.CASES)
    assert {c.loss_type for c in parity.CASES} == {"grpo", "dr_grpo", "dapo", "bnpo", "gspo"}


def _row(**kw) -> "parity.Row":
    base = dict(case="dapo", trl_settings="loss_type=dapo", expect_equal=True, advantage_diff=0.0, mask_equal=True,
                leaf_loss_trl=0.25, leaf_loss_globe=0.25, leaf_grad_diff=0.0, model_loss_trl=0.25,
                model_loss_globe=0.25 + 1e-7, model_grad_diff=1e-8, model_grad_scale=0.1, logp_diff=0.0, clip_fraction=0.05)
    return parity.Row(**{**base, **kw})


def test_judge_against_the_stated_tolerances():
    assert parity.verdict(_row()) == "pass"
    assert parity.judge(_row(leaf_grad_diff=2e-6))["leaf grad"] is False  # over 1e-6
    assert parity.verdict(_row(model_grad_diff=2e-5)) == "FAIL"  # over 1e-4 x 0.1
    assert parity.verdict(_row(mask_equal=False)) == "FAIL"
    # a documented difference is reported, never a failure
    assert parity.verdict(_row(expect_equal=False, model_loss_trl=0.3)) == "differs (expected)"
    assert parity.verdict(_row(expect_equal=False)) == "equal (difference expected)"
    # micro-batched rows have no leaf comparison: those checks are absent, not failed
    assert "leaf loss" not in parity.judge(_row(leaf_loss_trl=None, leaf_loss_globe=None, leaf_grad_diff=None))
    assert parity.max_abs_diff(torch.tensor([1.0, 2.0]), torch.tensor([1.5, 2.0])) == 0.5
    with pytest.raises(ValueError, match="shapes"):
        parity.max_abs_diff(torch.zeros(2), torch.zeros(3))


def test_table_and_doc_block(tmp_path):
    meta = {"date": "2026-01-01 00:00", "versions": {"trl": "9.9", "torch": "2.13.0"},
            "setup": {"prompts": 4, "group": 4, "max_len": 12, "beta": 0.04}}
    rows = [_row(), _row(case="bnpo, 2 micro-batches", expect_equal=False, model_loss_trl=0.3, leaf_loss_trl=None,
                         leaf_loss_globe=None, leaf_grad_diff=None), _row(case="grpo", mask_equal=False)]
    text = parity.markdown(rows, meta)
    lines = text.splitlines()
    assert "trl 9.9, torch 2.13.0" in lines[0]
    table = [line for line in lines if line.startswith("| ")]
    assert len(table) == 1 + len(rows)  # header + one per case
    cells = [c.strip() for c in table[1].strip("|").split("|")]
    assert cells[0] == "dapo" and cells[4] == "0.2500000" and cells[-1] == "pass"
    assert cells[6] == "0.0e+00" and cells[10] == "1.0e-07" and cells[-2] == "5%"  # |d loss| leaf, model; clipped
    bnpo = [c.strip() for c in table[2].strip("|").split("|")]
    assert bnpo[4] == "—" and bnpo[-1] == "differs (expected)"
    assert lines[-1] == "1 of 2 parity cases pass; failed: grpo."

    doc = tmp_path / "doc.md"
    doc.write_text(f"# T\n\n{parity.FIGURES_START}\nstale figures\n{parity.FIGURES_END}\n\nafter\n")
    parity.write_doc_figures(text, doc)
    body = doc.read_text()
    assert "stale figures" not in body and text in body and body.endswith("after\n")
    doc.write_text("no block")
    with pytest.raises(RuntimeError, match="block"):
        parity.write_doc_figures(text, doc)


def test_shipped_doc_has_the_block():
    body = parity.DOC.read_text()
    assert parity.FIGURES_START in body and parity.FIGURES_END in body
