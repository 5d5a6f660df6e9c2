"""Per-unit (neuron) statistics of activations A (n, F): dead units, sparsity, kurtosis, outlier
dimensions, massive activations. All stream (per-unit float64 power sums, min/max, counts)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from neurometry.errors import NeurometryError
from neurometry.measures.accumulators import MaxAbsState, UnitStatsState
from neurometry.measures.registry import MeasureResult, register, result
from neurometry.measures.streaming import run_one


@register(
    "dead_fraction",
    "neurons",
    ("unit_stats",),
    "fraction of units whose |activation| never exceeds dead_threshold (default 0: never nonzero)",
    {"dead_threshold": 0.0},
)
def _dead_fraction(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
    s: UnitStatsState = states["unit_stats"]
    dead = np.flatnonzero(np.maximum(np.abs(s.min), np.abs(s.max)) <= float(p["dead_threshold"]))
    return result(len(dead) / len(s.min), dead_units=dead, n_dead=len(dead))


def dead_fraction(a: np.ndarray, threshold: float = 0.0) -> MeasureResult:
    """Fraction of units (columns of A (n, F)) that are dead: max_i |a_ij| <= ``threshold`` over all rows.
    With the default threshold 0 a unit is dead when it is never nonzero (a ReLU unit that never fires).
    ``fields['dead_units']`` lists them."""
    return run_one("dead_fraction", a, dead_threshold=threshold)


@register(
    "sparsity",
    "neurons",
    ("unit_stats",),
    "fraction of activations with |a| <= sparsity_threshold (default 1e-2)",
    {"sparsity_threshold": 1e-2},
)
def _sparsity(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
    s: UnitStatsState = states["unit_stats"]
    per_unit = s.n_small / s.n
    return result(per_unit.mean(), per_unit=per_unit, threshold=s.sparsity_threshold)


def sparsity(a: np.ndarray, threshold: float = 1e-2) -> MeasureResult:
    """Fraction of all entries of A (n, F) with |a| <= ``threshold`` (default 1e-2, absolute);
    ``fields['per_unit']`` gives it per unit."""
    return run_one("sparsity", a, sparsity_threshold=threshold)


@register("kurtosis", "neurons", ("unit_stats",), "median over units of the excess kurtosis of each unit")
def _kurtosis(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
    s: UnitStatsState = states["unit_stats"]
    const = s.constant
    if const.all():
        raise NeurometryError("kurtosis: every unit is constant over the rows; measure more varied inputs")
    per_unit = np.full(len(const), np.nan)
    var = s.variance[~const]
    per_unit[~const] = s.m4[~const] / (var * var) - 3.0
    live = per_unit[~const]
    note = (
        f"{int(const.sum())} constant units (kurtosis undefined, NaN in per_unit) left out"
        if const.any()
        else ""
    )
    return result(
        np.median(live), note=note, per_unit=per_unit, mean=float(live.mean()), n_constant=int(const.sum())
    )


def kurtosis(a: np.ndarray) -> MeasureResult:
    """Excess kurtosis m4 / m2^2 - 3 of each unit of A (n, F) (population moments, as
    ``scipy.stats.kurtosis(a, fisher=True, bias=True)``); headline: the median over units (robust to a
    few extreme units); ``fields['mean']`` the mean. Constant units are NaN in ``per_unit`` and left out."""
    return run_one("kurtosis", a)


@register(
    "outlier_dims",
    "neurons",
    ("unit_stats",),
    "number of units whose variance exceeds outlier_factor (default 10) x the median unit variance",
    {"outlier_factor": 10.0},
)
def _outlier_dims(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
    s: UnitStatsState = states["unit_stats"]
    var = s.variance
    med = float(np.median(var))
    if med <= 0:
        raise NeurometryError(
            "outlier_dims: the median unit variance is 0 (most units constant); drop dead units or use dead_fraction"
        )
    dims = np.flatnonzero(var > float(p["outlier_factor"]) * med)
    dims = dims[np.argsort(-var[dims], kind="stable")]
    return result(len(dims), dims=dims, variance_ratio=var[dims] / med, median_variance=med)


def outlier_dims(a: np.ndarray, factor: float = 10.0) -> MeasureResult:
    """Outlier dimensions of A (n, F) (Kovaleva et al. 2021; Puccetti et al. 2022): units whose
    variance is more than ``factor`` x the median unit variance. Headline: their count;
    ``fields['dims']`` lists them, largest variance first, with ``variance_ratio``."""
    return run_one("outlier_dims", a, outlier_factor=factor)


@register(
    "massive_activations",
    "neurons",
    ("max_abs",),
    "largest |activation| over the median |activation|, with its row and dim",
    {"median_sample": 2_000_000},
)
def _massive(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
    s: MaxAbsState = states["max_abs"]
    med = float(np.median(s.sample))
    if med <= 0:
        raise NeurometryError(
            "massive_activations: the median |activation| is 0 (mostly zeros, e.g. after a ReLU); "
            "measure a residual-stream point instead"
        )
    note = "" if s.exact else f"median |a| from a seeded sample of {s.sampled_rows} of {s.n} rows"
    return result(s.max_abs / med, note=note, row=s.row, dim=s.dim, max_abs=s.max_abs, median_abs=med)


def massive_activations(a: np.ndarray, median_sample: int = 2_000_000, *, seed: int = 0) -> MeasureResult:
    """Massive activations (Sun et al. 2024): the largest |a| in A (n, F) divided by the median |a|.

    ``fields``: ``row`` and ``dim`` of the largest entry (first occurrence; the caller maps the row to an
    input / token via its metadata), ``max_abs``, ``median_abs``. The median is exact when n x F <=
    ``median_sample`` entries, else taken over a seeded sample of whole rows of about that many entries.
    """
    return run_one("massive_activations", a, median_sample=median_sample, seed=seed)
