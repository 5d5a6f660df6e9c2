"""Centred kernel alignment (CKA) between two representations of the same stimuli.

CKA (Kornblith, Norouzi, Lee & Hinton 2019, "Similarity of neural network representations revisited")
is the normalised Hilbert-Schmidt independence criterion of the two kernel (Gram) matrices K and L:

    CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))

with three HSIC estimators:

- ``biased`` (Gretton et al. 2005): tr(K H L H) / (n-1)^2, H the centring matrix.
- ``unbiased`` (Song et al. 2012, eq. 5): with K~, L~ the Gram matrices with zeroed diagonals,
  [tr(K~ L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)); needs n >= 4.
- ``minibatch`` (Nguyen, Raghu & Kornblith 2021): the unbiased HSIC averaged over minibatches of a
  seeded shuffle of the rows, CKA = mean HSIC(K,L) / sqrt(mean HSIC(K,K) mean HSIC(L,L)).

Kernels: ``linear`` (K = X X') and ``rbf`` (K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2)) with
sigma = bandwidth * median pairwise distance of that representation; the median is taken over all n^2
entries of the distance matrix, zero diagonal included, exactly as in Kornblith et al.'s code).

How it is computed. Every estimator only needs, per representation, the double-centred kernel matrix
Kc = H K H through <Kc, Lc>, diag(Kc) and tr(Kc): the unbiased estimator ignores additive terms
a_i + b_j of the kernel, so it may be evaluated on Kc, where 1'K~c = -diag(Kc)' and the Song formula
becomes [<Kc,Lc> - n/(n-2) diag(Kc).diag(Lc) + tr(Kc) tr(Lc)/((n-1)(n-2))] / (n(n-3)). Centring first
also avoids the cancellation of large uncentred sums. Each representation is held in one of three forms:

- features (linear kernel, d <= n): the centred rows Xc; <Kc, Lc> = ||Xc' Yc||_F^2, never n x n.
- stored Gram (rbf, or linear with d > n; n <= 8192): the n x n matrix Kc, built in 256 x 256
  tiles of its upper triangle.
- streamed Gram (the same, n > 8192): the rows and the kernel's row means; Kc is rebuilt tile by tile whenever
  it is needed, so memory stays O(n d) at the price of recomputing the kernel in ``score``.

For ``minibatch``, ``prepare`` keeps the rows, the batches and each batch's HSIC(K, K) (plus each
batch's Gram where d > batch rows); ``score`` computes each batch's cross term.

:class:`LinearCKAAccumulator` computes linear CKA of two representations streamed in row chunks with
O(d^2) memory, for store points larger than memory.

On a device (``device=``: a ``torch.device``; None, the default, is the NumPy path above), the same
float64 quantities are computed with torch there and only scalars and length-n diagonals come back:
features stay features (<Kc, Lc> = ||Xc' Yc||_F^2), a stored Gram is built whole in one product and
centred there, and a features side meets a Gram side as tr(Xc' Lc Xc). The rbf median is the exact
median of the whole distance matrix, taken there too. Representations whose Gram would be streamed
(n > 8192) stay on the CPU. ``LinearCKAAccumulator`` accumulates its sums there.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from neurometry.arrays import as_rows, check_same_rows
from neurometry.compare.registry import Metric, register
from neurometry.errors import NeurometryError, did_you_mean
from neurometry.linalg import as_tensor, cross_product

KERNELS = ("linear", "rbf")
ESTIMATORS = ("biased", "unbiased", "minibatch")
DEFAULTS: dict[str, Any] = {
    "kernel": "linear",
    "estimator": "biased",
    "bandwidth": 1.0,
    "batch_size": 1000,
    "seed": 0,
}
# fewest rows each estimator needs (unbiased: n(n-3) in the denominator)
_MIN_ROWS = {"biased": 2, "unbiased": 4, "minibatch": 4}

# A block of rows of a stored n x n matrix holds about this many float64 entries (32 MiB).
_BLOCK_ELEMENTS = 1 << 22
# Kernel matrices are computed in square tiles of this side (256^2 float64 = 512 KiB): small enough that
# each tile stays in cache while it is transformed and summed, since these passes are memory bound.
_TILE = 256
# Largest n for which a Gram matrix is kept in memory (8192^2 float64 = 512 MiB); above it, streamed.
_GRAM_STORE_MAX_ROWS = 8192
# Rows per block when the plain cka() streams in-memory arrays through LinearCKAAccumulator.
_STREAM_BLOCK_ROWS = 4096
# Up to this n the median distance is taken with np.median over the full n x n matrix.
_EXACT_MEDIAN_MAX_ROWS = 2048
# Pairs sampled to bracket the median before the exact selection pass (larger n).
_MEDIAN_SAMPLE = 200_000


# ----------------------------------------------------------------------------------------------------
# kernel matrices, built in tiles


def _row_blocks(n: int) -> Iterator[tuple[int, int]]:
    """(lo, hi) row ranges whose (hi - lo, n) blocks hold about _BLOCK_ELEMENTS entries."""
    step = max(1, _BLOCK_ELEMENTS // max(n, 1))
    for lo in range(0, n, step):
        yield lo, min(n, lo + step)


Tile = tuple[int, int, int, int]


def _upper_tiles(n: int) -> Iterator[tuple[Tile, float]]:
    """Square tiles (r0, r1, c0, c1) covering the upper triangle of a symmetric n x n matrix, each with
    its weight in a sum over the whole matrix: 1 on the diagonal, 2 above it (it stands for its mirror)."""
    for r0 in range(0, n, _TILE):
        r1 = min(n, r0 + _TILE)
        for c0 in range(r0, n, _TILE):
            yield (r0, r1, c0, min(n, c0 + _TILE)), (1.0 if c0 == r0 else 2.0)


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def _sq_distance_tile(x: np.ndarray, xt: np.ndarray, sq_norms: np.ndarray, tile: Tile) -> np.ndarray:
    """Squared Euclidean distances between rows r0:r1 and c0:c1 of x.

    ``xt`` is x transposed and C-contiguous: numpy's OpenBLAS crashes on x @ x.T at large n.
    """
    r0, r1, c0, c1 = tile
    d2 = x[r0:r1] @ xt[:, c0:c1]
    d2 *= -2.0
    d2 += sq_norms[r0:r1, None]
    d2 += sq_norms[None, c0:c1]
    # a_i + a_j - 2 x_i.x_j can round below zero; the diagonal is exactly zero
    np.maximum(d2, 0.0, out=d2)
    if r0 == c0:
        np.fill_diagonal(d2, 0.0)
    return d2


def _kernel_tile(
    x: np.ndarray, xt: np.ndarray, sq_norms: np.ndarray, kernel: str, gamma: float, tile: Tile
) -> np.ndarray:
    """Uncentred kernel K[r0:r1, c0:c1]; rbf is exp(-gamma d^2) with gamma = 1 / (2 sigma^2)."""
    if kernel == "linear":
        r0, r1, c0, c1 = tile
        return x[r0:r1] @ xt[:, c0:c1]
    k = _sq_distance_tile(x, xt, sq_norms, tile)
    k *= -gamma
    np.exp(k, out=k)
    return k


def _median_sq_distance(x: np.ndarray) -> float:
    """Median of the n x n squared distance matrix (zero diagonal included, as Kornblith et al.'s code).

    Small n: np.median of the whole matrix. Large n, without ever holding n x n: a random sample of
    pairs brackets the median, one pass over upper-triangle tiles counts the entries below the bracket
    and keeps those inside it (with multiplicity 2 above the diagonal tiles), and the exact order
    statistics are selected among the kept ones (the bracket is widened and the pass repeated in the
    rare case it missed).
    """
    n = len(x)
    xt = np.ascontiguousarray(x.T)
    sq = _sq_norms(x)
    if n <= _EXACT_MEDIAN_MAX_ROWS:
        full = x @ xt
        full *= -2.0
        full += sq[:, None]
        full += sq[None, :]
        np.maximum(full, 0.0, out=full)
        np.fill_diagonal(full, 0.0)
        return float(np.median(full))
    total = n * n
    # np.median's convention: the mean of the two middle order statistics when the count is even
    ranks = [total // 2 - 1, total // 2] if total % 2 == 0 else [total // 2]
    rng = np.random.default_rng(20190401)
    pair_i, pair_j = rng.integers(n, size=(2, _MEDIAN_SAMPLE))
    sample = np.concatenate(
        [_sq_norms(x[pair_i[s : s + 8192]] - x[pair_j[s : s + 8192]]) for s in range(0, _MEDIAN_SAMPLE, 8192)]
    )
    q_lo, q_hi = ranks[0] / total, ranks[-1] / total
    margin = 4.5 / math.sqrt(_MEDIAN_SAMPLE)
    while True:
        lo = -np.inf if q_lo - margin <= 0 else float(np.quantile(sample, q_lo - margin))
        hi = np.inf if q_hi + margin >= 1 else float(np.quantile(sample, q_hi + margin))
        below = 0
        values, weights = [], []
        for tile, weight in _upper_tiles(n):
            d2 = _sq_distance_tile(x, xt, sq, tile)
            below += int(weight) * int(np.count_nonzero(d2 < lo))
            inside = d2[(d2 >= lo) & (d2 <= hi)]
            values.append(inside)
            weights.append(np.full(len(inside), int(weight), dtype=np.int64))
        kept = np.concatenate(values)
        order = np.argsort(kept, kind="stable")
        kept = kept[order]
        counts = np.cumsum(np.concatenate(weights)[order])
        if below <= ranks[0] and len(counts) and below + counts[-1] > ranks[-1]:
            # the entry of rank r is the first kept value whose cumulative count exceeds r - below
            picked = [kept[np.searchsorted(counts, r - below, side="right")] for r in ranks]
            return float(np.mean(picked))
        margin *= 4


# ----------------------------------------------------------------------------------------------------
# one representation's centred kernel, in one of three forms


def _is_permutation(rows: np.ndarray, n: int) -> bool:
    """True when ``rows`` reorders all n stimuli (a permutation test), so centring and self terms hold."""
    return len(rows) == n and bool(np.array_equal(np.sort(rows), np.arange(n)))


class _FeatureKernel:
    """Linear kernel kept as centred features Xc (n, d): Kc = Xc Xc' is never formed whole."""

    centring_is_free = True

    def __init__(self, xc: np.ndarray) -> None:
        self.xc = xc
        self.n = len(xc)
        self.diag = _sq_norms(xc)
        self.trace = float(self.diag.sum())

    @classmethod
    def build(cls, x: np.ndarray) -> _FeatureKernel:
        return cls(x - x.mean(axis=0))

    @cached_property
    def kc_sq(self) -> float:
        """<Kc, Kc> = ||Xc' Xc||_F^2."""
        gram = cross_product(self.xc, self.xc)
        return float(np.vdot(gram, gram))

    @cached_property
    def _xct(self) -> np.ndarray:
        return np.ascontiguousarray(self.xc.T)

    def centred_tile(self, tile: Tile) -> np.ndarray:
        r0, r1, c0, c1 = tile
        return self.xc[r0:r1] @ self._xct[:, c0:c1]

    uncentred_tile = centred_tile

    def take(self, rows: np.ndarray) -> _FeatureKernel:
        if _is_permutation(rows, self.n):
            # a permutation keeps the column means (still centred) and ||Xc'Xc||
            return _carry_kc_sq(self, _FeatureKernel(self.xc[rows]))
        resampled = self.xc[rows]
        if not np.any(np.ptp(resampled, axis=0) > 0):
            raise NeurometryError(
                "the resampled stimuli all have the same response, so CKA is 0/0; resample again"
            )
        return _FeatureKernel.build(resampled)


class _StoredGram:
    """The double-centred kernel matrix Kc = H K H held in memory (n x n float64)."""

    centring_is_free = True

    def __init__(self, kc: np.ndarray) -> None:
        self.kc = kc
        self.n = len(kc)
        self.diag = np.ascontiguousarray(np.diagonal(kc))
        self.trace = float(self.diag.sum())

    @classmethod
    def build(cls, x: np.ndarray, kernel: str, gamma: float) -> _StoredGram:
        n = len(x)
        xc = x - x.mean(axis=0)  # translation changes neither Kc nor rbf distances, and it helps precision
        xt = np.ascontiguousarray(xc.T)
        sq = _sq_norms(xc)
        k = np.empty((n, n))
        for (r0, r1, c0, c1), _ in _upper_tiles(n):
            values = _kernel_tile(xc, xt, sq, kernel, gamma, (r0, r1, c0, c1))
            k[r0:r1, c0:c1] = values
            k[c0:c1, r0:r1] = values.T  # the kernel is symmetric: compute the upper triangle only
        _double_centre(k)
        return cls(k)

    @cached_property
    def kc_sq(self) -> float:
        return _stored_inner(self, self)

    def centred_tile(self, tile: Tile) -> np.ndarray:
        r0, r1, c0, c1 = tile
        return self.kc[r0:r1, c0:c1]

    uncentred_tile = centred_tile

    def take(self, rows: np.ndarray) -> _StoredGram:
        kc = self.kc[np.ix_(rows, rows)]
        if _is_permutation(rows, self.n):
            return _carry_kc_sq(self, _StoredGram(kc))
        # Rows drawn with repeats are no longer centred, so centre again. This is exact: Kc differs from
        # the raw K by terms a_i + a_j + c, which reindexing keeps of that form and centring removes
        # (diagonal and repeated pairs included), so H (Kc[rows, rows]) H = H (K[rows, rows]) H.
        _double_centre(kc)
        return _StoredGram(kc)


class _StreamedGram:
    """Kc kept implicit (rows, kernel, row means); its tiles are rebuilt whenever they are needed.

    ``shift`` is a constant taken off the kernel before summing (centring ignores it) so that the sums
    of K and K^2 do not carry a large constant part; ``row_means`` are those of K - shift.
    """

    centring_is_free = False

    def __init__(
        self, x: np.ndarray, kernel: str, gamma: float, shift: float, row_means: np.ndarray, kc_sq: float
    ) -> None:
        self.x = x
        self.xt = np.ascontiguousarray(x.T)
        self.sq = _sq_norms(x)
        self.kernel = kernel
        self.gamma = gamma
        self.n = len(x)
        self.shift = shift
        self.row_means = row_means
        self.grand_mean = float(row_means.mean())
        self.kc_sq = kc_sq
        raw_diag = self.sq if kernel == "linear" else np.ones(self.n)
        self.diag = raw_diag - shift - 2 * row_means + self.grand_mean
        self.trace = float(self.diag.sum())

    @classmethod
    def build(cls, x: np.ndarray, kernel: str, gamma: float) -> _StreamedGram:
        """One pass over the upper-triangle tiles: row sums and the sum of squares of K - shift, then
        ||H K H||^2 = ||K'||^2 - 2n ||m'||^2 + n^2 mean(m')^2 (K' = K - shift, m' its row means)."""
        xc = x - x.mean(axis=0)
        n = len(xc)
        xt = np.ascontiguousarray(xc.T)
        sq = _sq_norms(xc)
        row_sums = np.zeros(n)
        sum_sq = 0.0
        shift = None
        for (r0, r1, c0, c1), weight in _upper_tiles(n):
            values = _kernel_tile(xc, xt, sq, kernel, gamma, (r0, r1, c0, c1))
            if shift is None:
                shift = float(values.mean())
            values -= shift
            row_sums[r0:r1] += values.sum(axis=1)
            if c0 != r0:
                row_sums[c0:c1] += values.sum(axis=0)  # the mirrored tile below the diagonal
            sum_sq += weight * float(np.vdot(values, values))
        row_means = row_sums / n
        kc_sq = sum_sq - 2 * n * float(row_means @ row_means) + n**2 * float(row_means.mean()) ** 2
        return cls(xc, kernel, gamma, float(shift), row_means, kc_sq)

    def uncentred_tile(self, tile: Tile) -> np.ndarray:
        """K less the shift: Kc plus terms a_i + a_j, which leave <Kc_other, .> unchanged."""
        values = _kernel_tile(self.x, self.xt, self.sq, self.kernel, self.gamma, tile)
        values -= self.shift
        return values

    def centred_tile(self, tile: Tile) -> np.ndarray:
        r0, r1, c0, c1 = tile
        values = self.uncentred_tile(tile)
        values -= self.row_means[r0:r1, None]
        values -= self.row_means[None, c0:c1] - self.grand_mean
        return values

    def take(self, rows: np.ndarray) -> _StreamedGram:
        if _is_permutation(rows, self.n):
            return _StreamedGram(
                self.x[rows], self.kernel, self.gamma, self.shift, self.row_means[rows], self.kc_sq
            )
        return _StreamedGram.build(self.x[rows], self.kernel, self.gamma)


def _on(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """x (float64) as a tensor on ``device``."""
    return as_tensor(x).to(device, non_blocking=True)


def _sq_frobenius(m: torch.Tensor) -> float:
    """||m||_F^2 without a squared temporary."""
    flat = m.reshape(-1)
    return float(torch.vdot(flat, flat))


def _device_sq_distances(x: torch.Tensor) -> torch.Tensor:
    """(n, n) squared distances between the rows of x (n, d), zero diagonal, on x's device."""
    d2 = x @ x.T
    sq = torch.diagonal(d2).clone()
    d2.mul_(-2.0).add_(sq[:, None]).add_(sq[None, :]).clamp_(min=0.0)  # rounding can dip below 0
    d2.fill_diagonal_(0.0)
    return d2


def _device_median_sq_distance(x: torch.Tensor) -> float:
    """:func:`_median_sq_distance` of the rows of x (n, d) on their device: np.median's convention over
    the whole n x n matrix, diagonal included (n <= _GRAM_STORE_MAX_ROWS, so it fits as a Gram does)."""
    values = _device_sq_distances(x).reshape(-1)
    total = len(values)
    ranks = (total // 2, total // 2 + 1) if total % 2 == 0 else (total // 2 + 1,)  # 1-based, as kthvalue
    return sum(float(torch.kthvalue(values, r).values) for r in ranks) / len(ranks)


class _DeviceFeatures:
    """:class:`_FeatureKernel` on a device: the centred features Xc (n, d) as a float64 tensor there."""

    centring_is_free = True

    def __init__(self, xc: torch.Tensor) -> None:
        self.xc = xc
        self.n = len(xc)
        self.diag = torch.einsum("ij,ij->i", xc, xc).cpu().numpy()
        self.trace = float(self.diag.sum())

    @classmethod
    def build(cls, x: np.ndarray, device: torch.device) -> _DeviceFeatures:
        rows = _on(x, device)
        return cls(rows - rows.mean(dim=0))

    @cached_property
    def kc_sq(self) -> float:
        """<Kc, Kc> = ||Xc' Xc||_F^2."""
        return _sq_frobenius(self.xc.T @ self.xc)

    def centred_tile(self, tile: Tile) -> np.ndarray:
        """A tile of Kc, brought back: only for crossing a streamed Gram, which stays on the CPU."""
        r0, r1, c0, c1 = tile
        return (self.xc[r0:r1] @ self.xc[c0:c1].T).cpu().numpy()

    uncentred_tile = centred_tile

    def take(self, rows: np.ndarray) -> _DeviceFeatures:
        resampled = self.xc[torch.from_numpy(rows).to(self.xc.device)]
        if _is_permutation(rows, self.n):
            return _carry_kc_sq(self, _DeviceFeatures(resampled))
        low, high = torch.aminmax(resampled, dim=0)
        if not bool((high > low).any()):
            raise NeurometryError(
                "the resampled stimuli all have the same response, so CKA is 0/0; resample again"
            )
        return _DeviceFeatures(resampled - resampled.mean(dim=0))


class _DeviceGram:
    """:class:`_StoredGram` on a device: Kc = H K H (n x n float64) as a tensor there."""

    centring_is_free = True

    def __init__(self, kc: torch.Tensor) -> None:
        self.kc = kc
        self.n = len(kc)
        self.diag = torch.diagonal(kc).cpu().numpy().copy()  # a copy: on the CPU it would view kc
        self.trace = float(self.diag.sum())

    @classmethod
    def build(cls, x: np.ndarray, kernel: str, gamma: float, device: torch.device) -> _DeviceGram:
        rows = _on(x, device)
        xc = rows - rows.mean(dim=0)  # translation changes neither Kc nor rbf distances
        if kernel == "linear":
            k = xc @ xc.T
        else:
            k = _device_sq_distances(xc).mul_(-gamma).exp_()
        _double_centre(k)
        return cls(k)

    @cached_property
    def kc_sq(self) -> float:
        return _sq_frobenius(self.kc)

    def take(self, rows: np.ndarray) -> _DeviceGram:
        index = torch.from_numpy(rows).to(self.kc.device)
        kc = self.kc[index][:, index]
        if _is_permutation(rows, self.n):
            return _carry_kc_sq(self, _DeviceGram(kc))
        _double_centre(kc)  # exact, as in _StoredGram.take
        return _DeviceGram(kc)


def _device_cross(a: _DeviceFeatures | _DeviceGram, b: _DeviceFeatures | _DeviceGram) -> float:
    """<Kc_a, Kc_b> on the device: ||Xa' Xb||_F^2 for two feature sides, the entrywise sum for two Grams,
    and tr(Xc' Lc Xc) for features Xc against a Gram Lc (no n x n product of the features)."""
    if isinstance(a, _DeviceFeatures) and isinstance(b, _DeviceFeatures):
        return _sq_frobenius(a.xc.T @ b.xc)
    if isinstance(a, _DeviceGram) and isinstance(b, _DeviceGram):
        return float(torch.vdot(a.kc.reshape(-1), b.kc.reshape(-1)))
    features, gram = (a, b) if isinstance(a, _DeviceFeatures) else (b, a)
    return float(torch.einsum("ij,ij->", gram.kc @ features.xc, features.xc))


_Part = _FeatureKernel | _StoredGram | _StreamedGram | _DeviceFeatures | _DeviceGram


def _carry_kc_sq(old: _Part, new: _Part) -> _Part:
    """A permutation leaves <Kc, Kc> as it was: reuse it if it was already computed."""
    if "kc_sq" in old.__dict__:
        new.__dict__["kc_sq"] = old.kc_sq
    return new


def _double_centre(k: np.ndarray | torch.Tensor) -> None:
    """K <- H K H in place for a symmetric K (an array, or a tensor on its device)."""
    means = k.mean(axis=1)
    grand = means.mean()
    k -= means[:, None]
    k -= means[None, :]
    k += grand


def _stored_inner(a: _StoredGram, b: _StoredGram) -> float:
    """<Kc_a, Kc_b> over contiguous row blocks (float64 dot products, no n x n temporary)."""
    total = 0.0
    for lo, hi in _row_blocks(a.n):
        total += float(np.vdot(a.kc[lo:hi], b.kc[lo:hi]))
    return total


def _cross(a: _Part, b: _Part) -> float:
    """<Kc_a, Kc_b>: in feature space when both sides are features; else over upper-triangle tiles,
    centring only one side (<Kc, L> = <Kc, Lc> because Kc 1 = 0), preferably one already centred."""
    if isinstance(a, _FeatureKernel) and isinstance(b, _FeatureKernel):
        m = cross_product(a.xc, b.xc)
        return float(np.vdot(m, m))
    if isinstance(a, _DeviceFeatures | _DeviceGram) and isinstance(b, _DeviceFeatures | _DeviceGram):
        return _device_cross(a, b)
    if isinstance(a, _StoredGram) and isinstance(b, _StoredGram):
        return _stored_inner(a, b)
    centred, other = (a, b) if a.centring_is_free or not b.centring_is_free else (b, a)
    total = 0.0
    for tile, weight in _upper_tiles(a.n):
        total += weight * float(np.einsum("ij,ij->", centred.centred_tile(tile), other.uncentred_tile(tile)))
    return total


def _hsic_value(
    cross: float, diag_dot: float, trace_a: float, trace_b: float, n: int, estimator: str
) -> float:
    """HSIC from the centred-kernel terms <Kc,Lc>, diag(Kc).diag(Lc), tr Kc, tr Lc (module docstring)."""
    if estimator == "biased":
        return cross / (n - 1) ** 2
    return (cross - n / (n - 2) * diag_dot + trace_a * trace_b / ((n - 1) * (n - 2))) / (n * (n - 3))


def _hsic(a: _Part, b: _Part, estimator: str) -> float:
    return _hsic_value(_cross(a, b), float(a.diag @ b.diag), a.trace, b.trace, a.n, estimator)


def _self_hsic(a: _Part, estimator: str, name: str) -> float:
    """HSIC(K, K), or a NeurometryError where it is 0 (CKA would be 0/0)."""
    value = _hsic_value(a.kc_sq, float(a.diag @ a.diag), a.trace, a.trace, a.n, estimator)
    return _check_self_hsic(
        value, a.kc_sq / ((a.n - 1) ** 2 if estimator == "biased" else a.n * (a.n - 3)), estimator, name
    )


def _check_self_hsic(value: float, scale: float, estimator: str, name: str) -> float:
    # HSIC(K, K) >= 0 for every estimator (the unbiased one is <K_u, K_u> / (n(n-3))); zero, or rounding
    # noise relative to the biased-style scale ||Kc||^2, means the kernel sees no variation
    if not value > 1e-10 * scale or not math.isfinite(value):
        raise NeurometryError(
            f"{name} shows no variation the {estimator} HSIC can measure (HSIC(K, K) = 0), so CKA is 0/0; "
            "drop this representation or use more stimuli"
        )
    return value


def _varies(x: np.ndarray, block: int = 4096) -> bool:
    """Whether any row differs from the first: exact, and usually settled by the first block."""
    return any(bool((x[lo : lo + block] != x[0]).any()) for lo in range(0, len(x), block))


def _build_part(
    x: np.ndarray, kernel: str, gamma: float, centred: bool = False, device: torch.device | None = None
) -> _Part:
    """The cheapest exact form: features for a linear kernel with d <= n, else a (stored) Gram.
    ``centred``: x's columns already have mean 0 (features are then kept as they are, not copied).
    ``device``: features and stored Grams are built there (a streamed Gram stays on the CPU)."""
    n, d = x.shape
    if kernel == "linear" and d <= n:
        if device is not None:
            return _DeviceFeatures(_on(x, device)) if centred else _DeviceFeatures.build(x, device)
        return _FeatureKernel(x) if centred else _FeatureKernel.build(x)
    if n <= _GRAM_STORE_MAX_ROWS:
        if device is not None:
            return _DeviceGram.build(x, kernel, gamma, device)
        return _StoredGram.build(x, kernel, gamma)
    return _StreamedGram.build(x, kernel, gamma)


# ----------------------------------------------------------------------------------------------------
# the metric: prepare / score / take


@dataclass(frozen=True)
class CKAState:
    """One representation prepared for CKA.

    Attributes:
        n: number of stimuli.
        estimator, kernel: the parameters it was prepared with.
        gamma: 1 / (2 sigma^2) of the rbf kernel, sigma fixed from the full data at prepare (``take``
            keeps it, so a bootstrap resample is scored with the same kernel); 0 for linear.
        self_hsic: HSIC(K, K) (minibatch: its mean over batches).
        part: the centred kernel (biased, unbiased).
        rows: minibatch only: the (centred) rows, re-batched by ``take`` and read by ``score``.
        batches: minibatch only: row indices of each batch (a seeded shuffle, the same for both sides).
        batch_parts: minibatch only: per-batch stored Gram (d > batch rows), or None where ``score``
            centres the batch's features itself (cheap next to the cross product it then computes).
        device: where the parts live (None: NumPy on the CPU); ``score`` and ``take`` keep to it.
    """

    n: int
    estimator: str
    kernel: str
    gamma: float
    self_hsic: float
    part: _Part | None = None
    rows: np.ndarray | None = None
    batches: tuple[np.ndarray, ...] = ()
    batch_parts: tuple[_Part | None, ...] = ()
    device: torch.device | None = None

    def __len__(self) -> int:
        return self.n


def _check_params(params: Mapping[str, Any]) -> tuple[str, str, float, int, int]:
    merged = {**DEFAULTS, **params}
    kernel, estimator = merged["kernel"], merged["estimator"]
    bandwidth, batch_size, seed = merged["bandwidth"], merged["batch_size"], merged["seed"]
    if kernel not in KERNELS:
        raise NeurometryError(
            f"unknown CKA kernel {kernel!r}{did_you_mean(str(kernel), KERNELS)}; use linear or rbf"
        )
    if estimator not in ESTIMATORS:
        raise NeurometryError(
            f"unknown CKA estimator {estimator!r}{did_you_mean(str(estimator), ESTIMATORS)}; "
            f"use one of {', '.join(ESTIMATORS)}"
        )
    if (
        isinstance(bandwidth, bool)
        or not isinstance(bandwidth, int | float | np.integer | np.floating)
        or not (0 < bandwidth < math.inf)
    ):
        raise NeurometryError(
            f"bandwidth must be a positive number (a fraction of the median pairwise distance, e.g. 1.0), got {bandwidth!r}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 4:
        raise NeurometryError(
            f"batch_size must be an integer >= 4 (the unbiased HSIC of each batch needs 4 rows), got {batch_size!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise NeurometryError(f"seed must be an integer, got {seed!r}")
    return kernel, estimator, float(bandwidth), int(batch_size), int(seed)


def _prepare_rows(
    x: np.ndarray,
    kernel: str,
    estimator: str,
    gamma: float | None,
    bandwidth: float,
    batch_size: int,
    seed: int,
    name: str,
    device: torch.device | None = None,
) -> CKAState:
    """Prepare validated float64 rows; ``gamma`` None means: choose it by the median heuristic.
    ``device``: build the parts there (see the module docstring)."""
    n = len(x)
    if n < _MIN_ROWS[estimator]:
        raise NeurometryError(
            f"{name} has {n} stimuli; the {estimator} CKA estimator needs at least {_MIN_ROWS[estimator]}"
        )
    if not _varies(x):
        raise NeurometryError(
            f"{name} is the same for every stimulus, so CKA is 0/0; drop this representation"
        )
    x = x - x.mean(axis=0)  # every estimator and kernel here is translation invariant
    if gamma is None:
        gamma = 0.0
        if kernel == "rbf":
            if device is None or n > _GRAM_STORE_MAX_ROWS:
                median_sq = _median_sq_distance(x)
            else:
                median_sq = _device_median_sq_distance(_on(x, device))
            if not median_sq > 0:
                raise NeurometryError(
                    f"the median pairwise distance of {name} is 0 (most stimuli have identical rows), "
                    "so the rbf median heuristic gives no bandwidth; remove the repeated rows or use kernel linear"
                )
            gamma = 1.0 / (2.0 * bandwidth**2 * median_sq)
    if estimator != "minibatch":
        part = _build_part(x, kernel, gamma, centred=True, device=device)
        self_hsic = _self_hsic(part, estimator, name)
        return CKAState(n, estimator, kernel, gamma, self_hsic, part=part, device=device)
    if batch_size > n:
        raise NeurometryError(
            f"batch_size {batch_size} is larger than the {n} stimuli of {name}; use batch_size <= {n}"
        )
    # array_split into n // batch_size batches uses every row; each batch has batch_size to 2*batch_size-1 rows
    order = np.random.default_rng(seed).permutation(n)
    batches = tuple(np.sort(b) for b in np.array_split(order, n // batch_size))
    parts = [_build_part(x[b], kernel, gamma, device=device) for b in batches]
    # a batch without variation is fine as long as the mean over batches is not 0
    batch_self = [
        _hsic_value(p.kc_sq, float(p.diag @ p.diag), p.trace, p.trace, p.n, "unbiased") for p in parts
    ]
    scale = float(np.mean([p.kc_sq / (p.n * (p.n - 3)) for p in parts]))
    self_hsic = _check_self_hsic(float(np.mean(batch_self)), scale, "minibatch", name)
    kept = tuple(None if isinstance(p, _FeatureKernel | _DeviceFeatures) else p for p in parts)
    return CKAState(
        n, estimator, kernel, gamma, self_hsic, rows=x, batches=batches, batch_parts=kept, device=device
    )


def prepare(x: Any, params: Mapping[str, Any], device: torch.device | None = None) -> CKAState:
    """Everything CKA needs from one representation x (n, d): centring, kernel, self-HSIC; with
    ``device``, its kernel is kept there (see the module docstring)."""
    kernel, estimator, bandwidth, batch_size, seed = _check_params(params)
    rows = as_rows(x, "representation", min_rows=_MIN_ROWS[estimator])
    return _prepare_rows(rows, kernel, estimator, None, bandwidth, batch_size, seed, "representation", device)


def score(state_a: CKAState, state_b: CKAState, params: Mapping[str, Any]) -> float:
    """CKA of two prepared representations of the same stimuli (only the cross term is computed here)."""
    check_same_rows(state_a, state_b)
    if (state_a.estimator, state_a.kernel) != (state_b.estimator, state_b.kernel):
        raise ValueError("CKA states prepared with different kernels or estimators cannot be scored together")
    if state_a.estimator != "minibatch":
        cross = _hsic(state_a.part, state_b.part, state_a.estimator)
    else:
        per_batch = []
        for i, batch in enumerate(state_a.batches):
            part_a = state_a.batch_parts[i] or _build_part(
                state_a.rows[batch], "linear", 0.0, device=state_a.device
            )
            part_b = state_b.batch_parts[i] or _build_part(
                state_b.rows[batch], "linear", 0.0, device=state_b.device
            )
            per_batch.append(_hsic(part_a, part_b, "unbiased"))
        cross = float(np.mean(per_batch))
    return float(cross / math.sqrt(state_a.self_hsic * state_b.self_hsic))


def take(state: CKAState, rows: np.ndarray, params: Mapping[str, Any]) -> CKAState:
    """The state of stimuli ``rows`` (repeats allowed). A Gram matrix is reindexed (and centred again
    unless ``rows`` is a permutation); features and streamed rows are re-prepared from the kept rows;
    minibatch states are re-batched (same seed) from their kept rows. The rbf sigma is kept."""
    rows = np.asarray(rows, dtype=np.intp)
    name = "the resampled representation"
    if len(np.unique(rows)) < 2:
        raise NeurometryError("the resample holds a single distinct stimulus, so CKA is 0/0; resample again")
    if state.estimator == "minibatch":
        _, _, bandwidth, batch_size, seed = _check_params(params)
        return _prepare_rows(
            state.rows[rows], state.kernel, "minibatch", state.gamma, bandwidth, batch_size, seed, name,
            state.device,
        )
    if len(rows) < _MIN_ROWS[state.estimator]:
        raise NeurometryError(f"{len(rows)} stimuli are too few for the {state.estimator} CKA estimator")
    part = state.part.take(rows)
    if _is_permutation(rows, state.n):
        self_hsic = state.self_hsic
    else:
        self_hsic = _self_hsic(part, state.estimator, name)
    return CKAState(
        len(rows), state.estimator, state.kernel, state.gamma, self_hsic, part=part, device=state.device
    )


def cka(
    x: Any,
    y: Any,
    kernel: str = "linear",
    estimator: str = "biased",
    bandwidth: float = 1.0,
    batch_size: int = 1000,
    seed: int = 0,
    device: torch.device | None = None,
) -> float:
    """Centred kernel alignment of x (n, d1) and y (n, d2), rows = the same stimuli in the same order.

    Kornblith, Norouzi, Lee & Hinton (2019), "Similarity of neural network representations revisited".

    Args:
        x, y: responses, (n_stimuli, n_features); any real dtype, computed in float64.
        kernel: ``linear`` or ``rbf`` (sigma = bandwidth * median pairwise distance of each side).
        estimator: ``biased`` (Gretton et al. 2005), ``unbiased`` (Song et al. 2012, n >= 4) or
            ``minibatch`` (Nguyen, Raghu & Kornblith 2021: unbiased HSIC averaged over batches).
        bandwidth: rbf only: sigma as a fraction of the median pairwise distance.
        batch_size: minibatch only: rows per batch (4 <= batch_size <= n; the remainder is spread).
        seed: minibatch only: seed of the shuffle that forms the batches.
        device: a ``torch.device`` to compute on (see the module docstring); None: NumPy on the CPU.

    Returns:
        CKA, in [0, 1] for the biased estimator; the unbiased ones can dip slightly below 0.

    Raises:
        NeurometryError: NaN/Inf, different numbers of rows, too few rows for the estimator, a
            representation with no variation (0/0), or an unknown kernel / estimator.
    """
    kernel, estimator, bandwidth, batch_size, seed = _check_params(
        {
            "kernel": kernel,
            "estimator": estimator,
            "bandwidth": bandwidth,
            "batch_size": batch_size,
            "seed": seed,
        }
    )
    xr = as_rows(x, "x", min_rows=_MIN_ROWS[estimator])
    yr = as_rows(y, "y", min_rows=_MIN_ROWS[estimator])
    check_same_rows(xr, yr)
    n = len(xr)
    if kernel == "linear" and estimator != "minibatch" and max(xr.shape[1], yr.shape[1]) <= n:
        # one pass over row blocks that stay in cache: the three d x d products read x and y once
        # and no centred copy of either is made (the centring is exact, see LinearCKAAccumulator)
        accumulator = LinearCKAAccumulator(xr.shape[1], yr.shape[1], device=device)
        for lo in range(0, n, _STREAM_BLOCK_ROWS):
            accumulator.update(xr[lo : lo + _STREAM_BLOCK_ROWS], yr[lo : lo + _STREAM_BLOCK_ROWS])
        return accumulator.result(estimator)
    state_x = _prepare_rows(xr, kernel, estimator, None, bandwidth, batch_size, seed, "x", device)
    state_y = _prepare_rows(yr, kernel, estimator, None, bandwidth, batch_size, seed, "y", device)
    return score(state_x, state_y, {})


register(
    Metric(
        name="cka",
        summary="centred kernel alignment (Kornblith et al. 2019): linear or rbf kernel; biased (Gretton 2005), "
        "unbiased (Song et al. 2012) or minibatch (Nguyen et al. 2021) HSIC",
        prepare=prepare,
        score=score,
        take=take,
        params=dict(DEFAULTS),
        min_rows=4,
        on_device=True,
    )
)


# ----------------------------------------------------------------------------------------------------
# streaming linear CKA


class LinearCKAAccumulator:
    """Linear CKA of two representations streamed as aligned row chunks, in O(d_x^2 + d_y^2 + d_x d_y) memory.

    Each ``update`` adds float64 sums of products; ``result`` turns them into the centred terms of the
    biased (Gretton 2005) or unbiased (Song et al. 2012) estimator, whatever n is. Rows are shifted by
    the first chunk's mean before accumulating (CKA is translation invariant) so the later centring
    does not cancel large sums.

    The unbiased estimator needs, besides X'Y, X'X, Y'Y and the column sums, the squared row norms of
    the centred rows through a.b = sum_i ||x_i - mx||^2 ||y_i - my||^2, which expands into sum_i A_i B_i,
    sum_i A_i y_i, sum_i B_i x_i (A_i = ||x_i||^2, B_i = ||y_i||^2) and the sums above.

    With ``device`` (a ``torch.device``) each chunk is moved there and the sums are kept there, in float64;
    ``result`` brings back only those sums (d x d). None: NumPy on the CPU.

        acc = LinearCKAAccumulator(384, 384)
        for x_chunk, y_chunk in chunks:
            acc.update(x_chunk, y_chunk)
        acc.result("unbiased")
    """

    def __init__(self, d_x: int, d_y: int, device: torch.device | None = None) -> None:
        if d_x < 1 or d_y < 1:
            raise NeurometryError(f"feature counts must be positive, got d_x={d_x}, d_y={d_y}")
        self.d_x, self.d_y = int(d_x), int(d_y)
        self.device = device
        self.n_rows = 0
        self._shift_x: np.ndarray | None = None
        self._shift_y: np.ndarray | None = None
        self._sums: dict[str, Any] = {}
        self._min_x = np.full(d_x, np.inf)
        self._max_x = np.full(d_x, -np.inf)
        self._min_y = np.full(d_y, np.inf)
        self._max_y = np.full(d_y, -np.inf)

    def update(self, x_chunk: Any, y_chunk: Any) -> None:
        """Add rows x_chunk (m, d_x) and y_chunk (m, d_y) of the same m stimuli."""
        x = as_rows(x_chunk, "x_chunk", min_rows=1)
        y = as_rows(y_chunk, "y_chunk", min_rows=1)
        check_same_rows(x, y, "chunks")
        if x.shape[1] != self.d_x or y.shape[1] != self.d_y:
            raise NeurometryError(
                f"chunks have {x.shape[1]} and {y.shape[1]} features; this accumulator was made for "
                f"{self.d_x} and {self.d_y}"
            )
        np.minimum(self._min_x, x.min(axis=0), out=self._min_x)
        np.maximum(self._max_x, x.max(axis=0), out=self._max_x)
        np.minimum(self._min_y, y.min(axis=0), out=self._min_y)
        np.maximum(self._max_y, y.max(axis=0), out=self._max_y)
        if self._shift_x is None:
            self._shift_x, self._shift_y = x.mean(axis=0), y.mean(axis=0)
        if self.device is None:
            # new arrays: as_rows hands back the caller's own float64 array, which must not change
            x = x - self._shift_x
            y = y - self._shift_y
            sq_x, sq_y = _sq_norms(x), _sq_norms(y)
        else:  # the same sums with torch on the device (its operators spell them alike)
            x = _on(x, self.device) - _on(self._shift_x, self.device)
            y = _on(y, self.device) - _on(self._shift_y, self.device)
            sq_x, sq_y = torch.einsum("ij,ij->i", x, x), torch.einsum("ij,ij->i", y, y)
        terms = {
            "sx": x.sum(axis=0),
            "sy": y.sum(axis=0),
            "xx": x.T @ x,
            "xy": x.T @ y,
            "yy": y.T @ y,
            "ax": sq_x.sum(),
            "ay": sq_y.sum(),
            "axx": sq_x @ sq_x,
            "ayy": sq_y @ sq_y,
            "axy": sq_x @ sq_y,
            "ax_x": sq_x @ x,  # sum_i A_i x_i
            "ay_x": sq_y @ x,  # sum_i B_i x_i
            "ax_y": sq_x @ y,  # sum_i A_i y_i
            "ay_y": sq_y @ y,  # sum_i B_i y_i
        }
        for key, value in terms.items():
            if key in self._sums:
                self._sums[key] += value
            elif self.device is None:
                self._sums[key] = np.array(value, dtype=np.float64)
            else:
                self._sums[key] = value  # a new tensor, owned here
        self.n_rows += len(x)

    def result(self, estimator: str = "biased") -> float:
        """Linear CKA of all rows added so far, with the ``biased`` or ``unbiased`` HSIC estimator."""
        if estimator not in ("biased", "unbiased"):
            raise NeurometryError(
                f"unknown estimator {estimator!r} for streamed CKA{did_you_mean(str(estimator), ('biased', 'unbiased'))}; "
                "use biased or unbiased"
            )
        n = self.n_rows
        if n < _MIN_ROWS[estimator]:
            raise NeurometryError(
                f"{n} rows were added; the {estimator} CKA estimator needs at least {_MIN_ROWS[estimator]}"
            )
        for name, low, high in (("x", self._min_x, self._max_x), ("y", self._min_y, self._max_y)):
            if not np.any(high > low):
                raise NeurometryError(
                    f"{name} is the same for every stimulus, so CKA is 0/0; drop this representation"
                )
        s = self._sums if self.device is None else {k: v.cpu().numpy() for k, v in self._sums.items()}
        mx, my = s["sx"] / n, s["sy"] / n
        cxx = s["xx"] - n * np.outer(mx, mx)
        cxy = s["xy"] - n * np.outer(mx, my)
        cyy = s["yy"] - n * np.outer(my, my)
        cross, self_x, self_y = (float(np.vdot(c, c)) for c in (cxy, cxx, cyy))
        # traces of the centred kernels and dot products of their diagonals (class docstring)
        trace_x = float(s["ax"] - n * (mx @ mx))
        trace_y = float(s["ay"] - n * (my @ my))
        dot_xy = _centred_norms_dot(s["axy"], s["ax_y"], s["ay_x"], s["xy"], mx, my, s["ax"], s["ay"], n)
        dot_xx = _centred_norms_dot(s["axx"], s["ax_x"], s["ax_x"], s["xx"], mx, mx, s["ax"], s["ax"], n)
        dot_yy = _centred_norms_dot(s["ayy"], s["ay_y"], s["ay_y"], s["yy"], my, my, s["ay"], s["ay"], n)
        hsic_xy = _hsic_value(cross, dot_xy, trace_x, trace_y, n, estimator)
        hsic_xx = _hsic_value(self_x, dot_xx, trace_x, trace_x, n, estimator)
        hsic_yy = _hsic_value(self_y, dot_yy, trace_y, trace_y, n, estimator)
        for name, value, kc_sq in (("x", hsic_xx, self_x), ("y", hsic_yy, self_y)):
            scale = kc_sq / ((n - 1) ** 2 if estimator == "biased" else n * (n - 3))
            if not value > 1e-10 * scale:
                raise NeurometryError(
                    f"{name} shows no variation the {estimator} HSIC can measure, so CKA is 0/0; "
                    "drop this representation or add more rows"
                )
        return float(hsic_xy / math.sqrt(hsic_xx * hsic_yy))


def _centred_norms_dot(
    sum_ab: float,
    sum_a_v: np.ndarray,
    sum_u_b: np.ndarray,
    sum_uv: np.ndarray,
    mu: np.ndarray,
    mv: np.ndarray,
    sum_a: float,
    sum_b: float,
    n: int,
) -> float:
    """sum_i ||u_i - mu||^2 ||v_i - mv||^2 from sums over raw rows: A_i = ||u_i||^2, B_i = ||v_i||^2,
    sum_ab = sum A_i B_i, sum_a_v = sum A_i v_i, sum_u_b = sum B_i u_i, sum_uv = sum u_i v_i'."""
    mu_sq, mv_sq = float(mu @ mu), float(mv @ mv)
    return float(
        sum_ab
        - 2 * (mv @ sum_a_v)
        - 2 * (mu @ sum_u_b)
        + 4 * (mu @ sum_uv @ mv)
        + mv_sq * sum_a
        + mu_sq * sum_b
        - 3 * n * mu_sq * mv_sq
    )
