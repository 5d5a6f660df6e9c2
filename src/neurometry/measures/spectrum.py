"""Spectrum measures: functions of the eigenvalues of the covariance of X (n, d).

All of them come from the ``moments`` accumulator (float64 scatter matrix, d <= 8192), so they stream.
Eigenvalues below ``10 d eps lambda_max`` are rounding noise of the Gram matrix and count as zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from neurometry.errors import NeurometryError
from neurometry.measures.accumulators import MomentsState
from neurometry.measures.registry import MeasureResult, register, result
from neurometry.measures.streaming import run_one


def _spectrum(states: Mapping[str, Any], min_rows: int = 2) -> np.ndarray:
    m: MomentsState = states["moments"]
    if m.n < min_rows:
        raise NeurometryError(
            f"spectrum measures need at least {min_rows} rows, got {m.n}; measure more inputs"
        )
    lam = m.eigenvalues
    if lam[0] <= 0:
        raise NeurometryError("all rows are identical (zero variance); the spectrum is undefined")
    return lam


@register(
    "effective_rank",
    "spectrum",
    ("moments",),
    "RankMe effective rank: exp entropy of normalised singular values",
)
def _effective_rank(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
    sv = np.sqrt(_spectrum(states))
    sv = sv[sv > 0]
    q = sv / sv.sum()
    return result(np.exp(-np.sum(q * np.log(q))))


def effective_rank(x: np.ndarray) -> MeasureResult:
    """Effective rank (Roy & Vetterli 2007; RankMe, Garrido et al. 2023) of X (n, d).

    exp(-sum_k p_k log p_k) with p_k = s_k / sum_j s_j, where s_k are the singular values of the
    *centred* data (square roots of the scatter-matrix eigenvalues), as in RankMe which uses singular
    values (not covariance eigenvalues, which would give exp of the entropy of s_k^2). Between 1 and
    min(n - 1, d).
    """
    return run_one("effective_rank", x)


@register(
    "participation_ratio", "spectrum", ("moments",), "(sum lambda)^2 / sum lambda^2 of covariance eigenvalues"
)
def _participation_ratio(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
    lam = _spectrum(states)
    return result(lam.sum() ** 2 / np.sum(lam * lam))


def participation_ratio(x: np.ndarray) -> MeasureResult:
    """Participation ratio (sum_k lambda_k)^2 / sum_k lambda_k^2 of the covariance eigenvalues of X (n, d)
    (Gao et al. 2017; Recanatesi et al. 2019)."""
    return run_one("participation_ratio", x)


@register(
    "alpha_req",
    "spectrum",
    ("moments",),
    "power-law decay exponent alpha of the covariance eigenspectrum, lambda_k ~ k^-alpha",
    {"alpha_k_min": 1, "alpha_k_max": None},
)
def _alpha_req(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
    lam = _spectrum(states)
    rank = int(np.count_nonzero(lam))
    k_min = int(p["alpha_k_min"])
    k_max = rank if p["alpha_k_max"] is None else min(int(p["alpha_k_max"]), rank)
    if k_min < 1 or k_max - k_min + 1 < 2:
        raise NeurometryError(
            f"alpha_req fits over k = {k_min}..{k_max} (nonzero eigenvalues: {rank}); "
            "the range needs at least 2 nonzero eigenvalues: widen alpha_k_min/alpha_k_max or add rows"
        )
    k = np.arange(k_min, k_max + 1)
    slope, intercept = np.polyfit(np.log(k), np.log(lam[k_min - 1 : k_max]), 1)
    return result(-slope, k_min=k_min, k_max=k_max, log_intercept=float(intercept))


def alpha_req(x: np.ndarray, k_min: int = 1, k_max: int | None = None) -> MeasureResult:
    """Power-law exponent alpha of the eigenspectrum of X (n, d) (alpha-ReQ, Agrawal et al. 2022;
    Stringer et al. 2019): minus the least-squares slope of log lambda_k against log k over
    k = k_min..k_max (1-based; default: all nonzero eigenvalues, at most min(n - 1, d))."""
    return run_one("alpha_req", x, alpha_k_min=k_min, alpha_k_max=k_max)


def _n_components(fraction: float):
    def compute(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
        lam = _spectrum(states)
        explained = np.cumsum(lam) / lam.sum()
        k = int(np.searchsorted(explained, fraction - 1e-12)) + 1
        return result(min(k, len(lam)), fraction=fraction)

    return compute


for _pct in (90, 95, 99):
    register(
        f"n_components_{_pct}",
        "spectrum",
        ("moments",),
        f"principal components needed to explain {_pct}% of the variance",
    )(_n_components(_pct / 100))


def n_components(x: np.ndarray, fraction: float = 0.9) -> MeasureResult:
    """Fewest principal components of X (n, d) whose covariance eigenvalues sum to at least
    ``fraction`` (0.9, 0.95 or 0.99) of the total variance."""
    names = {0.9: "n_components_90", 0.95: "n_components_95", 0.99: "n_components_99"}
    if fraction not in names:
        raise NeurometryError(f"fraction must be one of 0.9, 0.95, 0.99, got {fraction}")
    return run_one(names[fraction], x)


@register("stable_rank", "spectrum", ("moments",), "||X||_F^2 / ||X||_2^2 of the centred data")
def _stable_rank(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
    lam = _spectrum(states)
    return result(lam.sum() / lam[0])


def stable_rank(x: np.ndarray) -> MeasureResult:
    """Stable rank ||Xc||_F^2 / ||Xc||_2^2 = sum lambda / max lambda of the centred X (n, d)
    (Rudelson & Vershynin 2007)."""
    return run_one("stable_rank", x)


@register(
    "coding_rate",
    "spectrum",
    ("moments",),
    "coding rate R = 1/2 logdet(I + d/(n eps^2) Z^T Z) (Yu et al. 2020)",
    {"eps": 0.5},
)
def _coding_rate(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
    m: MomentsState = states["moments"]
    eps = float(p["eps"])
    if not eps > 0:
        raise NeurometryError(f"coding_rate needs eps > 0, got {eps}")
    lam = np.maximum(m.eigvalsh(m.second_moment), 0.0)
    return result(0.5 * np.sum(np.log1p(m.d / (m.n * eps * eps) * lam)))


def coding_rate(x: np.ndarray, eps: float = 0.5) -> MeasureResult:
    """Coding rate R(Z) = 1/2 logdet(I_d + d / (n eps^2) Z^T Z) of Z = X (n, d), natural log
    (Yu et al. 2020, MCR^2; Yu et al. 2023, CRATE). Uses the uncentred second moment of the rows as
    given (no centring, no normalisation); default eps = 0.5."""
    return run_one("coding_rate", x, eps=eps)
