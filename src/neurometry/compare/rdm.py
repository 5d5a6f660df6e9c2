"""Representational dissimilarity matrices (RDMs): the :class:`RDM` type, computing and loading them.

An RDM holds one dissimilarity for each pair of conditions (stimuli), stored condensed: the strict
upper triangle read row by row, which is scipy's ``squareform`` order and MATLAB's ``squareform`` order
too. Normalisations follow rsatoolbox (``rsatoolbox.rdm.calc_rdm``) so values can be compared with it,
and the plain squared Euclidean distance is there as ``sqeuclidean``:

==============  ======================================================================================
method          dissimilarity between rows x_i, x_j of x (n_conditions, n_features = d)
==============  ======================================================================================
correlation     1 - Pearson r(x_i, x_j)  (rsatoolbox ``correlation``, scipy ``correlation``)
cosine          1 - x_i.x_j / (|x_i| |x_j|)  (scipy ``cosine``)
euclidean       |x_i - x_j|^2 / d  (rsatoolbox ``euclidean``: squared, divided by the number of features)
sqeuclidean     |x_i - x_j|^2  (scipy ``sqeuclidean``)
mahalanobis     (x_i - x_j)' P (x_i - x_j) / d, P a noise precision (rsatoolbox ``mahalanobis``)
crossnobis      cross-validated mahalanobis over partitions (rsatoolbox ``crossnobis``), unbiased
==============  ======================================================================================

Kriegeskorte, Mur & Bandettini (2008), Representational similarity analysis, Front. Syst. Neurosci.;
Walther et al. (2016), Reliability of dissimilarity measures for multi-voxel pattern analysis,
NeuroImage (crossnobis).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg
import scipy.linalg.blas
import torch

from neurometry.arrays import as_rows
from neurometry.errors import NeurometryError, did_you_mean
from neurometry.files import read_npy
from neurometry.linalg import as_tensor

RDM_METHODS = ("correlation", "cosine", "euclidean", "sqeuclidean", "mahalanobis", "crossnobis")
MIN_CONDITIONS = 3
# Gram matrices up to this size are one symmetric BLAS call (n^2 float64: 128 MiB at the limit);
# larger ones, and non-symmetric products, go in blocks of about _BLOCK_ELEMENTS entries (32 MiB).
_SYRK_MAX_N = 4096
_BLOCK_ELEMENTS = 1 << 22
# on a device, blocks of about this many float64 entries (256 MiB)
_DEVICE_BLOCK_ELEMENTS = 1 << 25
# relative tolerance for the symmetry and zero-diagonal checks of a square RDM read from a file
_SQUARE_TOL = 1e-8


def n_pairs(n_conditions: int) -> int:
    """Number of condition pairs, the length of a condensed RDM."""
    return n_conditions * (n_conditions - 1) // 2


def n_conditions_from_pairs(length: int) -> int | None:
    """The n with n(n-1)/2 == length, or None when ``length`` is not such a number."""
    n = int(round((1 + math.sqrt(1 + 8 * length)) / 2))
    return n if n_pairs(n) == length else None


@dataclass(eq=False)  # field-wise == on arrays has no single truth value
class RDM:
    """One representational dissimilarity matrix, condensed.

    Attributes:
        dissimilarities: float64 (n_conditions * (n_conditions - 1) / 2,), scipy ``squareform`` order
            (pairs (0,1), (0,2), ..., (0,n-1), (1,2), ...). NaN marks a pair to ignore (the two rows
            :meth:`take` drew from the same original condition); comparisons skip NaN pairs.
        n_conditions: number of conditions (stimuli).
        name: a label (file variable, subject, layer).

    Build one with :meth:`from_square` or :meth:`from_condensed` (which validate user data), or
    :func:`compute_rdm` from activations.
    """

    dissimilarities: np.ndarray
    n_conditions: int
    name: str = ""

    def __post_init__(self) -> None:
        self.dissimilarities = np.ascontiguousarray(self.dissimilarities, dtype=np.float64).reshape(-1)
        self.n_conditions = int(self.n_conditions)
        if len(self.dissimilarities) != n_pairs(self.n_conditions):
            raise NeurometryError(
                f"{_label(self.name)} has {len(self.dissimilarities)} dissimilarities but "
                f"{self.n_conditions} conditions need {n_pairs(self.n_conditions)}; give n(n-1)/2 values"
            )

    def __len__(self) -> int:
        return self.n_conditions

    def square(self) -> np.ndarray:
        """The symmetric (n_conditions, n_conditions) matrix, zero diagonal (NaN pairs stay NaN)."""
        n = self.n_conditions
        out = np.zeros((n, n))
        rows, cols = pair_indices(n)
        out[rows, cols] = self.dissimilarities
        out[cols, rows] = self.dissimilarities
        return out

    def take(self, rows: Any) -> RDM:
        """The RDM of conditions ``rows`` (int array, in that order, repeats allowed).

        Indexes the stored dissimilarities, nothing is recomputed. Two rows drawn from the same original
        condition get NaN, not 0: a zero there is trivially predicted by any model, so comparisons ignore
        such pairs (as rsatoolbox's ``subsample_pattern`` does when bootstrapping conditions).
        """
        picked = index_rows(rows, self.n_conditions)
        index, repeated = take_index(self.n_conditions, picked)
        values = self.dissimilarities[index]
        values[repeated] = np.nan
        return RDM(values, len(picked), self.name)

    @classmethod
    def from_condensed(cls, vector: Any, name: str = "") -> RDM:
        """An RDM from a condensed vector of n(n-1)/2 finite dissimilarities (scipy ``squareform`` order)."""
        a = _as_real_array(vector, name or "RDM")
        if a.ndim != 1:
            raise NeurometryError(
                f"{_label(name)} has shape {a.shape}; a condensed RDM is 1-D with n(n-1)/2 values"
            )
        n = n_conditions_from_pairs(len(a))
        if n is None:
            raise NeurometryError(
                f"{_label(name)} has {len(a)} values, which is not n(n-1)/2 for any n; give the strict upper "
                "triangle of the RDM (scipy squareform order)"
            )
        _check_rdm_values(a, n, name)
        return cls(a, n, name)

    @classmethod
    def from_square(cls, matrix: Any, name: str = "") -> RDM:
        """An RDM from a square symmetric matrix with zero diagonal and finite entries."""
        a = _as_real_array(matrix, name or "RDM")
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise NeurometryError(f"{_label(name)} has shape {a.shape}; a square RDM is (n, n)")
        _check_rdm_values(a, len(a), name)
        scale = max(1.0, float(np.abs(a).max()))
        diagonal = np.abs(np.diagonal(a))
        if diagonal.max() > _SQUARE_TOL * scale:
            i = int(diagonal.argmax())
            raise NeurometryError(
                f"{_label(name)} has diagonal entry [{i}, {i}] = {a[i, i]:g}; an RDM has zero dissimilarity "
                "between a condition and itself"
            )
        asymmetry = np.abs(a - a.T)
        if asymmetry.max() > _SQUARE_TOL * scale:
            i, j = np.unravel_index(int(asymmetry.argmax()), a.shape)
            raise NeurometryError(
                f"{_label(name)} is not symmetric: [{i}, {j}] = {a[i, j]:g} but [{j}, {i}] = {a[j, i]:g}; "
                "give a symmetric dissimilarity matrix"
            )
        rows, cols = pair_indices(len(a))
        # average the two halves: exact for symmetric input, and the fair choice for rounding-level asymmetry
        return cls((a[rows, cols] + a[cols, rows]) / 2, len(a), name)


def _label(name: str) -> str:
    return f"RDM {name!r}" if name else "the RDM"


def _as_real_array(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "fiub":
        raise NeurometryError(f"{name} must be real numbers, got dtype {a.dtype}")
    return a.astype(np.float64, copy=False)


def _check_rdm_values(a: np.ndarray, n: int, name: str) -> None:
    if n < MIN_CONDITIONS:
        raise NeurometryError(
            f"{_label(name)} has {n} conditions; RSA needs at least {MIN_CONDITIONS} (two pairs to compare)"
        )
    if not np.isfinite(a).all():
        where = np.argwhere(~np.isfinite(a))[0].tolist()
        raise NeurometryError(f"{_label(name)} has NaN or Inf at {where}; give finite dissimilarities")


@functools.lru_cache(maxsize=2)
def pair_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the condensed pairs of n conditions, read-only (``np.triu_indices(n, 1)``)."""
    # cached: permutation tests and bootstraps take() the same size of RDM many times
    rows, cols = np.triu_indices(n, 1)
    rows.flags.writeable = False
    cols.flags.writeable = False
    return rows, cols


def index_rows(rows: Any, n: int) -> np.ndarray:
    """``rows`` as a validated int64 index array into n conditions."""
    r = np.asarray(rows)
    if r.ndim != 1 or (r.size and r.dtype.kind not in "iu"):
        raise NeurometryError(f"rows must be a 1-D integer array, got shape {r.shape} dtype {r.dtype}")
    r = r.astype(np.int64, copy=False)
    if r.size and (r.min() < 0 or r.max() >= n):
        raise NeurometryError(f"rows must lie in [0, {n}); got {int(r.min())}..{int(r.max())}")
    return r


def take_index(n: int, rows: Any) -> tuple[np.ndarray, np.ndarray]:
    """Condensed positions of the pairs of ``rows`` in an n-condition RDM, and which pairs repeat a row.

    Returns ``(index, repeated)``: the new RDM's pair k is the old pair ``index[k]`` (meaningless where
    ``repeated[k]``, the two rows being one original condition).
    """
    r = index_rows(rows, n)
    first, second = pair_indices(len(r))
    a, b = r[first], r[second]
    low, high = np.minimum(a, b), np.maximum(a, b)
    repeated = low == high
    # position of pair (low, high), low < high, in the condensed vector
    index = n * low - low * (low + 1) // 2 + high - low - 1
    index[repeated] = 0
    return index, repeated


# ---------------------------------------------------------------------------------------------------
# computing RDMs


def compute_rdm(
    x: Any,
    method: str = "correlation",
    *,
    noise: Any = None,
    shrinkage: str | float | None = None,
    partitions: Any = None,
    name: str = "",
    device: torch.device | None = None,
) -> RDM:
    """The RDM of the rows of ``x``, built from Gram matrices (float64 matmuls, in row blocks).

    Args:
        x: activations (n_conditions, n_features) for every method but ``crossnobis``. For
            ``crossnobis``: repeated measurements (n_partitions, n_conditions, n_features), or
            (n_partitions * n_conditions, n_features) with ``partitions`` labelling each row's partition
            (each partition holds one row per condition, conditions in the same order in every partition).
        method: ``correlation`` (1 - Pearson r), ``cosine`` (1 - cosine similarity), ``euclidean``
            (squared Euclidean distance / n_features, rsatoolbox's convention), ``sqeuclidean`` (plain
            squared Euclidean distance, scipy's), ``mahalanobis`` ((x_i - x_j)' P (x_i - x_j) / n_features,
            rsatoolbox's convention) or ``crossnobis`` (the same, cross-validated across partitions).
        noise: ``mahalanobis`` / ``crossnobis`` only: the noise precision matrix P (n_features,
            n_features), the inverse of the noise covariance, as rsatoolbox's ``noise=``; build one from
            residuals with :func:`noise_precision`.
        shrinkage: ``mahalanobis`` / ``crossnobis`` only, when ``noise`` is not given: estimate P from the
            data, shrinking the covariance as in :func:`noise_precision` (``"diag"``, ``"eye"`` or a float
            in [0, 1]). ``mahalanobis`` estimates it from the rows of ``x`` (centred across conditions, the
            classical Mahalanobis distance, as scipy's ``pdist(x, "mahalanobis")``), default ``"diag"``;
            features constant across the rows are left out of P (they add nothing to any distance).
            ``crossnobis`` estimates it from the residuals around each condition's mean over partitions;
            with neither ``noise`` nor ``shrinkage`` it uses P = identity (rsatoolbox's default).
        partitions: ``crossnobis`` with 2-D ``x`` only: (n_rows,) partition label of each row.
        name: label stored in the RDM.
        device: a ``torch.device`` for the Gram products and the dissimilarities made from them (float64,
            row blocks, each block's pairs brought back as it is done); the rows are centred, scaled and
            (mahalanobis) whitened on the CPU first, as without it. None: NumPy on the CPU.

    ``crossnobis``: for each partition k, the difference vectors of partition k are paired with those of
    the mean of the other partitions (leave one partition out) and the products averaged over k, as
    rsatoolbox's ``calc_rdm_crossnobis``. Noise is independent across partitions, so the expected value is
    the true squared Mahalanobis distance of the condition means / n_features: unbiased, about 0 on
    pure noise, and it can be negative. Walther et al. (2016), NeuroImage 137.

    Returns:
        an :class:`RDM` with n_conditions(n_conditions - 1)/2 float64 dissimilarities.
    """
    if method not in RDM_METHODS:
        raise NeurometryError(
            f"unknown RDM method {method!r}{did_you_mean(method, RDM_METHODS)}; "
            f"methods: {', '.join(RDM_METHODS)}"
        )
    if method not in ("mahalanobis", "crossnobis") and (noise is not None or shrinkage is not None):
        raise NeurometryError(f"noise= and shrinkage= apply to mahalanobis and crossnobis, not {method}")
    if noise is not None and shrinkage is not None:
        raise NeurometryError("give either noise= (a precision matrix) or shrinkage= (estimate it), not both")
    if partitions is not None and method != "crossnobis":
        raise NeurometryError(f"partitions= applies to crossnobis only, not {method}")
    if method == "crossnobis":
        return _crossnobis(x, noise, shrinkage, partitions, name, device)

    label = name or "x"
    rows = as_rows(x, label, min_rows=MIN_CONDITIONS)
    n, d = rows.shape
    if method in ("correlation", "cosine") and (n - 1) // 2 <= d and device is None:
        values = _few_conditions_rdm(rows, method)
        if values is not None:
            return RDM(values, n, name)
    if method in ("correlation", "cosine"):
        squares = np.einsum("ij,ij->i", rows, rows) if method == "cosine" else None
        if method == "correlation":
            # row means as a matrix-vector product: several times faster than a reduction over axis 1
            means = rows @ np.full(d, 1.0 / d)
            unit = rows - means[:, None]
            centred_squares = np.einsum("ij,ij->i", unit, unit)
            squares = centred_squares + d * means**2  # ||x||^2 = ||x - m||^2 + d m^2: no second pass
        else:
            unit = rows.copy()
            centred_squares = squares
        norms = np.sqrt(centred_squares)
        # an exactly constant row (zero row for cosine) has no direction: the distance is undefined.
        # Centring a constant row can leave rounding noise, so rows with a tiny norm get an exact test.
        for i in np.flatnonzero(norms <= 1e-8 * np.sqrt(squares)):
            if np.ptp(rows[i]) == 0 if method == "correlation" else not rows[i].any():
                what = "constant" if method == "correlation" else "all zeros"
                raise NeurometryError(
                    f"{label} row {i} is {what}, so its {method} distance is undefined; remove that condition or "
                    "use method='euclidean'"
                )
        unit *= (1.0 / norms)[:, None]
        if device is not None:
            return RDM(_device_condensed(unit, unit, device), n, name)
        values = _blocked_condensed(unit, unit, lambda gram, lo, hi: np.subtract(1.0, gram, out=gram), elementwise=True)
        return RDM(values, n, name)

    # distances are translation invariant: centring the features first keeps the Gram entries small,
    # which makes |a|^2 + |b|^2 - 2ab lose fewer digits to cancellation
    centred = rows - rows.mean(axis=0)
    if method in ("euclidean", "sqeuclidean"):
        left = centred
        scale = 1.0 / d if method == "euclidean" else 1.0
    else:  # mahalanobis
        if noise is not None:
            precision = _check_precision(noise, d)
            left = centred @ precision
        else:
            varying = np.ptp(centred, axis=0) > 0
            if not varying.any():
                raise NeurometryError("every feature of x is constant across conditions; all distances are 0")
            kept = np.ascontiguousarray(centred[:, varying])
            precision = noise_precision(kept, "diag" if shrinkage is None else shrinkage)
            left = np.zeros_like(centred)
            left[:, varying] = kept @ precision
        scale = 1.0 / d
    norms = np.einsum("ij,ij->i", left, centred)
    if device is not None:
        return RDM(_device_condensed(left, centred, device, norms, scale, clip=True), n, name)

    def finish(gram: np.ndarray, lo: int, hi: int) -> np.ndarray:
        squared = norms[lo:hi, None] + norms[None, lo:] - 2.0 * gram
        # a positive (semi)definite form: anything below 0 is rounding
        np.maximum(squared, 0.0, out=squared)
        return squared * scale

    return RDM(_blocked_condensed(left, centred, finish), n, name)


_MAX_MEAN_TO_SPREAD = 100.0
"""The few-conditions correlation path centres the Gram matrix, not the rows: it is used while every
row's d * mean^2 / centred norm^2 stays below this, so the cancellation costs at most ~2 digits."""


def _few_conditions_rdm(rows: np.ndarray, method: str) -> np.ndarray | None:
    """Correlation or cosine RDM from the Gram matrix of the raw rows, normalised pair by pair.

    With fewer pairs than row entries ((n - 1) / 2 <= d) scaling the n(n-1)/2 pairs is cheaper than
    centring and scaling the n x d rows (what dominates at ~100 conditions):
    r_ij = (g_ij - d m_i m_j) / sqrt(c_i c_j), c_i = g_ii - d m_i^2. Returns None (the caller then centres
    the rows) when a row has (almost) no spread or its mean is large next to its spread.
    """
    n, d = rows.shape
    gram = scipy.linalg.blas.dsyrk(1.0, rows.T, trans=1, lower=1).T
    squares = np.diagonal(gram)
    i, j = pair_indices(n)
    values = gram[: n - 1][_upper_mask(n)]
    if method == "correlation":
        means = rows @ np.full(d, 1.0 / d)
        mean_part = d * means * means
        spread = squares - mean_part
        if not (spread > mean_part / _MAX_MEAN_TO_SPREAD).all() or not (spread > 1e-16 * squares).all():
            return None
        values -= (d * means)[i] * means[j]
    else:
        spread = squares
        if not (spread > 0).all():
            return None
    inverse = 1.0 / np.sqrt(spread)
    values *= inverse[i]
    values *= inverse[j]
    return np.subtract(1.0, values, out=values)


@functools.lru_cache(maxsize=2)
def _upper_mask(n: int) -> np.ndarray:
    """(n - 1, n) bool, True right of the diagonal: the condensed pairs of a square matrix's first n - 1 rows."""
    mask = np.triu(np.ones((n - 1, n), dtype=bool), 1)
    mask.flags.writeable = False
    return mask


def _blocked_condensed(
    left: np.ndarray,
    right: np.ndarray,
    finish: Callable[[np.ndarray, int, int], np.ndarray],
    elementwise: bool = False,
) -> np.ndarray:
    """Condensed upper triangle of ``finish(left @ right.T)``.

    ``finish(gram_block, lo, hi)`` turns a block of inner products of rows lo:hi with rows lo:
    (shape (hi - lo, n - lo)) into dissimilarities; only the part right of the diagonal is kept.
    A symmetric Gram (``left is right``) of up to _SYRK_MAX_N rows is one BLAS syrk call (half the
    flops of a general product); otherwise blocks of rows are multiplied against the columns to their
    right only, which also bounds the memory for large n. ``elementwise``: ``finish`` acts on each entry
    alone (it may then work in place on the condensed values, skipping the lower triangle).
    """
    n = len(left)
    out = np.empty(n_pairs(n))
    if left is right and n <= _SYRK_MAX_N:
        # syrk of left' (a free transposed view of the C-ordered rows) fills the lower triangle of a
        # Fortran-ordered result, i.e. the upper triangle of its C-ordered transpose
        gram = scipy.linalg.blas.dsyrk(1.0, left.T, trans=1, lower=1).T
        if elementwise:
            return finish(gram[: n - 1][_upper_mask(n)], 0, n - 1)
        out[:] = finish(gram[: n - 1], 0, n - 1)[_upper_mask(n)]
        return out
    # a contiguous transposed copy: numpy's OpenBLAS crashes on X @ X.T views for large n on this machine
    right_t = np.ascontiguousarray(right.T)
    block_rows = max(64, _BLOCK_ELEMENTS // n)
    position = 0
    for lo in range(0, n - 1, block_rows):
        hi = min(lo + block_rows, n - 1)
        values = finish(left[lo:hi] @ right_t[:, lo:], lo, hi)
        # row r of the block (condition lo + r) keeps columns > r, i.e. conditions > lo + r
        keep = np.arange(n - lo)[None, :] > np.arange(hi - lo)[:, None]
        chunk = values[keep]
        out[position : position + len(chunk)] = chunk
        position += len(chunk)
    return out


def _device_condensed(
    left: np.ndarray,
    right: np.ndarray,
    device: torch.device,
    diagonal: np.ndarray | None = None,
    scale: float = 1.0,
    clip: bool = False,
) -> np.ndarray:
    """Condensed upper triangle of the dissimilarities from G = left @ right.T (both (n, f)), on ``device``.

    Without ``diagonal`` the rows are unit vectors and the dissimilarity is 1 - g_ij (correlation,
    cosine); with it, (diagonal_i + diagonal_j - 2 g_ij) * scale, clipped at 0 when ``clip`` (a
    positive semidefinite form, so below 0 is rounding; crossnobis keeps its negative values). Blocks of
    rows against the columns to their right, as :func:`_blocked_condensed`; only each block's pairs come back.
    """
    n = len(left)
    out = np.empty(n_pairs(n))
    lhs = as_tensor(left).to(device, non_blocking=True)
    rhs = lhs if right is left else as_tensor(right).to(device, non_blocking=True)
    diag = None if diagonal is None else as_tensor(diagonal).to(device, non_blocking=True)
    block_rows = max(64, _DEVICE_BLOCK_ELEMENTS // n)
    position = 0
    for lo in range(0, n - 1, block_rows):
        hi = min(lo + block_rows, n - 1)
        values = lhs[lo:hi] @ rhs[lo:].T
        if diag is None:
            values.neg_().add_(1.0)
        else:
            values.mul_(-2.0).add_(diag[lo:hi, None]).add_(diag[None, lo:])
            if clip:
                values.clamp_(min=0.0)
            values.mul_(scale)
        # row r of the block (condition lo + r) keeps columns > r, read row by row: condensed order
        columns = torch.arange(n - lo, device=device)
        keep = columns[None, :] > torch.arange(hi - lo, device=device)[:, None]
        chunk = values[keep].cpu().numpy()
        out[position : position + len(chunk)] = chunk
        position += len(chunk)
    return out


def _crossnobis(
    x: Any, noise: Any, shrinkage: str | float | None, partitions: Any, name: str, device: torch.device | None
) -> RDM:
    data = _partitioned(x, partitions)
    k, n, d = data.shape
    # distances are translation invariant (the cross terms cancel), so centre for accuracy
    data = data - data.mean(axis=(0, 1))
    if noise is not None:
        precision = _check_precision(noise, d)
    elif shrinkage is not None:
        residuals = (data - data.mean(axis=0)).reshape(k * n, d)
        precision = noise_precision(residuals, shrinkage, dof=(k - 1) * n)
    else:
        precision = None
    total = data.sum(axis=0)
    # sum over ordered pairs of different partitions k != l of x_k P x_l' is S P S' - sum_k x_k P x_k'
    # (S the sum over partitions); one matmul of stacked features gives it: [S, x_1..x_K] against
    # [S P, -x_1 P .. -x_K P]. Averaged over the K(K-1) ordered pairs it is the mean over folds of
    # (mean of the other partitions) P (this partition)', the leave-one-out cross product.
    right = np.concatenate([total, *data], axis=1)
    weighted = [total, *(-part for part in data)]
    if precision is not None:
        weighted = [w @ precision for w in weighted]
    left = np.concatenate(weighted, axis=1)
    diagonal = np.einsum("ij,ij->i", left, right)
    scale = 1.0 / (k * (k - 1) * d)
    if device is not None:
        return RDM(_device_condensed(left, right, device, diagonal, scale), n, name)

    def finish(gram: np.ndarray, lo: int, hi: int) -> np.ndarray:
        # no clipping at 0: crossnobis estimates are negative when the true distance is small
        return (diagonal[lo:hi, None] + diagonal[None, lo:] - 2.0 * gram) * scale

    return RDM(_blocked_condensed(left, right, finish), n, name)


def _partitioned(x: Any, partitions: Any) -> np.ndarray:
    """Crossnobis input as (n_partitions, n_conditions, n_features) float64."""
    a = np.asarray(x)
    if a.dtype.kind not in "fiub":
        raise NeurometryError(f"x must be real numbers, got dtype {a.dtype}")
    if partitions is None:
        if a.ndim != 3:
            raise NeurometryError(
                f"crossnobis needs repeated measurements: x shaped (n_partitions, n_conditions, n_features), "
                f"or 2-D x with partitions= labels; got shape {a.shape}"
            )
        data = a.astype(np.float64)
    else:
        labels = np.asarray(partitions)
        if a.ndim != 2 or labels.shape != (len(a),):
            raise NeurometryError(
                f"with partitions=, x must be (n_rows, n_features) and partitions (n_rows,); got {a.shape} "
                f"and {labels.shape}"
            )
        names, counts = np.unique(labels, return_counts=True)
        if (counts != counts[0]).any():
            raise NeurometryError(
                f"partition {names[counts != counts[0]][0]!r} has {counts[counts != counts[0]][0]} rows but "
                f"{names[0]!r} has {counts[0]}; each partition needs one row per condition, in the same order"
            )
        # stable sort keeps each partition's rows in their given (condition) order
        order = np.argsort(labels, kind="stable")
        data = a[order].astype(np.float64).reshape(len(names), counts[0], a.shape[1])
    if len(data) < 2:
        raise NeurometryError(f"crossnobis needs at least 2 partitions to cross-validate, got {len(data)}")
    if data.shape[1] < MIN_CONDITIONS or data.shape[2] == 0:
        raise NeurometryError(
            f"crossnobis data has {data.shape[1]} conditions and {data.shape[2]} features; need at least "
            f"{MIN_CONDITIONS} conditions and 1 feature"
        )
    if not np.isfinite(data).all():
        raise NeurometryError("x contains NaN or Inf; remove or fix those measurements")
    return np.ascontiguousarray(data)


def _check_precision(noise: Any, d: int) -> np.ndarray:
    p = _as_real_array(noise, "noise")
    if p.shape != (d, d):
        raise NeurometryError(
            f"noise must be a ({d}, {d}) precision matrix (inverse noise covariance over the {d} features), "
            f"got shape {p.shape}"
        )
    if not np.isfinite(p).all():
        raise NeurometryError("noise precision matrix contains NaN or Inf")
    if np.abs(p - p.T).max() > _SQUARE_TOL * max(1.0, float(np.abs(p).max())):
        raise NeurometryError(
            "noise precision matrix is not symmetric; give the inverse of a covariance matrix"
        )
    return p


def noise_covariance(residuals: Any, shrinkage: str | float = "diag", dof: int | None = None) -> np.ndarray:
    """Shrinkage estimate of the noise covariance (n_features, n_features) from residuals (n_rows, n_features).

    Residuals are centred per feature first; ``dof`` defaults to n_rows - 1 (pass n_rows - n_regressors
    for GLM residuals). ``shrinkage``, matching rsatoolbox's ``cov_from_residuals`` methods:

    - ``"diag"``: shrink the off-diagonal covariances towards 0 (the target is the diagonal covariance),
      with the intensity estimated from the data: Schäfer & Strimmer (2005), Stat. Appl. Genet. Mol. Biol.
      4(1), target D; computed exactly as rsatoolbox's ``shrinkage_diag``.
    - ``"eye"``: shrink towards a multiple of the identity with Ledoit & Wolf (2004), J. Multivar. Anal.
      88, 365-411; as rsatoolbox's ``shrinkage_eye``.
    - a float lambda in [0, 1]: off-diagonal covariances times (1 - lambda); 0 is the sample covariance
      (rsatoolbox ``full``), 1 the diagonal one (rsatoolbox ``diag``).
    """
    x = as_rows(residuals, "residuals", min_rows=2)
    r, d = x.shape
    x = x - x.mean(axis=0)
    dof = r - 1 if dof is None else int(dof)
    if dof < 1:
        raise NeurometryError(f"dof must be at least 1, got {dof}")
    cross = x.T @ np.ascontiguousarray(x)  # sum over rows of x_i x_i', (d, d)
    if isinstance(shrinkage, str):
        if shrinkage == "eye":
            return _ledoit_wolf_eye(x, cross, dof)
        if shrinkage != "diag":
            raise NeurometryError(
                f"unknown shrinkage {shrinkage!r}{did_you_mean(shrinkage, ['diag', 'eye'])}; "
                "use 'diag', 'eye' or a number in [0, 1]"
            )
        variance = np.diagonal(cross) / dof
        _check_variances(variance)
        lam = _schafer_strimmer_diag(x, cross, variance, dof)
    else:
        lam = float(shrinkage)
        if not 0.0 <= lam <= 1.0:
            raise NeurometryError(f"shrinkage must be 'diag', 'eye' or a number in [0, 1], got {shrinkage!r}")
    covariance = cross / dof
    off_diagonal = ~np.eye(d, dtype=bool)
    covariance[off_diagonal] *= 1.0 - lam
    return covariance


def _check_variances(variance: np.ndarray) -> None:
    if (variance <= 0).any():
        j = int(np.flatnonzero(variance <= 0)[0])
        raise NeurometryError(
            f"feature {j} has zero noise variance, so its precision is infinite; drop constant features"
        )


def _schafer_strimmer_diag(x: np.ndarray, cross: np.ndarray, variance: np.ndarray, dof: int) -> float:
    """Shrinkage intensity towards the diagonal: sum of Var(r_jk) over sum of r_jk^2, off-diagonal.

    Computed as rsatoolbox's ``_covariance_diag`` does (its normalisations, which differ slightly from
    the paper's unbiased variance of r_jk), so precisions agree with rsatoolbox's ``shrinkage_diag``.
    """
    r = len(x)
    std = np.sqrt(variance)
    squares = x * x
    square_cross = squares.T @ np.ascontiguousarray(squares)  # sum over rows of x_ij^2 x_ik^2
    corr_mean = cross / np.outer(std, std) / (r - 1)
    corr_sq_mean = square_cross / np.outer(variance, variance) / (r - 1)
    var_hat = r / dof**2 * (corr_sq_mean - corr_mean**2)
    off_diagonal = ~np.eye(len(cross), dtype=bool)
    denominator = np.sum(corr_mean[off_diagonal] ** 2)
    if denominator == 0:
        return 1.0
    return float(np.clip(np.sum(var_hat[off_diagonal]) / denominator, 0.0, 1.0))


def _ledoit_wolf_eye(x: np.ndarray, cross: np.ndarray, dof: int) -> np.ndarray:
    """Ledoit & Wolf (2004) shrinkage towards m * I, then rescaled to ``dof`` (rsatoolbox's ``shrinkage_eye``)."""
    r, d = x.shape
    sample = cross / r
    squares = x * x
    # b^2: average squared deviation of the per-row outer products x_i x_i' from their mean, over r
    b2 = float(np.sum((squares.T @ np.ascontiguousarray(squares)) / r - sample * sample) / r)
    m = float(np.trace(sample)) / d
    target = m * np.eye(d)
    d2 = float(np.sum((sample - target) ** 2))
    if d2 == 0:
        shrunk = sample
    else:
        b2 = min(d2, b2)
        shrunk = b2 / d2 * target + (d2 - b2) / d2 * sample
    return shrunk * r / dof


def noise_precision(residuals: Any, shrinkage: str | float = "diag", dof: int | None = None) -> np.ndarray:
    """Inverse of :func:`noise_covariance`: the ``noise=`` precision for mahalanobis / crossnobis RDMs.

    The same estimate as rsatoolbox's ``prec_from_residuals(residuals, dof, method)`` with method
    ``shrinkage_diag`` ("diag"), ``shrinkage_eye`` ("eye"), ``full`` (0.0) or ``diag`` (1.0).
    """
    covariance = noise_covariance(residuals, shrinkage, dof)
    try:
        factor = scipy.linalg.cho_factor(covariance)
    except np.linalg.LinAlgError:
        raise NeurometryError(
            f"the noise covariance ({len(covariance)} features) is singular: fewer residual rows than features "
            "or collinear features; use shrinkage='diag' or 'eye' (or a shrinkage above 0)"
        ) from None
    precision = scipy.linalg.cho_solve(factor, np.eye(len(covariance)))
    return (precision + precision.T) / 2


# ---------------------------------------------------------------------------------------------------
# loading RDMs


def is_rdm_array(a: Any) -> bool:
    """True when ``a`` looks like RDMs rather than activations.

    1-D of length n(n-1)/2 (n >= 3), a square symmetric matrix with zero diagonal, or a 3-D stack
    (subjects, n, n) of those. A 2-D (subjects, pairs) stack is not recognised here (it reads as
    activations); :func:`load_rdms` accepts it.
    """
    a = np.asarray(a)
    if a.dtype.kind not in "fiu" or a.size == 0:
        return False
    if a.ndim == 1:
        n = n_conditions_from_pairs(len(a))
        return n is not None and n >= MIN_CONDITIONS
    if a.ndim in (2, 3) and a.shape[-1] == a.shape[-2] and a.shape[-1] >= MIN_CONDITIONS:
        m = a.astype(np.float64, copy=False)
        if not np.isfinite(m).all():
            return False
        scale = max(1.0, float(np.abs(m).max()))
        diagonal = np.diagonal(m, axis1=-2, axis2=-1)
        return bool(
            np.abs(diagonal).max() <= _SQUARE_TOL * scale
            and np.abs(m - np.swapaxes(m, -1, -2)).max() <= _SQUARE_TOL * scale
        )
    return False


def load_rdms(path: str | Path, key: str | None = None) -> dict[str, RDM]:
    """RDMs from a ``.npy`` or ``.mat`` file, by name.

    ``.npy``: a condensed RDM (1-D), a square one (2-D symmetric, zero diagonal), or a stack: 3-D
    (subjects, n, n) or 2-D (subjects, n(n-1)/2) when not square. One RDM is named after the file stem,
    a stack ``stem_0``, ``stem_1``, ...

    ``.mat`` (MATLAB v7 or earlier, read with ``scipy.io.loadmat``): ``key`` names the variable (it may be
    left out when the file has one). A numeric variable follows the ``.npy`` rules; a struct array whose
    elements have an ``RDM`` field (square or condensed; MATLAB's ``squareform`` order is scipy's) gives one
    RDM per element, named by its ``name`` field (rsatoolbox / RSA-toolbox layout, e.g. Kriegeskorte
    et al. 2008's ``RDMs_mIT_hIT_fig1``).
    """
    path = Path(path)
    if not path.is_file():
        raise NeurometryError(f"RDM file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _rdms_from_array(read_npy(path, fix="save the RDMs with numpy.save"), path.stem)
    if suffix == ".mat":
        return _load_mat(path, key)
    raise NeurometryError(
        f"unsupported RDM file type {suffix or '(none)'!r} for {str(path)!r}; use .npy or .mat"
    )


def _rdms_from_array(array: np.ndarray, stem: str) -> dict[str, RDM]:
    a = _as_real_array(array, stem)
    if a.ndim == 1:
        return {stem: RDM.from_condensed(a, stem)}
    if a.ndim == 2 and a.shape[0] == a.shape[1]:
        return {stem: RDM.from_square(a, stem)}
    if a.ndim == 2:
        if n_conditions_from_pairs(a.shape[1]) is None:
            raise NeurometryError(
                f"{stem} has shape {a.shape}: neither a square RDM nor a stack of condensed RDMs "
                "(subjects, n(n-1)/2)"
            )
        return {f"{stem}_{i}": RDM.from_condensed(row, f"{stem}_{i}") for i, row in enumerate(a)}
    if a.ndim == 3:
        if a.shape[1] != a.shape[2]:
            raise NeurometryError(f"{stem} has shape {a.shape}; a stack of RDMs is (subjects, n, n)")
        return {f"{stem}_{i}": RDM.from_square(m, f"{stem}_{i}") for i, m in enumerate(a)}
    raise NeurometryError(
        f"{stem} has shape {a.shape}; RDMs are 1-D condensed, (n, n), (subjects, n, n) or (subjects, pairs)"
    )


def _load_mat(path: Path, key: str | None) -> dict[str, RDM]:
    import scipy.io

    try:
        contents = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True)
    except NotImplementedError:
        raise NeurometryError(
            f"{str(path)!r} is a MATLAB v7.3 (HDF5) file; save it with -v7 or convert the RDMs to .npy"
        ) from None
    except (ValueError, OSError) as e:
        raise NeurometryError(f"cannot read {str(path)!r} as a .mat file: {e}") from None
    variables = sorted(k for k in contents if not k.startswith("__"))
    if key is None:
        if len(variables) != 1:
            raise NeurometryError(
                f"{path.name} holds {len(variables)} variables; name one with key= in Python or --rdm-key on "
                f"the command line (the one holding the RDMs): {', '.join(variables)}"
            )
        key = variables[0]
    if key not in variables:
        raise NeurometryError(
            f"{path.name} has no variable {key!r}{did_you_mean(key, variables)}; its variables: "
            f"{', '.join(variables)}"
        )
    value = contents[key]
    if isinstance(value, scipy.io.matlab.mat_struct):
        value = np.array([value], dtype=object)
    if isinstance(value, np.ndarray) and value.dtype == object:
        return _rdms_from_structs(value.reshape(-1), key, path.name)
    if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
        return _rdms_from_array(value, key)
    raise NeurometryError(
        f"variable {key!r} in {path.name} is {type(value).__name__}; expected a numeric RDM array or a struct "
        "array with an RDM field"
    )


def _rdms_from_structs(elements: np.ndarray, key: str, file_name: str) -> dict[str, RDM]:
    out: dict[str, RDM] = {}
    for i, element in enumerate(elements):
        fields = list(getattr(element, "_fieldnames", []))
        if "RDM" not in fields:
            raise NeurometryError(
                f"element {i} of {key!r} in {file_name} has no RDM field (fields: {', '.join(fields) or 'none'})"
            )
        label = getattr(element, "name", None)
        name = label if isinstance(label, str) and label else f"{key}_{i}"
        if name in out:  # keep every RDM even when two share a name
            name = f"{name}_{i}"
        matrix = np.asarray(element.RDM)
        if matrix.ndim == 1:
            out[name] = RDM.from_condensed(matrix, name)
        else:
            out[name] = RDM.from_square(matrix, name)
    return out
