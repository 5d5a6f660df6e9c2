"""Statistics for any registered metric: permutation tests and bootstrap intervals over stimuli.

Both work on prepared states through ``Metric.take`` (see ``registry.py``), so a Gram matrix or an
RDM is indexed, not recomputed, where the metric allows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurometry.compare.registry import Metric
from neurometry.errors import NeurometryError

MAX_FAILED_FRACTION = 0.1
"""Bootstrap draws a metric refuses (e.g. too few distinct stimuli) are skipped up to this fraction."""


@dataclass(frozen=True)
class PermutationResult:
    """``p_value``: (1 + #null at least as extreme) / (1 + permutations) (Phipson & Smyth 2010)."""

    p_value: float
    null_mean: float
    null_std: float
    permutations: int


@dataclass(frozen=True)
class BootstrapResult:
    """Percentile interval at ``confidence`` over ``draws`` successful resamples of the stimuli."""

    ci_low: float
    ci_high: float
    std: float
    draws: int
    failed: int


def permutation_orders(n: int, permutations: int, seed: int) -> np.ndarray:
    """(permutations, n) seeded row orders, shared by every pair so a matrix uses the same null draws."""
    if permutations < 1:
        raise NeurometryError(f"permutations must be at least 1, got {permutations}")
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n) for _ in range(permutations)])


def bootstrap_draws(n: int, draws: int, seed: int) -> np.ndarray:
    """(draws, n) seeded resamples of the stimuli with replacement."""
    if draws < 2:
        raise NeurometryError(f"bootstrap needs at least 2 draws, got {draws}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    return rng.integers(0, n, size=(draws, n))


def permutation_test(
    metric: Metric, state_a: Any, state_b: Any, observed: float, orders: np.ndarray, params: Mapping[str, Any]
) -> PermutationResult:
    """Shuffle the stimuli of B against A (``orders`` from :func:`permutation_orders`) and score each.

    The p-value is one-sided in the direction of similarity: the upper tail for similarities, the
    lower tail for distances (``metric.higher_is_similar``).
    """
    null = np.array([metric.score(state_a, metric.take(state_b, order, params), params) for order in orders])
    extreme = null >= observed if metric.higher_is_similar else null <= observed
    # a tiny relative slack so that a null value equal to the observed one up to rounding counts as extreme
    slack = 1e-12 * max(1.0, abs(observed))
    extreme |= np.abs(null - observed) <= slack
    return PermutationResult(
        p_value=float((1 + extreme.sum()) / (1 + len(null))),
        null_mean=float(null.mean()),
        null_std=float(null.std(ddof=1)) if len(null) > 1 else 0.0,
        permutations=len(null),
    )


def bootstrap_interval(
    metric: Metric,
    state_a: Any,
    state_b: Any,
    draws: np.ndarray,
    params: Mapping[str, Any],
    confidence: float = 0.95,
) -> BootstrapResult:
    """Resample stimuli with replacement (the same rows on both sides) and take the percentile interval.

    A draw the metric refuses (a NeurometryError, e.g. too few distinct stimuli left) is skipped; more
    than ``MAX_FAILED_FRACTION`` of them is an error, since the interval would then be biased.
    """
    if not 0 < confidence < 1:
        raise NeurometryError(f"confidence must be in (0, 1), got {confidence}")
    values, failed = [], 0
    for rows in draws:
        try:
            values.append(
                metric.score(metric.take(state_a, rows, params), metric.take(state_b, rows, params), params)
            )
        except NeurometryError:
            failed += 1
    if failed > MAX_FAILED_FRACTION * len(draws) or len(values) < 2:
        raise NeurometryError(
            f"{metric.name}: {failed} of {len(draws)} bootstrap draws could not be scored (too few distinct "
            "stimuli in a resample); use more stimuli or skip --bootstrap"
        )
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return BootstrapResult(float(low), float(high), float(np.std(values, ddof=1)), len(values), failed)
