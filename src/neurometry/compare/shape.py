"""Generalized shape metrics: angular Procrustes distance with partial whitening, and its permutation form.

Williams, Kunz, Kornblith & Linderman (2021), "Generalized shape metrics on neural representations",
NeurIPS. Conventions follow their ``netrep`` package (``LinearMetric``, ``PermutationMetric``): each
side is centred, optionally partially whitened, and the distance is the angle between the two
representations after the best alignment from a group of isometries (orthogonal matrices for
``procrustes``, permutations for ``permutation``). Both are metrics (symmetric, zero for the same shape,
triangle inequality), in radians, between 0 and pi/2 for ``procrustes``: lower means more similar.

Widths may differ: the narrower side is implicitly zero-padded (as netrep does); all-zero features add
nothing to a norm or a cross product, so no padded copy is ever made.

Partial whitening (0 < alpha < 1) depends on the scale of the covariance it uses. By default
(``scaling="covariance"``) it is the covariance X^T X / n of the paper; netrep's ``LinearMetric`` whitens
with X^T X (its ``whiten`` takes the eigenvalues of ``X.T @ X``), so its values equal ours on
X / sqrt(n), not on X. ``scaling="netrep"`` reproduces netrep's values (and its eigenvalue floor of 1e-7
and its skipping of whitening for alpha > 1 - 1e-7), to match published tables computed with netrep.
alpha = 1 and alpha = 0 do not depend on the scaling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from neurometry.arrays import as_rows, check_same_rows
from neurometry.compare.registry import Metric, Params, register
from neurometry.errors import NeurometryError
from neurometry.linalg import as_tensor, cross_product, thin_svd

SCALINGS = ("covariance", "netrep")
"""``scaling`` values of ``procrustes``: whiten with X^T X / n (default) or with X^T X as netrep does."""

NETREP_EIGVAL_TOL = 1e-7
"""netrep's ``whiten(..., eigval_tol=1e-7)``: eigenvalues of X^T X are floored here, and alpha above
1 - this skips whitening."""

REFINE_BELOW_RAD = 1e-2
"""Below this angle the distance is recomputed from the aligned residual, not arccos of a cosine.

arccos(1 - e) ~ sqrt(2 e), so one or two ulps of rounding in the cosine alone give 1.5e-8 to 2e-8 rad for identical
shapes; the residual ||X Q - Y|| is accurate to ~1e-15 absolute."""


@dataclass(frozen=True)
class ShapeState:
    """One prepared representation for ``procrustes``.

    Attributes:
        rows: the validated float64 rows (n, d), kept so ``take`` can re-centre and re-whiten.
        scores: (n, r) centred, partially whitened representation up to a rotation of its features
            (principal axes, or R^T of a QR when n < d), unit Frobenius norm; r <= min(n, d). Rotating
            the features changes none of these distances, and r <= n keeps the cross product small.
        rank: the number of directions with non-zero variance (whitening acts on these only); with
            alpha=1, where it is not needed and not computed, the upper bound min(d, dims).
        dims: dimensions the rows can span: n - 1 when centred, else n.
    """

    rows: np.ndarray
    scores: np.ndarray
    rank: int
    dims: int


@dataclass(frozen=True)
class PermutationState:
    """One prepared representation for ``permutation``: centred, unit Frobenius norm, column norms squared."""

    rows: np.ndarray
    unit: np.ndarray
    column_sq: np.ndarray


def _check_alpha(alpha: Any) -> float:
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise NeurometryError(f"procrustes alpha must be a number in [0, 1], got {alpha!r}") from None
    if not 0.0 <= value <= 1.0:
        raise NeurometryError(
            f"procrustes alpha must be in [0, 1] (1 = rotations only, 0 = any invertible linear map), got {alpha!r}"
        )
    return value


def _check_scaling(value: Any) -> str:
    if value not in SCALINGS:
        raise NeurometryError(
            f"procrustes scaling must be one of {', '.join(SCALINGS)} (covariance: X'X/n; netrep: X'X as "
            f"netrep's LinearMetric), got {value!r}"
        )
    return str(value)


def _check_flag(value: Any, name: str) -> bool:
    # accept what a CLI or JSON may hand over, but refuse anything ambiguous
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    if isinstance(value, int | np.integer) and value in (0, 1):
        return bool(value)
    raise NeurometryError(f"{name} must be true or false, got {value!r}")


def _singular_values(a: np.ndarray) -> np.ndarray:
    return torch.linalg.svdvals(as_tensor(a)).numpy()


def _centred(x: np.ndarray, center: bool) -> np.ndarray:
    return x - x.mean(axis=0) if center else x


def _constant_error(metric: str, name: str) -> NeurometryError:
    return NeurometryError(
        f"{name} is constant across stimuli (no variance after centring), so {metric} is undefined; "
        "drop that representation or check the recording"
    )


def _numerical_rank(singular_values: np.ndarray, shape: tuple[int, int]) -> int:
    # numpy.linalg.matrix_rank's default tolerance: directions below it are rounding noise
    if singular_values.size == 0 or singular_values[0] == 0.0:
        return 0
    tol = singular_values[0] * max(shape) * np.finfo(np.float64).eps
    return int(np.count_nonzero(singular_values > tol))


def _prepare_shape(x: np.ndarray, params: Params, name: str = "a representation") -> ShapeState:
    alpha = _check_alpha(params["alpha"])
    center = _check_flag(params["center"], "procrustes center")
    netrep = _check_scaling(params.get("scaling", "covariance")) == "netrep"
    n, d = x.shape
    xc = _centred(x, center)
    dims = n - 1 if center else n
    if alpha == 1.0 or (netrep and alpha > 1.0 - NETREP_EIGVAL_TOL):
        # no whitening: only X X^T matters (every distance depends on X through X^T Y), so when n < d
        # the n x n factor R^T of Xc^T = W R stands in for Xc (Xc = R^T W^T, W orthonormal columns)
        if n >= d:
            scores = xc
        else:
            scores = torch.linalg.qr(as_tensor(np.ascontiguousarray(xc.T)), mode="reduced")[1].T.numpy()
        rank = min(d, dims)
    else:
        # X_phi = Xc (alpha I + (1 - alpha) C^{-1/2}), C = Xc^T Xc / n = V diag(s^2 / n) V^T, is
        # U diag(alpha s + (1 - alpha) sqrt(n)) V^T. V^T drops out of every distance, so keep U diag(.).
        # Zero-variance directions (n < d, collinear features) have no component of X along them: the
        # inverse square root is a pseudo-inverse over the numerical rank (the stated regularisation).
        u, s, _ = thin_svd(xc)
        rank = _numerical_rank(s, xc.shape)
        u, s = u[:, :rank], s[:rank]
        if netrep:
            # netrep: X (alpha I + (1 - alpha) (X^T X)^{-1/2}), eigenvalues s^2 floored at 1e-7
            scores = u * (alpha * s + (1.0 - alpha) * s / np.sqrt(np.maximum(s**2, NETREP_EIGVAL_TOL)))
        else:
            scores = u * (alpha * s + (1.0 - alpha) * np.sqrt(n))
    norm = np.linalg.norm(scores)
    if rank == 0 or norm == 0.0:
        raise _constant_error("procrustes", name)
    return ShapeState(rows=x, scores=scores / norm, rank=rank, dims=dims)


def _take_shape(state: ShapeState, rows: np.ndarray, params: Params) -> ShapeState:
    # centring and whitening depend on every row, so the state is rebuilt from the kept rows
    return _prepare_shape(state.rows[rows], params)


def _aligned_residual(a: np.ndarray, b: np.ndarray) -> float:
    """min over orthogonal Q of ||a Q - b||_F, padding the narrower side with zero columns."""
    width = max(a.shape[1], b.shape[1])
    a = np.pad(a, ((0, 0), (0, width - a.shape[1])))
    b = np.pad(b, ((0, 0), (0, width - b.shape[1])))
    u, _, vt = thin_svd(cross_product(a, b))
    return float(np.linalg.norm((as_tensor(a) @ torch.from_numpy(u @ vt)).numpy() - b))


def _score_shape(state_a: ShapeState, state_b: ShapeState, params: Params) -> float:
    alpha = _check_alpha(params["alpha"])
    check_same_rows(state_a.rows, state_b.rows)
    if alpha == 0.0 and state_a.rank + state_b.rank > state_a.dims:
        # fully whitened, each side is just its column space; two spaces whose dimensions add up to more
        # than the stimuli span must share (rank_a + rank_b - dims) directions, whatever the data
        raise NeurometryError(
            f"procrustes with alpha=0 compares column spaces, but ranks {state_a.rank} and {state_b.rank} "
            f"exceed the {state_a.dims} dimensions {len(state_a.rows)} stimuli span, so they overlap trivially; "
            "use alpha > 0, fewer features (e.g. PCA) or more stimuli"
        )
    # ||A^T B||_* = max over orthogonal Q of <A Q, B>: the cosine of the aligned angle (A, B unit norm).
    # The cross product is r_a x r_b with r <= min(n, d), so this is the cheaper of the n and d routes.
    cosine = float(_singular_values(cross_product(state_a.scores, state_b.scores)).sum())
    angle = float(np.arccos(np.clip(cosine, -1.0, 1.0)))
    if angle < REFINE_BELOW_RAD:
        chord = _aligned_residual(state_a.scores, state_b.scores)
        angle = 2.0 * float(np.arcsin(min(chord / 2.0, 1.0)))
    return angle


def _prepare_permutation(x: np.ndarray, params: Params, name: str = "a representation") -> PermutationState:
    center = _check_flag(params["center"], "permutation center")
    xc = _centred(x, center)
    norm = np.linalg.norm(xc)
    if norm == 0.0:
        raise _constant_error("permutation", name)
    unit = xc / norm
    return PermutationState(rows=x, unit=unit, column_sq=np.einsum("ij,ij->j", unit, unit))


def _take_permutation(state: PermutationState, rows: np.ndarray, params: Params) -> PermutationState:
    return _prepare_permutation(state.rows[rows], params)


def _score_permutation(state_a: PermutationState, state_b: PermutationState, params: Params) -> float:
    check_same_rows(state_a.rows, state_b.rows)
    a, b = state_a.unit, state_b.unit
    # best one-to-one matching of features; a rectangular assignment leaves the extra features of the
    # wider side unmatched, which is exactly matching them to zero-padded columns
    ia, ib = linear_sum_assignment(cross_product(a, b), maximize=True)
    unmatched_a = np.ones(a.shape[1], dtype=bool)
    unmatched_a[ia] = False
    unmatched_b = np.ones(b.shape[1], dtype=bool)
    unmatched_b[ib] = False
    # the residual itself (not 1 - sum of matches) so identical shapes give 0 to rounding, not ~1e-8
    chord_sq = (
        float(np.sum((a[:, ia] - b[:, ib]) ** 2))
        + float(state_a.column_sq[unmatched_a].sum())
        + float(state_b.column_sq[unmatched_b].sum())
    )
    return 2.0 * float(np.arcsin(min(np.sqrt(chord_sq) / 2.0, 1.0)))


PROCRUSTES = register(
    Metric(
        name="procrustes",
        summary="angular Procrustes shape distance with partial whitening alpha (Williams et al. 2021)",
        prepare=_prepare_shape,
        score=_score_shape,
        take=_take_shape,
        params={"alpha": 1.0, "center": True, "scaling": "covariance"},
        higher_is_similar=False,
    )
)

PERMUTATION = register(
    Metric(
        name="permutation",
        summary="angular shape distance under the best feature permutation (Williams et al. 2021)",
        prepare=_prepare_permutation,
        score=_score_permutation,
        take=_take_permutation,
        params={"center": True},
        higher_is_similar=False,
    )
)


def _rows_pair(metric: Metric, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    xr = as_rows(x, "x", metric.min_rows)
    yr = as_rows(y, "y", metric.min_rows)
    check_same_rows(xr, yr)
    return xr, yr


def procrustes(x: Any, y: Any, alpha: float = 1.0, center: bool = True, scaling: str = "covariance") -> float:
    """Angular Procrustes shape distance (radians, 0 = same shape) between two representations.

    Each side is centred (if ``center``) and partially whitened,
    ``X_phi = X (alpha I + (1 - alpha) (X^T X / n)^{-1/2})``; the distance is
    ``arccos(||X_phi^T Y_phi||_* / (||X_phi||_F ||Y_phi||_F))``, the angle left after the best orthogonal
    alignment. alpha=1 allows rotations/reflections only (plain Procrustes: invariant to translation,
    isotropic scaling and orthogonal maps); alpha=0 whitens fully and is invariant to any invertible
    linear map (a CCA-like distance: a function of the canonical correlations). For 0 < alpha < 1 the
    value also depends on the overall scale of the data (the covariance sets the mix), as in the paper.

    That scale is where implementations differ. The default whitens with the covariance X^T X / n, as
    written above. netrep's ``LinearMetric(alpha)`` whitens with X^T X (no 1/n), so for 0 < alpha < 1
    its value on X and Y equals this default on X * sqrt(n) and Y * sqrt(n) (equivalently: netrep on
    X / sqrt(n) equals ours on X), and differs from ours on X itself. ``scaling="netrep"`` computes
    netrep's value: ``X_phi = X (alpha I + (1 - alpha) (X^T X)^{-1/2})`` with the eigenvalues of X^T X
    floored at 1e-7 and no whitening for alpha > 1 - 1e-7, as netrep's ``whiten`` does. Use it only to
    reproduce numbers published with netrep; alpha = 0 and alpha = 1 are the same under both.

    A singular covariance (n <= d, or collinear features) is handled by whitening only the directions with
    non-zero variance (a pseudo-inverse; the data has no component along the others). With alpha=0 the two
    ranks must not add up to more than the n - 1 dimensions centred stimuli span (the column spaces would
    then overlap whatever the data): that is an error naming the fixes. Widths may differ (zero-padding).

    Args:
        x: (n_stimuli, d1) array; y: (n_stimuli, d2) array, same stimuli in the same order.
        alpha: partial whitening in [0, 1]. center: subtract each feature's mean first.
        scaling: ``"covariance"`` (X^T X / n, default) or ``"netrep"`` (X^T X, netrep's values).

    Returns:
        The distance in [0, pi/2] (Williams, Kunz, Kornblith & Linderman 2021, NeurIPS).
    """
    params = PROCRUSTES.resolve({"alpha": alpha, "center": center, "scaling": scaling})
    xr, yr = _rows_pair(PROCRUSTES, x, y)
    return _score_shape(_prepare_shape(xr, params, "x"), _prepare_shape(yr, params, "y"), params)


def permutation_distance(x: Any, y: Any, center: bool = True) -> float:
    """Angular shape distance under the best permutation of features (registered as ``"permutation"``).

    Each side is centred (if ``center``) and scaled to unit Frobenius norm; the distance is the angle
    ``arccos(max over permutations P of <X P, Y>)``, the best matching found by linear assignment on
    ``X^T Y``. Invariant to translation, isotropic scaling and relabelling the features, not to rotations.
    Widths may differ: the narrower side is zero-padded (its extra partner features match nothing).

    Args:
        x: (n_stimuli, d1) array; y: (n_stimuli, d2) array, same stimuli in the same order.
        center: subtract each feature's mean first.

    Returns:
        The distance in [0, pi] (Williams, Kunz, Kornblith & Linderman 2021, NeurIPS).
    """
    params = PERMUTATION.resolve({"center": center})
    xr, yr = _rows_pair(PERMUTATION, x, y)
    return _score_permutation(
        _prepare_permutation(xr, params, "x"), _prepare_permutation(yr, params, "y"), params
    )
