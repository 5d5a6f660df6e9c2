"""Encoding models: cross-validated ridge from a point's activations to many targets at once.

The encoding-model score of Yamins et al. (2014, PNAS), Brain-Score (Schrimpf et al. 2018) and
Naselaris et al. (2011, NeuroImage): how well a linear map of a layer's activations predicts each
recorded unit, voxel or behavioural measure on stimuli it was not fitted on. Ridge in place of their
PLS, one penalty per target.

Conventions (shared by :func:`select_alphas` and :func:`encode`):

- Folds come from :func:`neurometry.folds.fold_assignment` (seeded; rows sharing a ``groups`` label,
  e.g. repeats of one stimulus, stay in one fold).
- On each training fold the features are standardised with the training rows' mean and standard
  deviation (ddof 0; a column constant on the training rows is only centred, as scikit-learn's
  ``StandardScaler``) and the targets are centred on the training rows; ridge has an unpenalised
  intercept. The penalties therefore apply to standardised features: the coefficients for penalty
  ``alpha`` are those of scikit-learn's ``Ridge(alpha)`` fitted on ``StandardScaler().fit(x_train)``
  output.
- One decomposition of the training fold's standardised X = U S V^T serves every penalty and every
  target: R = U^T Y (r x targets) is formed once, the held-out rows are rotated once (A = X_test V),
  and the held-out predictions for penalty alpha are A diag(s / (s^2 + alpha)) R. The big products are
  n_train x r x targets once and n_test x r x targets per penalty (r = min(n_train, features)). The
  decomposition is the eigendecomposition of the smaller Gram matrix (X^T X or X X^T), through torch:
  :class:`neurometry.ridge.RidgePath`, the engine linear predictivity uses too.
- The default penalties are :data:`neurometry.ridge.DEFAULT_ALPHAS` (1e-3 .. 1e5), the grid shared
  with linear predictivity.
- ``device=`` (a ``torch.device``; None is the CPU) runs every fold's decomposition and products
  there (:meth:`neurometry.ridge.RidgePath.fit`); fold assignment, the penalty choice and Pearson r
  stay on the CPU.
- :func:`select_alphas` scores each penalty and target by the mean squared error of the held-out
  predictions pooled over the folds (each row predicted once), and picks per target the penalty with
  the lowest error; on an exact tie, the larger penalty (the smoother model).

:func:`encode` nests that selection inside an outer cross-validation, so the held-out predictions
that give each target's Pearson r never influenced the choice of its penalty. r is computed once per
target over the predictions pooled from all outer folds. Pooling has a small negative bias for targets
the features do not predict: a prediction shrunk to the training mean moves against the held-out
fold's mean, giving r of about -sqrt((folds - 1) / n_stimuli) (-0.04 at 5 folds and 3,000 stimuli)
rather than 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from neurometry.arrays import as_rows, check_same_rows
from neurometry.errors import NeurometryError
from neurometry.folds import check_folds, fold_assignment
from neurometry.ridge import DEFAULT_ALPHAS, RidgePath, check_alphas, column_blocks
from neurometry.threads import blas_threads


def _columns(index: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(i)) for i in index[:limit])
    return shown + (", ..." if len(index) > limit else "")


def _check_targets(targets: Any) -> np.ndarray:
    """``targets`` as float64 (n, t); NaN / Inf or constant columns raise, naming their count."""
    raw = np.asarray(targets)
    if raw.dtype.kind in "fc" and raw.ndim >= 1 and len(raw):
        flat = raw.reshape(len(raw), -1) if raw.ndim != 1 else raw[:, None]
        bad = np.flatnonzero(~np.isfinite(flat).all(axis=0))
        if len(bad):
            raise NeurometryError(
                f"{len(bad)} targets contain NaN or Inf (columns {_columns(bad)}); "
                "remove those columns or fill the missing values"
            )
    y = as_rows(targets, "targets")
    high, low = y.max(axis=0), y.min(axis=0)
    constant = np.flatnonzero(high - low <= 1e-12 * np.maximum(high, -low))
    if len(constant):
        raise NeurometryError(
            f"{len(constant)} targets are constant over the rows (columns {_columns(constant)}); "
            "their correlation is undefined, so remove them"
        )
    return y


def _held_out_sse(
    x: np.ndarray, y: np.ndarray, fold: np.ndarray, grid: np.ndarray, device: torch.device | None = None
) -> np.ndarray:
    """Sum over held-out rows of the squared error of every penalty and target (n_alphas, t)."""
    sse = np.zeros((len(grid), y.shape[1]))
    with blas_threads(torch_threads=True):  # small products per fold, through torch (neurometry.threads)
        for f in range(int(fold.max()) + 1):
            test, train = fold == f, fold != f
            ridge = RidgePath.fit(x[train], device=device)
            # copy the fold's rows out of the targets a block of columns at a time: bounded memory
            for block in column_blocks(int(train.sum()), y.shape[1]):
                sse[:, block] += ridge.held_out_sse(y[train, block], x[test], y[test, block], grid)
    return sse


def _pick(scores: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Index into ``grid`` of the lowest score per target; exact ties go to the larger penalty."""
    order = np.argsort(-grid, kind="stable")  # largest penalty first: argmin keeps the first minimum
    return order[np.argmin(scores[order], axis=0)]


def select_alphas(
    x: Any,
    y: Any,
    alphas: Any = DEFAULT_ALPHAS,
    *,
    folds: int = 5,
    seed: int = 0,
    groups: Any = None,
    device: torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """K-fold choice of one ridge penalty per target, for all targets at once.

    Each fold: features standardised and targets centred on the training rows, one SVD of the
    training X shared by every penalty and target, held-out predictions for every penalty (see the
    module docstring). The score is the mean squared error of the held-out predictions, pooled over
    folds; per target the penalty with the lowest error wins, the larger penalty on an exact tie.

    Args:
        x: (n_stimuli, n_features) activations.
        y: (n_stimuli, n_targets) responses to the same stimuli, same order.
        alphas: ridge penalties to choose from (on standardised features).
        folds: number of folds; needs n_stimuli >= 2 * folds.
        seed: seed of the fold shuffle.
        groups: optional (n_stimuli,) labels; rows sharing a label stay in one fold.
        device: a ``torch.device`` for the folds' linear algebra; None: the CPU.

    Returns:
        (best penalty per target (n_targets,), cross-validated mean squared error of each penalty
        and target (n_alphas, n_targets), rows in the order of ``alphas``).
    """
    x = as_rows(x, "x")
    y = _check_targets(y)
    check_same_rows(x, y, "arrays (x and y)")
    grid = check_alphas(alphas)
    fold = fold_assignment(len(x), folds, seed, groups)
    mse = _held_out_sse(x, y, fold, grid, device) / len(x)
    return grid[_pick(mse, grid)], mse


def held_out_predictions(
    x: Any,
    targets: Any,
    alphas: Any = DEFAULT_ALPHAS,
    *,
    folds: int = 5,
    seed: int = 0,
    groups: Any = None,
    inner_folds: int = 5,
    device: torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Nested cross-validated ridge predictions of every target (the predictions :func:`encode` scores).

    Outer folds (``folds``, ``seed``, ``groups``) split the rows; within each outer training set the
    penalty of each target is chosen by :func:`select_alphas` (``inner_folds``, same seed, the
    training rows' groups), then ridge is refitted on the whole outer training set with each
    target's penalty and predicts the outer held-out rows. With a single penalty the inner selection
    is skipped.

    Args:
        x: (n_stimuli, n_features) activations.
        targets: (n_stimuli, n_targets) responses to the same stimuli, same order.
        device: a ``torch.device`` for the folds' linear algebra; None: the CPU.

    Returns:
        (predictions (n_stimuli, n_targets), each row from the model that did not see it; the penalty
        of each outer fold and target (folds, n_targets)).
    """
    x = as_rows(x, "x")
    y = _check_targets(targets)
    check_same_rows(x, y, "arrays (x and targets)")
    return _nested(x, y, check_alphas(alphas), folds, seed, groups, inner_folds, device)


def _nested(
    x: np.ndarray,
    y: np.ndarray,
    grid: np.ndarray,
    folds: int,
    seed: int,
    groups: Any,
    inner_folds: int,
    device: torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    inner_folds = check_folds(inner_folds, len(x))
    fold = fold_assignment(len(x), folds, seed, groups)
    group = None if groups is None else np.asarray(groups).reshape(-1)
    predictions = np.empty_like(y)
    chosen = np.empty((int(fold.max()) + 1, y.shape[1]))
    with blas_threads(torch_threads=True):  # the outer folds' fits (neurometry.threads)
        for f in range(len(chosen)):
            test, train = fold == f, fold != f
            if len(grid) == 1:
                chosen[f] = grid[0]
            else:
                n_train = int(train.sum())
                if n_train < 2 * inner_folds:
                    raise NeurometryError(
                        f"an outer training set has {n_train} rows, too few for {inner_folds} inner folds "
                        f"(needs {2 * inner_folds}); use fewer folds or inner_folds, or more rows"
                    )
                try:
                    inner = fold_assignment(n_train, inner_folds, seed, None if group is None else group[train])
                except NeurometryError as error:
                    raise NeurometryError(f"inner cross-validation within outer fold {f}: {error}") from None
                x_train, y_train = x[train], y[train]
                mse = _held_out_sse(x_train, y_train, inner, grid, device)
                chosen[f] = grid[_pick(mse, grid)]
            # refit on the whole outer training set, each target with its own penalty
            predictions[test] = RidgePath.fit(x[train], device=device).predict(y[train], x[test], chosen[f])
    return predictions, chosen


def pearson_columns(y: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Pearson r of each column of ``predictions`` with the same column of ``y`` (both (n, t)).

    A constant prediction carries no linear information about the target: its r is 0, not NaN.
    """
    yc = y - y.mean(axis=0)
    pc = predictions - predictions.mean(axis=0)
    denominator = np.sqrt(np.sum(yc * yc, axis=0) * np.sum(pc * pc, axis=0))
    numerator = np.sum(yc * pc, axis=0)
    safe = denominator > 0
    return np.where(safe, numerator / np.where(safe, denominator, 1.0), 0.0)


def _json_floats(values: np.ndarray | None) -> list | None:
    if values is None:
        return None
    return [float(v) if np.isfinite(v) else None for v in values]


@dataclass
class EncodingResult:
    """Held-out encoding-model scores of one point (layer) for every target.

    Attributes:
        r: (n_targets,) Pearson r between each target and its held-out predictions, pooled over the
            outer folds.
        alpha: (n_targets,) the penalty chosen for each target: the lower median of the choices of
            the outer folds (the middle one with 5 folds; always one of the ``alphas``).
        mean_r, median_r: over targets.
        ceiling: optional (n_targets,) noise ceiling (e.g. :func:`split_half_reliability`).
        normalized_r: r / ceiling where the ceiling is > 0, NaN where it is not (an unreliable
            target has no meaningful normalised score; ``to_dict`` writes those as null).
        n_rows: stimuli (rows) used.
        folds: outer folds.
        params: alphas, inner folds, seed and whether rows were grouped.
    """

    r: np.ndarray
    alpha: np.ndarray
    mean_r: float
    median_r: float
    ceiling: np.ndarray | None
    normalized_r: np.ndarray | None
    n_rows: int
    folds: int
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready: arrays as lists of floats, non-finite values as null."""
        return {
            "r": _json_floats(self.r),
            "alpha": _json_floats(self.alpha),
            "mean_r": self.mean_r,
            "median_r": self.median_r,
            "ceiling": _json_floats(self.ceiling),
            "normalized_r": _json_floats(self.normalized_r),
            "n_rows": self.n_rows,
            "folds": self.folds,
            "params": dict(self.params),
        }


def encode(
    x: Any,
    targets: Any,
    *,
    alphas: Any = DEFAULT_ALPHAS,
    folds: int = 5,
    seed: int = 0,
    groups: Any = None,
    ceiling: Any = None,
    inner_folds: int = 5,
    device: torch.device | None = None,
) -> EncodingResult:
    """Leak-free encoding model of every target from one point's activations.

    Nested cross-validation (:func:`held_out_predictions`): outer folds give held-out predictions,
    pooled over the folds, whose Pearson r with each target is reported; each target's ridge penalty
    is chosen by :func:`select_alphas` inside the outer training set only (Yamins et al. 2014;
    Schrimpf et al. 2018; Naselaris et al. 2011).

    Args:
        x: (n_stimuli, n_features) activations of one point.
        targets: (n_stimuli, n_targets) responses (units, voxels, behavioural measures), same rows.
        alphas: ridge penalties to choose from, on standardised features.
        folds: outer folds; needs n_stimuli >= 2 * folds.
        seed: seed of the outer and inner fold shuffles.
        groups: optional (n_stimuli,) labels; rows sharing one (repeats, tokens of one input) stay in
            one fold, outer and inner.
        ceiling: optional (n_targets,) noise ceiling to normalise r by.
        inner_folds: folds of the penalty selection inside each outer training set.
        device: a ``torch.device`` for every fold's ridge decomposition and products (scores equal the
            CPU path's to rounding); None: the CPU.

    Raises NeurometryError for NaN / Inf or constant targets (naming how many and which columns),
    mismatched rows, too few rows for the (inner) folds, and a ceiling of the wrong shape.
    """
    x = as_rows(x, "x")
    y = _check_targets(targets)
    check_same_rows(x, y, "arrays (x and targets)")
    bound = None
    if ceiling is not None:
        bound = np.asarray(ceiling, dtype=np.float64).reshape(-1)
        if bound.shape != (y.shape[1],):
            raise NeurometryError(
                f"ceiling has {bound.size} values for {y.shape[1]} targets; give one value per target"
            )
        if not np.all(np.isfinite(bound)):
            raise NeurometryError("ceiling contains NaN or Inf; give a finite noise ceiling per target")
    grid = check_alphas(alphas)
    predictions, chosen = _nested(x, y, grid, folds, seed, groups, inner_folds, device)
    r = pearson_columns(y, predictions)
    alpha = np.sort(chosen, axis=0)[(len(chosen) - 1) // 2]
    normalized = None
    if bound is not None:
        positive = bound > 0
        normalized = np.where(positive, r / np.where(positive, bound, 1.0), np.nan)
    return EncodingResult(
        r=r,
        alpha=alpha,
        mean_r=float(np.mean(r)),
        median_r=float(np.median(r)),
        ceiling=bound,
        normalized_r=normalized,
        n_rows=len(x),
        folds=len(chosen),
        params={
            "alphas": [float(a) for a in grid],
            "inner_folds": int(inner_folds),
            "seed": int(seed),
            "grouped": groups is not None,
            "selection": "per-target held-out mean squared error, ties to the larger penalty",
        },
    )


def split_half_reliability(repeats: Any, *, splits: int = 100, seed: int = 0) -> np.ndarray:
    """Split-half noise ceiling of each target from repeated measurements, Spearman-Brown corrected.

    For each of ``splits`` random splits of the repeats into two halves of ``n_repeats // 2`` each
    (with an odd count one repeat, a different one each split, sits out), the Pearson r over stimuli
    between the two halves' mean responses is computed per target; r is averaged over the splits and
    then corrected by Spearman-Brown, 2 r / (1 + r): the reliability of the mean of
    2 * (n_repeats // 2) repeats (all of them when the count is even). The convention of Brain-Score's
    internal consistency (Schrimpf et al. 2018). With responses = signal + independent noise per
    repeat it estimates var(signal) / (var(signal) + var(noise) / n_repeats). Unreliable targets get
    values near or below 0.

    Args:
        repeats: (n_repeats, n_stimuli, n_targets) responses; n_repeats >= 2, n_stimuli >= 3.
        splits: number of random splits.
        seed: seed of the splits.

    Returns:
        (n_targets,) reliability.
    """
    data = np.asarray(repeats)
    if data.dtype.kind not in "fiub":
        raise NeurometryError(f"repeats must be real numbers, got dtype {data.dtype}")
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3:
        raise NeurometryError(
            f"repeats has shape {data.shape}; give (repeats, stimuli, targets) (or (repeats, stimuli))"
        )
    n_repeats, n_stimuli, n_targets = data.shape
    if n_repeats < 2:
        raise NeurometryError(
            f"split-half reliability needs at least 2 repeats, got {n_repeats}; measure each stimulus twice or more"
        )
    if n_stimuli < 3:
        raise NeurometryError(f"split-half reliability needs at least 3 stimuli, got {n_stimuli}")
    if isinstance(splits, bool) or not isinstance(splits, (int, np.integer)) or splits < 1:
        raise NeurometryError(f"splits must be a whole number >= 1, got {splits!r}")
    flat = np.ascontiguousarray(data.reshape(n_repeats, -1), dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(flat).all(axis=0).reshape(n_stimuli, n_targets).all(axis=0))
    if len(bad):
        raise NeurometryError(
            f"{len(bad)} targets contain NaN or Inf (columns {_columns(bad)}); remove or fill them"
        )
    half = n_repeats // 2
    rng = np.random.default_rng(seed)
    total = np.zeros(n_targets)
    for _ in range(int(splits)):
        order = rng.permutation(n_repeats)
        first = flat[order[:half]].mean(axis=0).reshape(n_stimuli, n_targets)
        second = flat[order[half : 2 * half]].mean(axis=0).reshape(n_stimuli, n_targets)
        first -= first.mean(axis=0)
        second -= second.mean(axis=0)
        denominator = np.sqrt(np.sum(first * first, axis=0) * np.sum(second * second, axis=0))
        flat_halves = np.flatnonzero(denominator == 0)
        if len(flat_halves):
            raise NeurometryError(
                f"{len(flat_halves)} targets have a half whose mean response is the same for every "
                f"stimulus (columns {_columns(flat_halves)}); their reliability is undefined, so remove them"
            )
        total += np.sum(first * second, axis=0) / denominator
    r = total / splits
    return 2.0 * r / (1.0 + r)


def best_points(results: Mapping[str, EncodingResult]) -> list[str]:
    """For each target, the point whose encoding model predicts it best (highest r): a layer-to-region map.

    Args:
        results: point name -> :func:`encode` result, all over the same targets. On equal r the
            earlier point in the mapping wins.

    Returns:
        list of n_targets point names.
    """
    if not results:
        raise NeurometryError("best_points needs at least one point's encoding result")
    names = list(results)
    sizes = {name: len(np.asarray(results[name].r)) for name in names}
    if len(set(sizes.values())) != 1:
        listed = ", ".join(f"{name}: {size}" for name, size in sizes.items())
        raise NeurometryError(
            f"the points were scored on different numbers of targets ({listed}); encode the same targets"
        )
    table = np.stack([np.asarray(results[name].r, dtype=np.float64) for name in names])
    return [names[i] for i in np.argmax(table, axis=0)]
