"""Linear predictivity: cross-validated ridge R^2 of one representation predicted from another.

The encoding-model score of Yamins et al. (2014, PNAS) and Brain-Score (Schrimpf et al. 2018), with
ridge regression in place of their PLS and R^2 in place of their per-unit correlation:

- K-fold cross-validation over stimuli, folds from a seeded shuffle (row ``j`` of the shuffle goes to
  fold ``j % folds``).
- On each training fold: features and targets standardised with the training fold's mean and standard
  deviation (ddof 0; a column constant on the training fold is only centred, as scikit-learn's
  ``StandardScaler``), then ridge with an unpenalised intercept. The penalty is chosen from ``alphas``
  by efficient leave-one-out (generalised) cross-validation on the training fold, one penalty shared by
  all targets, the one with the lowest mean squared leave-one-out error over rows and (standardised)
  targets, the first in ``alphas`` on a tie: scikit-learn's ``RidgeCV(alphas, fit_intercept=True)``
  on the same standardised data. Standardising the targets makes each target weigh the same in that
  choice, matching the uniform average of R^2 below.
- One eigendecomposition of the training fold's X^T X (or X X^T when features outnumber rows),
  :class:`neurometry.ridge.RidgePath`, gives the leave-one-out errors and the predictions for every
  penalty. Cost per fold and direction about (n_alphas + 2) x n_train x min(n_train, p) x n_targets
  plus the eigendecomposition.
- The default penalties are :data:`neurometry.ridge.DEFAULT_ALPHAS` (1e-3 .. 1e5), the grid shared
  with the encoding models.
- Held-out predictions, back in the targets' units, are pooled over the folds; R^2 is computed per
  target column over all stimuli (``1 - SS_res / SS_tot`` about the column mean) and combined as
  scikit-learn's ``r2_score(..., multioutput=...)``: ``"uniform_average"`` (default, the mean over
  columns) or ``"variance_weighted"``.
- Target columns constant over all stimuli have no R^2 and are left out (a constant neuron is
  unpredictable by definition, not badly predicted); all-constant targets are an error.

Bootstrap resamples repeat stimuli; a copy of a held-out row in the training fold would leak it. Rows
carrying the same original stimulus (in either representation) are kept in one fold (``groups``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from neurometry.arrays import as_rows, check_same_rows
from neurometry.compare.registry import Metric, Params, register
from neurometry.errors import NeurometryError
from neurometry.folds import fold_assignment
from neurometry.ridge import DEFAULT_ALPHAS, RidgePath, check_alphas, standardise

MULTIOUTPUT = ("uniform_average", "variance_weighted")
DIRECTIONS = ("a_to_b", "b_to_a", "mean")


def cross_validated_predictions(
    x: Any, y: Any, alphas: Any = DEFAULT_ALPHAS, folds: int = 5, seed: int = 0, groups: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Held-out ridge predictions of ``y`` from ``x``, pooled over folds (see the module docstring).

    Args:
        x: (n_stimuli, n_features) predictors.
        y: (n_stimuli, n_targets) targets.
        alphas: ridge penalties to choose from on each training fold.
        folds: number of folds; needs n_stimuli >= 2 * folds.
        seed: seed of the fold shuffle (:func:`fold_assignment`).
        groups: optional (n_stimuli,) labels; rows sharing a label stay in one fold.

    Returns:
        predictions (n_stimuli, n_targets), each row predicted by the model that did not see it, and
        the penalty chosen on each fold (folds,).
    """
    x, y = as_rows(x, "x"), as_rows(y, "y")
    check_same_rows(x, y)
    grid = check_alphas(alphas)
    fold = fold_assignment(len(x), folds, seed, groups)
    predictions = np.empty_like(y)
    chosen = np.empty(int(fold.max()) + 1)
    for f in range(len(chosen)):
        test, train = fold == f, fold != f
        # standardised targets weigh alike in the choice of the penalty; predictions go back to units
        y_mean, y_scale = standardise(y[train])
        y_train = (y[train] - y_mean) / y_scale
        ridge = RidgePath.fit(x[train])  # standardised features, unpenalised intercept
        mse = ridge.loo_mse(y_train, grid).mean(axis=1)  # over rows and targets
        chosen[f] = grid[int(np.argmin(mse))]  # argmin returns the first of equal minima
        predictions[test] = y_mean + y_scale * ridge.predict(y_train, x[test], chosen[f])
    return predictions, chosen


def _varying_columns(y: np.ndarray) -> np.ndarray:
    """Columns whose values are not all equal (to rounding)."""
    spread = np.ptp(y, axis=0)
    return spread > 1e-12 * np.abs(y).max(axis=0)


def linear_predictivity(
    x: Any,
    y: Any,
    alphas: Any = DEFAULT_ALPHAS,
    folds: int = 5,
    seed: int = 0,
    multioutput: str = "uniform_average",
    groups: Any = None,
) -> float:
    """Cross-validated ridge R^2 of predicting ``y`` from ``x`` (Yamins et al. 2014; Schrimpf et al. 2018).

    K-fold (seeded shuffle), features and targets standardised on each training fold, ridge penalty
    chosen from ``alphas`` by leave-one-out on the training fold (as ``RidgeCV``), R^2 per target
    column over the pooled held-out predictions, combined as ``r2_score``'s ``multioutput``. 1 is a
    perfect linear prediction, about 0 (slightly below) an unrelated ``y``. Target columns constant
    over all stimuli are left out. Details in the module docstring.

    Args:
        x: (n_stimuli, n_features) predictors.
        y: (n_stimuli, n_targets) responses to the same stimuli, same order.
        alphas: ridge penalties to choose from, on standardised features.
        folds: number of folds; needs n_stimuli >= 2 * folds.
        seed: seed of the fold shuffle.
        multioutput: ``"uniform_average"`` (mean R^2 over target columns) or ``"variance_weighted"``.
        groups: optional (n_stimuli,) labels; rows sharing a label (repeats of one stimulus) stay in one fold.
    """
    x, y = as_rows(x, "x"), as_rows(y, "y")
    check_same_rows(x, y)
    if multioutput not in MULTIOUTPUT:
        raise NeurometryError(f"multioutput must be one of {', '.join(MULTIOUTPUT)}, got {multioutput!r}")
    varying = _varying_columns(y)
    if not varying.any():
        raise NeurometryError(
            "every target column is constant over the stimuli, so R^2 is undefined; predict a representation that varies"
        )
    y = np.ascontiguousarray(y[:, varying])
    predictions, _ = cross_validated_predictions(x, y, alphas, folds, seed, groups)
    residual = np.sum((y - predictions) ** 2, axis=0)
    total = np.sum((y - y.mean(axis=0)) ** 2, axis=0)
    if multioutput == "variance_weighted":
        return float(1.0 - residual.sum() / total.sum())
    return float(np.mean(1.0 - residual / total))


def predictivity_both(
    x: Any,
    y: Any,
    alphas: Any = DEFAULT_ALPHAS,
    folds: int = 5,
    seed: int = 0,
    multioutput: str = "uniform_average",
    groups: Any = None,
) -> tuple[float, float]:
    """(R^2 of y from x, R^2 of x from y), each as :func:`linear_predictivity`, same folds."""
    forward = linear_predictivity(x, y, alphas, folds, seed, multioutput, groups)
    backward = linear_predictivity(y, x, alphas, folds, seed, multioutput, groups)
    return forward, backward


@dataclass(frozen=True)
class PredictivityState:
    """Rows of one representation and the original stimulus index of each row."""

    rows: np.ndarray
    ids: np.ndarray


def _prepare(x: Any, params: Params) -> PredictivityState:
    rows = as_rows(x, "x")
    return PredictivityState(rows, np.arange(len(rows), dtype=np.int64))


def _take(state: PredictivityState, rows: np.ndarray, params: Params) -> PredictivityState:
    rows = np.asarray(rows, dtype=np.int64)
    return PredictivityState(state.rows[rows], state.ids[rows])


def _row_groups(ids_a: np.ndarray, ids_b: np.ndarray) -> np.ndarray | None:
    """Fold groups: rows linked by sharing an original stimulus on either side; None when all distinct."""
    if len(np.unique(ids_a)) == len(ids_a) and len(np.unique(ids_b)) == len(ids_b):
        return None
    if np.array_equal(ids_a, ids_b):
        return ids_a
    _, node_a = np.unique(ids_a, return_inverse=True)
    _, node_b = np.unique(ids_b, return_inverse=True)
    n_a = int(node_a.max()) + 1
    size = n_a + int(node_b.max()) + 1
    links = coo_matrix((np.ones(len(ids_a)), (node_a, n_a + node_b)), shape=(size, size))
    _, component = connected_components(links, directed=False)
    return component[node_a]


def _score(a: PredictivityState, b: PredictivityState, params: Params) -> float:
    check_same_rows(a.rows, b.rows)
    direction = params["direction"]
    if direction not in DIRECTIONS:
        raise NeurometryError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    groups = _row_groups(a.ids, b.ids)
    options = (params["alphas"], params["folds"], params["seed"], params["multioutput"], groups)
    if direction == "a_to_b":
        return linear_predictivity(a.rows, b.rows, *options)
    if direction == "b_to_a":
        return linear_predictivity(b.rows, a.rows, *options)
    return float(np.mean(predictivity_both(a.rows, b.rows, *options)))


register(
    Metric(
        name="linear_predictivity",
        summary="cross-validated ridge R^2, a -> b, b -> a or their mean (Yamins et al. 2014; Brain-Score)",
        prepare=_prepare,
        score=_score,
        take=_take,
        params={
            "alphas": DEFAULT_ALPHAS,
            "folds": 5,
            "seed": 0,
            "direction": "mean",
            "multioutput": "uniform_average",
        },
        min_rows=4,
    )
)
