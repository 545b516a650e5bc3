"""The policy's prompt, exactly as in the paper's code, and the chat messages built from it.

``GEO_COORDINATES_PROMPT`` is the same prompt asking for a third answer line,
``coordinates: [latitude], [longitude]`` in signed decimal degrees (read by
:func:`globe.answer.parse_answer`); the paper's ``GEO_PROMPT`` stays the default everywhere.
"""

from __future__ import annotations

GEO_PROMPT = (
    "You are a geolocation expert. You are participating in a geolocation challenge. "
    "Based on the provided image:\n"
    "1. Carefully analyze the image for clues about its location (architecture, signage, "
    "vegetation, terrain, etc.)\n"
    "2. Think step-by-step about what country, and city this is likely to be in and why\n"
    "\n"
    "Your final answer include these two lines somewhere in your response:\n"
    "country: [country name]\n"
    "city: [city name]\n"
    "\n"
    "You MUST output the thinking process in <think> </think> and give answer in <answer> </answer> tags."
)

GEO_COORDINATES_PROMPT = (
    "You are a geolocation expert. You are participating in a geolocation challenge. "
    "Based on the provided image:\n"
    "1. Carefully analyze the image for clues about its location (architecture, signage, "
    "vegetation, terrain, etc.)\n"
    "2. Think step-by-step about what country, and city this is likely to be in and why, "
    "and where exactly in that city\n"
    "\n"
    "Your final answer include these three lines somewhere in your response:\n"
    "country: [country name]\n"
    "city: [city name]\n"
    "coordinates: [latitude], [longitude]\n"
    "with the coordinates in decimal degrees (negative for south and west).\n"
    "\n"
    "You MUST output the thinking process in <think> </think> and give answer in <answer> </answer> tags."
)


def build_messages(prompt: str = GEO_PROMPT) -> list[dict]:
    """One user turn: the image first, then the prompt (the paper's order)."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]


def chat_prompt(processor, prompt: str = GEO_PROMPT) -> str:
    """The templated prompt text with one un-expanded image placeholder and the assistant header."""
    return processor.apply_chat_template(build_messages(prompt), tokenize=False, add_generation_prompt=True)
