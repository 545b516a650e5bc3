"""The one prompt every VLM teacher of the distillation answers (docs/distill.md).

It asks for the three things the validation filters read, in a fixed order and format:

1. a localizability judgement (``localizable: yes|no``) and a score in [0, 1]
   (``score: 0.85``), read by the localizability filter;
2. a reasoning chain in ``<think> </think>`` that names the visual elements it relies on, read
   by the agreement filter (entities shared between teachers) and the segmentation filter
   (entities checked against a segmentation model);
3. the answer in the policy's format (``<answer>country: X\\ncity: Y</answer>``,
   :mod:`globe.answer`), judged against the ground truth by the correctness filter.

The chain and the answer use the policy's own tags, so a kept chain is a target completion for
the policy as it stands (``<think>..</think><answer>country: ..\\ncity: ..</answer>``).
"""

from __future__ import annotations

import hashlib

__all__ = ["DISTILL_PROMPT", "prompt_id"]

DISTILL_PROMPT = (
    "You are a geolocation expert preparing training data for a geolocation challenge. "
    "Based on the provided image:\n"
    "1. Decide whether the image itself holds enough visual evidence to tell where it was taken "
    "(architecture, signage and scripts, vegetation, terrain, roads and vehicles, landmarks). "
    "A close-up, a generic indoor scene or a view without such clues is not localizable.\n"
    "2. Think step-by-step about the visual elements you actually see and what each of them says "
    "about the country and the city. Name only elements that are in the image.\n"
    "3. Give the country and the city the evidence points to.\n"
    "\n"
    "Answer in exactly this format:\n"
    "localizable: [yes or no]\n"
    "score: [a number from 0 to 1: how confidently the location can be recognised from the image]\n"
    "<think> your step-by-step reasoning </think>\n"
    "<answer>country: [country name]\n"
    "city: [city name]</answer>"
)


def prompt_id(prompt: str) -> str:
    """A short, stable id of a prompt text (recorded with every distilled sample).

    >>> prompt_id("abc")
    'ba7816bf'
    """
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:8]
