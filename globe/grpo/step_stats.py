"""Combining the statistics of the micro-batches (and passes) of one optimiser step, per kind.

A step split into micro-batches produces one ``grpo_loss`` stats dict per chunk. Averaging them all
alike would be wrong for most keys:

- partial sums (``loss`` and, under the token mean, ``policy_loss``: each chunk's term already has
  the whole step's token count as its denominator; ``num_tokens``) are **summed**;
- extremes (``ratio_min``; ``ratio_max``, ``logprob_diff_max``) take the **min / max** over chunks,
  so one bad token, the sign of a missed weight sync, is not diluted;
- per-token means (``kl``, ``clip_fraction``, ``ratio_mean``, ``logprob_diff_mean``, ...) are
  weighted by each chunk's **token count**; ``advantage_mean`` by its **completion count**.

Several passes (``num_iterations``) are then averaged per key, except the extremes, which again take
the min / max.

>>> chunks = [({"loss": 0.25, "ratio_max": 1.1, "kl": 0.2}, 30, 4), ({"loss": 0.5, "ratio_max": 1.4, "kl": 0.4}, 10, 4)]
>>> combine_chunks(chunks, token_mean=True)
{'loss': 0.75, 'ratio_max': 1.4, 'kl': 0.25}
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["combine_chunks", "combine_passes"]

MIN_KEYS = frozenset({"ratio_min"})
MAX_KEYS = frozenset({"ratio_max", "logprob_diff_max"})
SUM_KEYS = frozenset({"loss", "num_tokens"})
ROW_KEYS = frozenset({"advantage_mean"})


def combine_chunks(chunks: Sequence[tuple[dict[str, float], float, float]], token_mean: bool = True) -> dict[str, float]:
    """``chunks``: ``(stats, tokens, completions)`` per micro-batch -> one stats dict for the pass.

    ``token_mean``: ``policy_loss`` is a partial sum too, as under every ``loss_type`` of
    ``globe.grpo.loss_types`` (each chunk is normalised by the sizes of the whole step); ``False``:
    each chunk's ``policy_loss`` is its own mean, combined weighted by its completion count.
    """
    sums = SUM_KEYS | ({"policy_loss"} if token_mean else frozenset())
    total_tokens = sum(t for _, t, _ in chunks) or 1.0
    total_rows = sum(r for _, _, r in chunks) or 1.0
    out: dict[str, float] = {}
    for stats, tokens, rows in chunks:
        for key, value in stats.items():
            value = float(value)
            if key in MIN_KEYS:
                out[key] = min(out.get(key, value), value)
            elif key in MAX_KEYS:
                out[key] = max(out.get(key, value), value)
            elif key in sums:
                out[key] = out.get(key, 0.0) + value
            else:
                weight = rows / total_rows if key in ROW_KEYS or key == "policy_loss" else tokens / total_tokens
                out[key] = out.get(key, 0.0) + value * weight
    return out


def combine_passes(passes: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean over optimisation passes, min / max for the extremes.

    >>> combine_passes([{"loss": 1.0, "ratio_min": 0.9}, {"loss": 3.0, "ratio_min": 0.7}])
    {'loss': 2.0, 'ratio_min': 0.7}
    """
    out: dict[str, float] = {}
    for key in dict.fromkeys(k for p in passes for k in p):
        values = [p[key] for p in passes if key in p]
        if key in MIN_KEYS:
            out[key] = min(values)
        elif key in MAX_KEYS:
            out[key] = max(values)
        else:
            out[key] = sum(values) / len(values)
    return out
