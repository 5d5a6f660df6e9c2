"""Canonical correlation analysis similarities: mean CCA, SVCCA and PWCCA.

- CCA: the canonical correlations of two centred representations are the cosines of the principal
  angles between their column spaces, i.e. the singular values of ``Qx^T Qy`` for orthonormal bases
  ``Qx``, ``Qy`` (Bjorck & Golub 1973), which is how they are computed here (stable, no covariance
  inverse). ``cca`` is their mean.
- SVCCA (Raghu, Gilmer, Yosinski & Sohl-Dickstein 2017, NeurIPS): each side is first reduced to its top
  principal components explaining a fraction ``keep`` of its variance, then mean CCA.
- PWCCA (Morcos, Raghu & Bengio 2018, NeurIPS), as the paper defines it: rho_PW = sum_i alpha_i rho_i
  with alpha_i = sum_j |<h_i, x_j>| / sum_k sum_j |<h_k, x_j>|, where h_i = Xc Sxx^{-1/2} u_i are x's
  unit-norm canonical variates (u_i the left singular vectors of Sxx^{-1/2} Sxy Syy^{-1/2}) and x_j the
  centred activity of x's neuron j over the stimuli. This is not google/svcca's ``compute_pwcca``, whose
  weights use the directions Xc u_i (the singular vectors applied without the whitening Sxx^{-1/2}),
  orthonormalised by QR, against uncentred activity, from the side with fewer neurons; the two agree
  only when x's covariance is a multiple of the identity and its means are 0 (on an anisotropic x of 3
  neurons against 4: 0.706 here and by the paper's formula, 0.787 by that code's weighting;
  ``tests/compare/test_cca.py``).

Too few stimuli make CCA trivial: centred stimuli span n - 1 dimensions, so if the two ranks add up to
more than n - 1 the column spaces share ``rank_x + rank_y - (n - 1)`` directions and that many canonical
correlations are exactly 1 whatever the data. That is an error (use svcca, fewer features, or more
stimuli), never an inflated number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurometry.arrays import as_rows, check_same_rows
from neurometry.compare.registry import Metric, Params, register
from neurometry.errors import NeurometryError
from neurometry.linalg import cross_product, thin_svd


@dataclass(frozen=True)
class CCAState:
    """One prepared representation for ``cca``, ``svcca`` and ``pwcca``.

    Attributes:
        rows: the validated float64 rows (n, d), kept so ``take`` can re-centre and re-decompose.
        basis: (n, r) orthonormal basis of the centred columns (for svcca: of the kept principal components).
        coords: (r, d) coordinates of the centred columns in ``basis`` (``Xc = basis @ coords``), kept for
            pwcca's weights only, else None.
    """

    rows: np.ndarray
    basis: np.ndarray
    coords: np.ndarray | None

    @property
    def rank(self) -> int:
        return self.basis.shape[1]


def _check_keep(keep: Any) -> float:
    try:
        value = float(keep)
    except (TypeError, ValueError):
        raise NeurometryError(f"svcca keep must be a fraction of variance in (0, 1], got {keep!r}") from None
    if not 0.0 < value <= 1.0:
        raise NeurometryError(
            f"svcca keep must be a fraction of variance in (0, 1] (e.g. 0.99), got {keep!r}"
        )
    return value


def _decompose(x: np.ndarray, metric: str, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD of the centred rows, cut to the numerical rank: (U (n, r), s (r,), Vt (r, d))."""
    xc = x - x.mean(axis=0)
    u, s, vt = thin_svd(xc)
    # numpy.linalg.matrix_rank's default tolerance: directions below it are rounding noise, and as basis
    # vectors they would be arbitrary and could correlate with anything
    tol = s[0] * max(xc.shape) * np.finfo(np.float64).eps if s.size else 0.0
    rank = int(np.count_nonzero(s > tol)) if s.size and s[0] > 0 else 0
    if rank == 0:
        raise NeurometryError(
            f"{name} is constant across stimuli (no variance after centring), so {metric} is undefined; "
            "drop that representation or check the recording"
        )
    return u[:, :rank], s[:rank], vt[:rank]


def _components_for_variance(s: np.ndarray, keep: float) -> int:
    """Fewest leading principal components whose variance is at least ``keep`` of the total."""
    explained = np.cumsum(s**2) / np.sum(s**2)
    # a relative slack so a spectrum built to hit the threshold exactly is not lost to rounding
    k = int(np.searchsorted(explained, keep * (1.0 - 1e-12), side="left")) + 1
    return min(k, s.size)


def _prepare_full(x: np.ndarray, params: Params, metric: str, name: str, with_coords: bool) -> CCAState:
    u, s, vt = _decompose(x, metric, name)
    return CCAState(rows=x, basis=u, coords=s[:, None] * vt if with_coords else None)


def _prepare_cca(x: np.ndarray, params: Params, name: str = "a representation") -> CCAState:
    return _prepare_full(x, params, "cca", name, with_coords=False)


def _prepare_pwcca(x: np.ndarray, params: Params, name: str = "a representation") -> CCAState:
    return _prepare_full(x, params, "pwcca", name, with_coords=True)


def _prepare_svcca(x: np.ndarray, params: Params, name: str = "a representation") -> CCAState:
    keep = _check_keep(params["keep"])
    u, s, _ = _decompose(x, "svcca", name)
    # the top principal components U_k diag(s_k) span the same space as U_k: that is the basis
    return CCAState(rows=x, basis=u[:, : _components_for_variance(s, keep)], coords=None)


def _correlations(state_a: CCAState, state_b: CCAState, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Canonical correlations (descending, length min(r_a, r_b)) and x's canonical directions (r_a, k)."""
    check_same_rows(state_a.rows, state_b.rows)
    n = len(state_a.rows)
    span = n - 1
    if state_a.rank + state_b.rank > span:
        fix = "lower keep, " if metric == "svcca" else "svcca (keeps the top principal components), "
        raise NeurometryError(
            f"{metric} needs more stimuli than features: ranks {state_a.rank} and {state_b.rank} exceed the "
            f"{span} dimensions {n} centred stimuli span, so {state_a.rank + state_b.rank - span} canonical "
            f"correlations would be 1 whatever the data; use {fix}fewer features or more stimuli"
        )
    u, rho, _ = thin_svd(cross_product(state_a.basis, state_b.basis))
    k = min(state_a.rank, state_b.rank)
    # rounding can push a cosine a hair above 1
    return np.clip(rho[:k], 0.0, 1.0), u[:, :k]


def _take(
    prepare: Callable[[np.ndarray, Params], CCAState],
) -> Callable[[CCAState, np.ndarray, Params], CCAState]:
    def take(state: CCAState, rows: np.ndarray, params: Params) -> CCAState:
        # centring and the basis depend on every row, so the state is rebuilt from the kept rows
        return prepare(state.rows[rows], params)

    return take


def _score_cca(state_a: CCAState, state_b: CCAState, params: Params) -> float:
    return float(np.mean(_correlations(state_a, state_b, "cca")[0]))


def _score_svcca(state_a: CCAState, state_b: CCAState, params: Params) -> float:
    return float(np.mean(_correlations(state_a, state_b, "svcca")[0]))


def _pwcca_weights(state_a: CCAState, directions: np.ndarray) -> np.ndarray:
    """alpha_i = sum_j |<h_i, x_j>| over x's centred features x_j, normalised to sum to 1.

    h_i = basis @ directions[:, i] are x's canonical variates (unit norm, orthogonal), and
    x_j = basis @ coords[:, j], so <h_i, x_j> = (directions^T coords)_ij.
    """
    if state_a.coords is None:
        raise ValueError("pwcca weights need a state prepared by the pwcca metric (with coordinates)")
    weights = np.abs(directions.T @ state_a.coords).sum(axis=1)
    return weights / weights.sum()


def _score_pwcca(state_a: CCAState, state_b: CCAState, params: Params) -> float:
    rho, directions = _correlations(state_a, state_b, "pwcca")
    return float(np.dot(_pwcca_weights(state_a, directions), rho))


CCA = register(
    Metric(
        name="cca",
        summary="mean canonical correlation of the centred representations (Hotelling 1936)",
        prepare=_prepare_cca,
        score=_score_cca,
        take=_take(_prepare_cca),
    )
)

SVCCA = register(
    Metric(
        name="svcca",
        summary="mean CCA after keeping the principal components explaining `keep` of variance (Raghu et al. 2017)",
        prepare=_prepare_svcca,
        score=_score_svcca,
        take=_take(_prepare_svcca),
        params={"keep": 0.99},
    )
)

PWCCA = register(
    Metric(
        name="pwcca",
        summary="projection-weighted CCA, weights from the first representation (Morcos et al. 2018); not symmetric",
        prepare=_prepare_pwcca,
        score=_score_pwcca,
        take=_take(_prepare_pwcca),
    )
)


def _prepared_pair(
    metric: Metric, prepare: Callable[..., CCAState], x: Any, y: Any, params: Params
) -> tuple[CCAState, CCAState]:
    xr = as_rows(x, "x", metric.min_rows)
    yr = as_rows(y, "y", metric.min_rows)
    check_same_rows(xr, yr)
    return prepare(xr, params, "x"), prepare(yr, params, "y")


def canonical_correlations(x: Any, y: Any) -> np.ndarray:
    """Canonical correlations of two representations of the same stimuli, in descending order.

    Both sides are centred; the correlations are the singular values of ``Qx^T Qy`` for orthonormal bases
    of the column spaces (thin SVD, cut at the numerical rank), so collinear features are handled and no
    covariance is inverted.

    Args:
        x: (n_stimuli, d1) array; y: (n_stimuli, d2) array, same stimuli in the same order.

    Returns:
        (min(rank_x, rank_y),) float64 array in [0, 1] (Hotelling 1936).

    Raises:
        NeurometryError: if ``rank_x + rank_y > n - 1`` (then some correlations are 1 trivially; use
            :func:`svcca` or fewer features), NaN input, different row counts, or a constant side.
    """
    xs, ys = _prepared_pair(CCA, _prepare_cca, x, y, CCA.resolve({}))
    return _correlations(xs, ys, "cca")[0]


def cca(x: Any, y: Any) -> float:
    """Mean canonical correlation of x and y, in [0, 1] (1 = same column space after centring).

    Invariant to invertible linear maps of either side. Shapes: x (n_stimuli, d1), y (n_stimuli, d2),
    with rank_x + rank_y <= n - 1 (see :func:`canonical_correlations`).
    """
    xs, ys = _prepared_pair(CCA, _prepare_cca, x, y, CCA.resolve({}))
    return _score_cca(xs, ys, {})


def svcca(x: Any, y: Any, keep: float = 0.99) -> float:
    """SVCCA: mean CCA between the principal components of x and of y that explain ``keep`` of variance.

    Each side (centred) keeps its fewest leading principal components whose variance is at least ``keep``
    of its total (Raghu, Gilmer, Yosinski & Sohl-Dickstein 2017); the kept counts must add up to at most
    n - 1. Shapes: x (n_stimuli, d1), y (n_stimuli, d2). Returns a value in [0, 1].
    """
    params = SVCCA.resolve({"keep": keep})
    xs, ys = _prepared_pair(SVCCA, _prepare_svcca, x, y, params)
    return _score_svcca(xs, ys, params)


def pwcca(x: Any, y: Any) -> float:
    """Projection-weighted CCA (Morcos, Raghu & Bengio 2018), in [0, 1]; NOT symmetric.

        rho_PW = sum_i alpha_i rho_i,   alpha_i = sum_j |<h_i, x_j>| / sum_k sum_j |<h_k, x_j>|,

    with rho_i the canonical correlations, h_i = Xc Sxx^{-1/2} u_i x's canonical variates (unit norm over
    stimuli; u_i the left singular vectors of Sxx^{-1/2} Sxy Syy^{-1/2}) and x_j the centred activity of
    x's feature j: components carrying more of x's activity count more. The weights always come from the
    first argument ``x``. This is the paper's definition, not google/svcca's ``compute_pwcca``: that code
    weights with the directions Xc u_i (no Sxx^{-1/2}), orthonormalised, against uncentred activity, and
    takes them from whichever side has fewer neurons, so its values differ whenever x's features are
    correlated or of unequal variance, whichever side is passed first (they agree when Sxx is a
    multiple of the identity and the means are 0).
    Shapes: x (n_stimuli, d1), y (n_stimuli, d2), rank_x + rank_y <= n - 1.
    """
    xs, ys = _prepared_pair(PWCCA, _prepare_pwcca, x, y, PWCCA.resolve({}))
    return _score_pwcca(xs, ys, {})
