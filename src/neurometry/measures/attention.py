"""Attention measures on rows of attention probabilities P (n_rows, heads, keys).

Each row is one query token's attention over the keys, zero-padded beyond the real keys; a
(row, head) whose probabilities are all zero is padding and is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from neurometry.errors import NeurometryError
from neurometry.measures.accumulators import AttentionState
from neurometry.measures.registry import MeasureResult, register, result
from neurometry.measures.streaming import run_one


def _per_head(states: Mapping[str, Any], which: str) -> np.ndarray:
    s: AttentionState = states["attention"]
    if (s.count == 0).any():
        raise NeurometryError(
            f"head {int(np.argmin(s.count))} has no nonzero attention rows; pass attention probabilities"
        )
    return (s.entropy_sum if which == "entropy" else s.sink_sum) / s.count


@register(
    "attention_entropy", "attention", ("attention",), "mean entropy (nats) of each head's attention rows"
)
def _attention_entropy(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
    h = _per_head(states, "entropy")
    return result(h.mean(), per_head=h)


def attention_entropy(p: np.ndarray) -> MeasureResult:
    """Attention entropy (Zhai et al. 2023, "entropy collapse"): per head, the mean over query rows of
    -sum_k p_k log p_k (nats) for P (n_rows, heads, keys), all-zero rows ignored. Headline: the mean
    over heads; ``fields['per_head']``."""
    return run_one("attention_entropy", p)


@register(
    "sink_mass", "attention", ("attention",), "mean attention probability on key 0 (the attention sink)"
)
def _sink_mass(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
    h = _per_head(states, "sink")
    return result(h.mean(), per_head=h)


def sink_mass(p: np.ndarray) -> MeasureResult:
    """Attention-sink mass (Xiao et al. 2024): per head, the mean over query rows of the probability on
    key position 0, for P (n_rows, heads, keys), all-zero rows ignored. Headline: the mean over heads;
    ``fields['per_head']``."""
    return run_one("sink_mass", p)
