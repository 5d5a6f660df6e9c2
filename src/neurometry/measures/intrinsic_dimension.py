"""Intrinsic dimension from nearest neighbours: TwoNN and the Levina-Bickel MLE.

Both run on the seeded ``subsample`` of at most ``max_rows`` rows (20,000 by default; stated in
the result's ``note``) and share one exact kNN search (:func:`knn`). Conventions follow
scikit-dimension 0.5 (``skdim.id.TwoNN``, ``skdim.id.MLE``) so that results agree with it to
rounding on the same data and parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from neurometry.errors import NeurometryError
from neurometry.measures.accumulators import SubsampleState
from neurometry.measures.registry import MeasureResult, register, result
from neurometry.measures.streaming import run_one

BLOCK_BYTES = 64 << 20
"""Memory for one block of float32 squared distances (block rows x n)."""


def knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of every row of X (n, d) among the other rows (Euclidean).

    Candidates come from float32 squared distances of the centred data (torch matmul in row blocks of
    at most ``BLOCK_BYTES``, then ``topk`` of k + 8 per row, never an n x n matrix), and the
    candidates' distances are recomputed in float64 from the differences (``torch.cdist`` without
    the matmul shortcut) and sorted, so the
    returned distances are float64-exact.

    Returns:
        (distances, indices), both (n, k), sorted by distance, the row itself excluded.
    """
    x64 = np.ascontiguousarray(x, dtype=np.float64)
    n = len(x64)
    if not 1 <= k <= n - 1:
        raise NeurometryError(
            f"{k} neighbours need at least {k + 1} rows, got {n}; use fewer neighbours or more rows"
        )
    kc = min(n - 1, k + 8)
    t64 = torch.from_numpy(x64)
    t32 = (t64 - t64.mean(0)).to(torch.float32)
    sq = (t32 * t32).sum(1)
    rows = max(1, min(n, BLOCK_BYTES // (4 * n)))
    dist = np.empty((n, k))
    idx = np.empty((n, k), dtype=np.int64)
    fix_rows = max(1, (32 << 20) // (8 * kc * x64.shape[1] + 1))
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        # ||x_j||^2 - 2 x_i.x_j: the squared distance less ||x_i||^2, which does not change a row's ranking
        d2 = torch.addmm(sq[None, :], t32[lo:hi], t32.T, alpha=-2)
        d2[torch.arange(hi - lo), torch.arange(lo, hi)] = float("inf")
        cand = torch.topk(d2, kc, dim=1, largest=False, sorted=False).indices
        del d2
        for a in range(lo, hi, fix_rows):
            b = min(hi, a + fix_rows)
            c = cand[a - lo : b - lo]
            near = torch.index_select(t64, 0, c.reshape(-1)).view(b - a, kc, -1)
            exact = torch.cdist(t64[a:b, None, :], near, compute_mode="donot_use_mm_for_euclid_dist")[:, 0]
            srt = torch.sort(exact, dim=1, stable=True)
            dist[a:b] = srt.values[:, :k].numpy()
            idx[a:b] = torch.gather(c, 1, srt.indices[:, :k]).numpy()
    return dist, idx


def _neighbour_rows(states: Mapping[str, Any], k: int, name: str) -> tuple[SubsampleState, np.ndarray]:
    s: SubsampleState = states["subsample"]
    if len(s.rows) < k + 1:
        raise NeurometryError(f"{name} needs at least {k + 1} rows, got {len(s.rows)}; measure more inputs")
    dist, _ = s.knn(k)
    return s, dist


@register(
    "twonn",
    "neighbours",
    ("subsample",),
    "TwoNN intrinsic dimension (Facco et al. 2017)",
    {"discard_fraction": 0.1},
)
def _twonn(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
    frac = float(p["discard_fraction"])
    if not 0 < frac < 1:
        raise NeurometryError(f"discard_fraction must be in (0, 1), got {frac}")
    s, dist = _neighbour_rows(states, 2, "twonn")
    r1, r2 = dist[:, 0], dist[:, 1]
    ok = r1 > 0
    mu = r2[ok] / r1[ok]
    n_all = len(mu)
    n_keep = int(n_all * (1 - frac))
    if n_keep < 2:
        raise NeurometryError(
            f"twonn has {n_keep} ratios left after discarding; measure more (distinct) rows"
        )
    x = np.log(np.sort(mu)[:n_keep])
    y = -np.log(1 - np.arange(1, n_keep + 1) / n_all)
    xx = float(x @ x)
    if xx == 0:
        raise NeurometryError(
            "twonn: every point's two nearest neighbours are equally far; the data are degenerate"
        )
    return result(
        float(x @ y) / xx, note=s.note, n_used=n_all, n_duplicates=int((~ok).sum()), n_sampled=len(s.rows)
    )


def twonn(
    x: np.ndarray, discard_fraction: float = 0.1, *, seed: int = 0, max_rows: int = 20000
) -> MeasureResult:
    """TwoNN intrinsic dimension of X (n, d) (Facco et al. 2017, Sci. Rep. 7:12140).

    mu_i = r2_i / r1_i (second over first nearest-neighbour distance); the largest ``discard_fraction``
    of the mu are dropped and the slope of -log(1 - F_emp(mu)) against log(mu), fitted through the
    origin with F_emp(mu_(i)) = i / N over all N ratios, is the dimension (scikit-dimension's
    ``TwoNN(discard_fraction, method='linear')``). Rows with a duplicate (r1 = 0) are dropped, as
    skdim does. At most ``max_rows`` rows, a seeded subsample, are used.
    """
    return run_one("twonn", x, discard_fraction=discard_fraction, seed=seed, max_rows=max_rows)


@register(
    "mle_id",
    "neighbours",
    ("subsample",),
    "Levina-Bickel maximum-likelihood intrinsic dimension over k neighbours",
    {"n_neighbors": 20, "comb": "mle"},
)
def _mle_id(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
    k, comb = int(p["n_neighbors"]), p["comb"]
    if k < 2:
        raise NeurometryError(f"mle_id needs n_neighbors >= 2, got {k}")
    if comb not in ("mle", "mean", "median"):
        raise NeurometryError(f"comb must be 'mle', 'mean' or 'median', got {comb!r}")
    s, dist = _neighbour_rows(states, k, "mle_id")
    ok = dist[:, 0] > 0
    if not ok.any():
        raise NeurometryError("mle_id: every row has a duplicate; remove duplicate rows")
    # per-row sum_j log(R_k / R_j), j = 1..k; the local estimate is (k - 1) / that sum
    logs = np.log(dist[ok, -1:] / dist[ok]).sum(1)
    if comb == "mle":  # MacKay & Ghahramani: average the inverse local estimates
        value = 1.0 / np.mean(logs / (k - 1))
    else:
        with np.errstate(divide="ignore"):
            local = (k - 1) / logs
        value = np.mean(local) if comb == "mean" else np.median(local)
    return result(
        value, note=s.note, n_used=int(ok.sum()), n_duplicates=int((~ok).sum()), n_sampled=len(s.rows)
    )


def mle_id(
    x: np.ndarray, n_neighbors: int = 20, comb: str = "mle", *, seed: int = 0, max_rows: int = 20000
) -> MeasureResult:
    """Maximum-likelihood intrinsic dimension of X (n, d) (Levina & Bickel 2004, NeurIPS).

    Local estimate at each row: (k - 1) / sum_{j=1..k} log(R_k / R_j) over its k = ``n_neighbors``
    nearest neighbours. ``comb='mle'`` (default) combines them as 1 / mean(1 / local) (MacKay &
    Ghahramani 2005), ``'mean'`` / ``'median'`` as named: scikit-dimension's
    ``MLE().fit(X, n_neighbors=k, comb=comb)``. Rows with a duplicate (R_1 = 0) are dropped. At most
    ``max_rows`` rows, a seeded subsample, are used.
    """
    return run_one("mle_id", x, n_neighbors=n_neighbors, comb=comb, seed=seed, max_rows=max_rows)
