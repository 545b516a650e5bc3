"""FormatReward and the shared reward-head plumbing (RewardBatch, reasoning extraction)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from data_modules.sample import GeoSample
from globe.rewards.base import RewardBatch, reasoning_of
from globe.rewards.format import FormatReward

IMAGE = Image.new("RGB", (8, 8))


def sample(**kw) -> GeoSample:
    base = dict(key="k", image=IMAGE, lat=48.137, lon=11.575, country="DE", city="München")
    return GeoSample(**{**base, **kw})


def batch(completions, samples=None) -> RewardBatch:
    n = len(completions)
    return RewardBatch(images=[IMAGE] * n, prompts=[""] * n, completions=list(completions), samples=samples or [sample()] * n)


MALFORMED = [
    None,
    "",
    "   ",
    "asdf qwer ::: <<>>",
    "<think>cut off in the middle of the reasoning",  # truncated: no </think>
    "<think>a</think><answer>country: France",  # truncated answer
    "<answer>country: France\ncity: Paris</answer>",  # no think block
    "<think>a</think>",
    12345,  # a failed decode that is not even a string
]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>a</think><answer>country: France\ncity: Paris</answer>", 1.0),
        ("  <think>a</think>\n\n<answer>country: France\ncity: Paris</answer>\n", 1.0),  # whitespace around/between
        ("Sure! <think>a</think><answer>country: France</answer>", 0.0),  # text before <think>
        ("<think>a</think><answer>x</answer> trailing words", 0.0),  # text after </answer>
        ("<think>a</think>middle<answer>x</answer>", 0.0),  # text between the blocks
        ("<answer>x</answer><think>a</think>", 0.0),  # wrong order
        ("<think>a<think>b</think></think><answer>x</answer>", 0.0),  # nested tags
    ],
)
def test_format_reward_values(text, expected):
    assert FormatReward().score(batch([text])).tolist() == [expected]


def test_malformed_completions_score_zero_and_never_raise():
    scores = FormatReward().score(batch(MALFORMED))
    assert scores.shape == (len(MALFORMED),) and scores.dtype == torch.float32
    assert scores.tolist() == [0.0] * len(MALFORMED)


def test_reward_batch_checks_lengths_and_repeats_groups():
    with pytest.raises(ValueError, match="samples has 1 entries"):
        RewardBatch(images=[IMAGE] * 2, prompts=["", ""], completions=["a", "b"], samples=[sample()])
    s1, s2 = sample(key="a"), sample(key="b")
    rb = RewardBatch.from_groups([s1, s2], ["c0", "c1", "c2", "c3", "c4", "c5"], prompts=["p1", "p2"])
    # group-major: completions 0-2 belong to sample a, 3-5 to sample b (the rollout engines' order)
    assert [s.key for s in rb.samples] == ["a", "a", "a", "b", "b", "b"]
    assert rb.prompts == ["p1"] * 3 + ["p2"] * 3 and len(rb) == 6
    with pytest.raises(ValueError):
        RewardBatch.from_groups([s1, s2], ["c0", "c1", "c2"])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think> palm trees </think><answer>country: X</answer>", "palm trees"),
        ("<think>truncated reasoning about snow", "truncated reasoning about snow"),
        ("plain text <answer>country: Peru\ncity: Lima</answer>", "plain text"),  # answer left out
        (None, ""),
    ],
)
def test_reasoning_of(text, expected):
    assert reasoning_of(text) == expected


def test_head_is_a_lightning_module_named_for_the_cli():
    from lightning.pytorch import LightningModule

    head = FormatReward(name="fmt")
    assert isinstance(head, LightningModule) and head.name == "fmt" and FormatReward().name == "format"
