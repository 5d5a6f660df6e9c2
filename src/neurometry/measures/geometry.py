"""Geometry of the rows themselves: anisotropy, norms, cosine across points, rank collapse."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from neurometry.errors import NeurometryError
from neurometry.measures.accumulators import GroupsState, PairState, UnitSumState
from neurometry.measures.registry import MeasureResult, register, result
from neurometry.measures.streaming import run_measures, run_one


@register("anisotropy", "geometry", ("unit_sum",), "mean cosine similarity over distinct pairs of rows")
def _anisotropy(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
    s: UnitSumState = states["unit_sum"]
    m = s.n - s.n_zero
    if m < 2:
        raise NeurometryError(f"anisotropy needs at least 2 nonzero rows, got {m}; measure more inputs")
    value = (float(s.sum_unit @ s.sum_unit) - m) / (m * (m - 1))
    note = f"{s.n_zero} all-zero rows left out" if s.n_zero else ""
    return result(value, note=note, n_zero_rows=s.n_zero)


def anisotropy(x: np.ndarray) -> MeasureResult:
    """Anisotropy of X (n, d) (Ethayarajh 2019): the mean cosine similarity over all distinct pairs of
    rows, (||sum_i u_i||^2 - m) / (m (m - 1)) with u_i = x_i / ||x_i|| over the m nonzero rows: O(n d),
    streamable. Rows are used as given (not centred); all-zero rows are left out and counted."""
    return run_one("anisotropy", x)


@register("mean_norm", "geometry", ("unit_sum",), "mean Euclidean norm of the rows")
def _mean_norm(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
    s: UnitSumState = states["unit_sum"]
    return result(s.sum_norm / s.n)


def mean_norm(x: np.ndarray) -> MeasureResult:
    """Mean Euclidean norm of the rows of X (n, d)."""
    return run_one("mean_norm", x)


@register("layer_cosine", "geometry", ("pair",), "mean cosine between each row's vectors at two points")
def _layer_cosine(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
    s: PairState = states["pair"]
    m = s.n - s.n_zero
    if m < 1:
        raise NeurometryError("layer_cosine: every row is zero at one of the two points; nothing to compare")
    note = f"{s.n_zero} rows zero at one point left out" if s.n_zero else ""
    return result(s.sum_cos / m, note=note, n_zero_rows=s.n_zero)


def layer_cosine(x: np.ndarray, y: np.ndarray) -> MeasureResult:
    """Mean over rows i of cos(x_i, y_i), for X and Y (n, d): the same rows (inputs, tokens) at two
    consecutive points (e.g. layers l and l + 1 of the residual stream). Rows zero in X or Y are left out."""
    return run_measures(lambda: [x], ["layer_cosine"], other=lambda: [y])["layer_cosine"]


@register(
    "rank_collapse", "tokens", ("groups",), "mean relative rank-1 residual of each input's token matrix"
)
def _rank_collapse(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
    s: GroupsState = states["groups"]
    if len(s.residuals) == 0:
        raise NeurometryError(
            "rank_collapse needs inputs with at least 2 nonzero token rows; record token-level points"
        )
    note = f"{s.n_skipped} inputs with fewer than 2 tokens or all zero left out" if s.n_skipped else ""
    return result(
        s.residuals.mean(),
        note=note,
        n_inputs=len(s.residuals),
        n_skipped=s.n_skipped,
        min=float(s.residuals.min()),
        max=float(s.residuals.max()),
    )


def rank_collapse(x: np.ndarray | Sequence[np.ndarray], input_ids: np.ndarray | None = None) -> MeasureResult:
    """Rank collapse of token representations (Dong et al. 2021, "Attention is not all you need").

    For each input's token matrix X (T, d): ||X - X_1||_F / ||X||_F with X_1 its best rank-1
    approximation (truncated SVD; 0 when the tokens are all parallel), averaged over inputs. Inputs
    with T < 2 or X = 0 are left out and counted.

    Args:
        x: (n, d) rows with ``input_ids`` (n,) saying which input each row belongs to (each input's
            rows contiguous), or a list of (T_i, d) matrices.
    """
    if input_ids is None:
        if isinstance(x, np.ndarray) or not len(x):
            raise NeurometryError(
                "rank_collapse needs input_ids (one per row) or a list of (T, d) token matrices"
            )
        mats = [np.asarray(m) for m in x]
        for i, m in enumerate(mats):
            if m.ndim != 2:
                raise NeurometryError(
                    f"token matrix {i} has shape {m.shape}; each must be (tokens, features)"
                )
        input_ids = np.repeat(np.arange(len(mats)), [len(m) for m in mats])
        x = np.concatenate(mats)
    return run_one("rank_collapse", x, input_ids=input_ids)
