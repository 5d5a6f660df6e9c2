"""Batching by a token budget: inputs sorted by length inside a window, so padding is small.

A pure plan from token lengths to batches of input indices. The recorder runs the batches of a
window, puts their rows back in input order and hands the window to the writer, so the store's row
order (and the committed prefix of inputs that resume relies on) never changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

DEFAULT_WINDOW = 4096  # inputs sorted together at most (the recorder lowers it to bound memory)


@dataclass(frozen=True)
class Window:
    """Inputs ``[start, stop)`` and the batches (absolute input indices) that cover them."""

    start: int
    stop: int
    batches: list[np.ndarray]


def pack(lengths: np.ndarray, max_batch_tokens: int, batch_cost: int | None = None) -> list[np.ndarray]:
    """Batches of indices into ``lengths``, longest inputs first, each within ``max_batch_tokens``.

    A batch's padded size is its number of inputs times its longest length. Inputs are sorted by
    descending length (stable, so ties keep input order) and cut into consecutive batches that
    minimise padded tokens plus ``batch_cost`` per batch (default an eighth of the budget: a batch
    is split only where that saves at least that much padding), by dynamic programming. An input
    longer than the budget on its own is a batch of one.
    """
    if max_batch_tokens < 1:
        raise ValueError("max_batch_tokens must be at least 1")
    cost = max_batch_tokens // 8 if batch_cost is None else batch_cost
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    longest = np.maximum(lengths[order], 1)
    n = len(order)
    best = np.zeros(n + 1)  # best[j]: least cost of batching the first j sorted inputs
    cut = np.zeros(n + 1, dtype=np.int64)  # where the last batch of that best starts
    for j in range(1, n + 1):
        first = np.arange(max(0, j - max(1, max_batch_tokens // int(longest[j - 1]))), j)
        padded = (j - first) * longest[first]
        total = best[first] + padded + cost
        total[(padded > max_batch_tokens) & (first < j - 1)] = np.inf
        k = int(np.argmin(total))
        best[j], cut[j] = total[k], first[k]
    bounds, j = [], n
    while j > 0:
        bounds.append(int(cut[j]))
        j = int(cut[j])
    edges = [*reversed(bounds), n]
    return [order[lo:hi] for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


def plan(lengths: np.ndarray, max_batch_tokens: int, window: int = DEFAULT_WINDOW, start: int = 0) -> Iterator[Window]:
    """Windows of ``window`` consecutive inputs from ``start`` on, each packed by :func:`pack`."""
    if window < 1:
        raise ValueError("window must be at least 1")
    n = len(lengths)
    for lo in range(start, n, window):
        hi = min(lo + window, n)
        yield Window(lo, hi, [lo + batch for batch in pack(lengths[lo:hi], max_batch_tokens)])


def padded_tokens(lengths: np.ndarray, batches: list[np.ndarray]) -> int:
    """Tokens the model runs over (padding included) for these batches."""
    return sum(len(batch) * int(np.max(lengths[batch])) for batch in batches if len(batch))


def fixed_batches(n: int, batch_size: int, start: int = 0) -> list[np.ndarray]:
    """File-order batches of ``batch_size`` inputs (what the recorder does without a token budget)."""
    return [np.arange(lo, min(lo + batch_size, n)) for lo in range(start, n, batch_size)]


def padding_fraction(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Share of the tokens run that are padding."""
    lengths = np.asarray(lengths)
    total = padded_tokens(lengths, batches)
    real = sum(int(lengths[batch].sum()) for batch in batches)
    return 1.0 - real / total if total else 0.0
