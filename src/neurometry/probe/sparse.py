"""Sparse probing (Gurnee et al. 2023, "Finding Neurons in a Haystack: Case Studies with Sparse
Probing", TMLR): rank units by a cheap per-unit score, fit the logistic probe on the top k units for
k = 1, 2, 4, ..., and report held-out accuracy against k. k = 1 names single neurons.

Ranking scores (per unit, classes from the labels):

- ``"f_statistic"``: the one-way ANOVA F of the unit's activation across classes,
  (SS_between / (C - 1)) / (SS_within / (n - C)), as scikit-learn's ``f_classif``.
- ``"mean_difference"``: |mean of class a - mean of class b| / pooled standard deviation
  (sqrt((SS_a + SS_b) / (n_a + n_b - 2)), Cohen's d) for two classes; with more classes the largest
  one-vs-rest value over the classes. Gurnee et al. rank by the raw difference of class means;
  dividing by the pooled spread makes units of different scales comparable, and for two classes
  gives the same order as the t statistic.

A unit with no spread within classes but different class means scores infinity (first); a unit
constant over all rows has no score and ranks last. Ties keep the lower unit index first.

Leakage: ranking on all rows before cross-validation lets the held-out rows choose the units (with
many units some fit the held-out labels by chance). In :func:`sparse_probe` each fold ranks the units
on its training rows only; the reported ``units`` for a k are the top k ranked on all rows (what to
name), which can differ from the units a fold used.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurometry.arrays import as_rows
from neurometry.errors import NeurometryError, did_you_mean
from neurometry.probe.linear import (
    ProbeResult,
    _baseline,
    _check_confidence,
    _check_training_classes,
    _fit_score,
    _folds_for,
    _labels_or_values,
    _n_groups,
    _result,
)
from neurometry.threads import blas_threads

RANK_METHODS = ("f_statistic", "mean_difference")


def _check_method(method: Any) -> str:
    if method not in RANK_METHODS:
        raise NeurometryError(
            f"unknown ranking method {method!r}; choose one of {', '.join(RANK_METHODS)}"
            f"{did_you_mean(str(method), RANK_METHODS)}"
        )
    return method


def _class_moments(x: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: row count (C,), mean (C, d) and sum of squared deviations from that mean (C, d)."""
    n_classes = int(codes.max()) + 1
    counts = np.bincount(codes, minlength=n_classes)
    means = np.zeros((n_classes, x.shape[1]))
    squares = np.zeros((n_classes, x.shape[1]))
    for c in np.flatnonzero(counts):
        rows = x[codes == c]
        means[c] = rows.mean(axis=0)
        squares[c] = ((rows - means[c]) ** 2).sum(axis=0)
    present = counts > 0
    return counts[present], means[present], squares[present]


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    # x / 0 is inf (separated without spread) and 0 / 0 is NaN (no signal at all: ranked last)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(
            bottom > 0, top / np.where(bottom > 0, bottom, 1.0), np.where(top > 0, np.inf, np.nan)
        )


def unit_scores(x: Any, y: Any, method: str = "f_statistic") -> np.ndarray:
    """Per-unit ranking score (n_units,) of activations ``x`` (n_rows, n_units) for labels ``y`` (n_rows,).

    ``"f_statistic"`` (one-way ANOVA F, as ``sklearn.feature_selection.f_classif``) or
    ``"mean_difference"`` (pooled-standard-deviation class-mean difference, max one-vs-rest); see the
    module docstring. NaN for a unit constant over all rows.
    """
    method = _check_method(method)
    x = as_rows(x, "x")
    codes = _labels_or_values(y, len(x), "logistic").values
    counts, means, squares = _class_moments(x - x.mean(axis=0), codes)
    n, n_classes = len(x), len(counts)
    if n - n_classes < 1:
        raise NeurometryError(
            f"ranking units needs more rows than classes, got {n} rows and {n_classes} classes"
        )
    if method == "f_statistic":
        grand = counts @ means / n
        between = counts @ (means - grand) ** 2
        within = squares.sum(axis=0)
        return _ratio(between / (n_classes - 1), within / (n - n_classes))
    best = np.full(x.shape[1], np.nan)
    pairs = range(1) if n_classes == 2 else range(n_classes)  # with two classes both one-vs-rest agree
    for c in pairs:
        rest = np.arange(n_classes) != c
        n_rest = counts[rest].sum()
        mean_rest = counts[rest] @ means[rest] / n_rest
        # the rest's squared deviations about its own mean: within each class plus between classes
        squares_rest = squares[rest].sum(axis=0) + counts[rest] @ (means[rest] - mean_rest) ** 2
        pooled = np.sqrt((squares[c] + squares_rest) / (n - 2))
        score = _ratio(np.abs(means[c] - mean_rest), pooled)
        best = np.fmax(best, score)  # fmax ignores NaN unless both are NaN
    return best


def rank_units(x: Any, y: Any, method: str = "f_statistic") -> np.ndarray:
    """Unit indices (n_units,), best first, by :func:`unit_scores` (ties: lower index first; units
    without a score last)."""
    scores = unit_scores(x, y, method)
    return np.argsort(-np.nan_to_num(scores, nan=-np.inf, posinf=np.inf), kind="stable")


def default_ks(d: int) -> list[int]:
    """1, 2, 4, ... below ``d``, then ``d`` itself."""
    ks = [1 << i for i in range(max(d - 1, 1).bit_length()) if 1 << i < d]
    return [*ks, d]


def _check_ks(ks: Any, d: int) -> list[int]:
    if ks is None:
        return default_ks(d)
    values = [ks] if isinstance(ks, (int, np.integer)) else list(ks)
    if not values:
        raise NeurometryError("ks is empty; give unit counts such as 1, 2, 4")
    for k in values:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= d:
            raise NeurometryError(f"each k must be a whole number from 1 to the {d} units, got {k!r}")
    return sorted({int(k) for k in values})


def sparse_probe(
    x: Any,
    y: Any,
    ks: Any = None,
    *,
    rank_by: str = "f_statistic",
    groups: Any = None,
    folds: int = 5,
    seed: int = 0,
    C: float = 1.0,
    confidence: float = 0.95,
) -> list[ProbeResult]:
    """Held-out accuracy of the logistic probe on the top k units, for each k (Gurnee et al. 2023).

    Folds, standardisation, the logistic probe, the interval and the majority baseline are those of
    :func:`~neurometry.probe.linear.probe`. Within each fold the units are ranked by ``rank_by`` on the
    training rows only, and the probe is fitted on the top k of that ranking.

    Args:
        x: (n_rows, n_units) activations at one point.
        y: (n_rows,) categorical labels.
        ks: unit counts to try; default 1, 2, 4, ... below n_units, then n_units.
        rank_by: ``"f_statistic"`` or ``"mean_difference"`` (module docstring).
        groups: optional (n_rows,) labels, e.g. the input of each token; a group's rows stay in one fold.
        folds: number of folds; each class needs at least ``folds`` rows.
        seed: seed of the fold assignment.
        C: inverse L2 strength of the logistic probe.
        confidence: level of the t-interval of the mean fold accuracy.

    Returns:
        One :class:`ProbeResult` per k (ascending), kind ``"sparse"``, with ``k`` and ``units``: the top
        k units ranked on all rows, best first.
    """
    x = as_rows(x, "x")
    target = _labels_or_values(y, len(x), "logistic")
    rank_by = _check_method(rank_by)
    ks = _check_ks(ks, x.shape[1])
    confidence = _check_confidence(confidence)
    n_groups = _n_groups(groups, len(x))
    fold = _folds_for(target, folds, seed, groups)
    codes = target.values
    _check_training_classes(codes, fold, target.classes, "y")
    n_folds = int(fold.max()) + 1
    scores = np.empty((len(ks), n_folds))
    with blas_threads():  # many small fits: one BLAS thread each (see neurometry.threads)
        for f in range(n_folds):
            train, test = fold != f, fold == f
            x_train, x_test = x[train], x[test]
            order = rank_units(x_train, codes[train], rank_by)
            for i, k in enumerate(ks):
                units = order[:k]
                scores[i, f] = _fit_score(
                    x_train[:, units], codes[train], x_test[:, units], codes[test], "logistic", C, 1.0
                )
    overall = rank_units(x, codes, rank_by)
    baseline = _baseline(target, fold)
    params = {
        "folds": int(folds),
        "seed": int(seed),
        "confidence": confidence,
        "C": float(C),
        "rank_by": rank_by,
    }
    note = (
        f"units: the top k ranked by {rank_by} on all rows; each fold's score ranks the units on its "
        "training rows only, so a fold may have used other units"
    )
    return [
        _result(
            "sparse",
            scores[i],
            baseline,
            confidence,
            target,
            n_groups,
            params,
            k=k,
            units=tuple(int(u) for u in overall[:k]),
            note=note,
        )
        for i, k in enumerate(ks)
    ]
