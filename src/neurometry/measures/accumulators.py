"""Streaming accumulators: one pass over row blocks, then a small finalised state per accumulator.

``run_measures`` cuts the chunks into row blocks, feeds each block to the accumulators the requested
measures need, and hands their finalised states to the measures. Sums of products accumulate in
float64, shifted by the first block's mean (so the cancellation in ``sum x x^T - n m m^T`` stays
small), and every state is invariant to how the rows were chunked, up to floating-point rounding.

Accumulators (the names measures list in ``needs``):

- ``moments``: count, sum and sum of outer products (d x d) of the shifted rows.
- ``unit_sum``: sum of unit-normalised rows, sum of row norms, count of all-zero rows.
- ``unit_stats``: per-unit sums of powers 1..4 (shifted), min, max, count of ``|a| <= sparsity_threshold``.
- ``max_abs``: value and (row, dim) of the largest ``|a|``, plus a seeded row sample of ``|a|`` for the median.
- ``class_moments``: per-class counts, sums (C x d) and sums of squared norms of the shifted rows.
- ``subsample``: a seeded sample of at most ``max_rows`` rows (kNN estimators, nc4).
- ``attention``: per-head sums of row entropies and of the mass on key 0, and counts of real rows.
- ``groups``: per-input relative rank-1 residuals (rows of one input must be contiguous).
- ``pair``: sum of row cosines between the chunks and a second, aligned stream.

With a device (``Context.device``, a ``torch.device``; None is the CPU) ``moments`` accumulates its d x d
sum there, in float64, and the eigenvalues of its finalised scatter are taken there too; ``subsample``'s
kNN search runs there (:func:`neurometry.measures.intrinsic_dimension.knn`). The other accumulators are
O(rows x d) sums, no more work than moving the block, and stay on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch

from neurometry.errors import NeurometryError

MAX_COV_FEATURES = 8192
"""Largest feature count for which a d x d matrix is accumulated."""

_EPS = np.finfo(np.float64).eps


@dataclass
class Context:
    """What the accumulators of one ``run_measures`` call share."""

    params: dict[str, Any]
    seed: int = 0
    max_rows: int = 20000
    labels: np.ndarray | None = None  # int64 class codes 0..C-1, aligned with rows
    classes: np.ndarray | None = None  # the label value of each code
    input_ids: np.ndarray | None = None
    knn_k: int = 2
    classifier: tuple[np.ndarray, np.ndarray] | None = None  # (W (C, d), b (C,))
    shift: np.ndarray | None = None  # float64 mean of the first block, set by run_measures
    device: torch.device | None = None  # where moments and the kNN search run (None: the CPU)


@dataclass
class Block:
    """A block of consecutive rows: ``x`` as given (rows, *feat), ``start`` its first global row."""

    x: np.ndarray
    start: int
    ctx: Context
    other: np.ndarray | None = None  # aligned rows of a second stream (for ``pair``)

    @property
    def rows(self) -> int:
        return len(self.x)

    @cached_property
    def flat(self) -> np.ndarray:
        """(rows, F) view of the block, dtype as given."""
        return self.x.reshape(len(self.x), -1)

    @cached_property
    def f64(self) -> np.ndarray:
        """(rows, F) float64 copy."""
        return np.asarray(self.flat, dtype=np.float64)

    @cached_property
    def shifted(self) -> np.ndarray:
        """(rows, F) float64 rows minus the shared shift (the first block's mean)."""
        assert self.ctx.shift is not None
        return self.f64 - self.ctx.shift


# ---------------------------------------------------------------- seeded, chunking-invariant row sample


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def row_keys(start: int, rows: int, seed: int) -> np.ndarray:
    """Pseudo-random uint64 key of each global row index (depends on the index and seed only)."""
    salt = _splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    return _splitmix64(np.arange(start, start + rows, dtype=np.uint64) ^ salt)


class RowReservoir:
    """Keeps the ``capacity`` rows with the smallest :func:`row_keys`: a uniform seeded sample without
    replacement that does not depend on how the rows were chunked."""

    def __init__(self, capacity: int, seed: int):
        self.capacity = int(capacity)
        self.seed = seed
        self.keys = np.empty(0, dtype=np.uint64)
        self.index = np.empty(0, dtype=np.int64)
        self.data: np.ndarray | None = None
        self.seen = 0
        self.filled = 0  # rows of ``data`` in use while nothing has been evicted (rows in order)
        self.evicted = False

    def update(self, x: np.ndarray, start: int) -> None:
        keys = row_keys(start, len(x), self.seed)
        index = np.arange(start, start + len(x), dtype=np.int64)
        self.seen += len(x)
        if not self.evicted and self.filled + len(x) <= self.capacity:
            # every row so far is kept: fill one buffer in order, no concatenation or reordering
            need = self.filled + len(x)
            if self.data is None or len(self.data) < need:  # grow geometrically, up to the capacity
                grown = np.empty((min(self.capacity, max(need, 2 * self.filled)), *x.shape[1:]), dtype=x.dtype)
                if self.data is not None:
                    grown[: self.filled] = self.data[: self.filled]
                self.data = grown
            self.data[self.filled : self.filled + len(x)] = x
            self.filled += len(x)
            self.keys, self.index = np.concatenate([self.keys, keys]), np.concatenate([self.index, index])
            return
        if self.data is not None and not self.evicted:
            self.data = self.data[: self.filled]
        self.evicted = True
        if len(self.keys) >= self.capacity:
            keep = keys < self.keys.max()
            if not keep.any():
                return
            keys, index, x = keys[keep], index[keep], x[keep]
        data = np.array(x, copy=True) if self.data is None else np.concatenate([self.data, x])
        keys, index = np.concatenate([self.keys, keys]), np.concatenate([self.index, index])
        if len(keys) > self.capacity:
            sel = np.argpartition(keys, self.capacity - 1)[: self.capacity]
            keys, index, data = keys[sel], index[sel], data[sel]
        self.keys, self.index, self.data = keys, index, data

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(global row indices in increasing order, their rows)."""
        assert self.data is not None
        if not self.evicted:
            return self.index, self.data[: self.filled]
        order = np.argsort(self.index, kind="stable")
        return self.index[order], self.data[order]


# ---------------------------------------------------------------- accumulators and their states


class Accumulator:
    """Base: ``update`` once per block, then ``finalize`` once."""

    #: d x d memory: refuse feature counts above MAX_COV_FEATURES
    quadratic = False

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.n = 0

    def update(self, b: Block) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def finalize(self) -> Any:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class MomentsState:
    """Finalised ``moments``: n rows of d features; ``m2`` = sum of (x - shift)(x - shift)^T;
    ``device``: where :meth:`eigvalsh` decomposes (None: NumPy on the CPU)."""

    n: int
    shift: np.ndarray
    sum_shifted: np.ndarray
    m2: np.ndarray
    device: torch.device | None = None

    @property
    def d(self) -> int:
        return len(self.shift)

    @cached_property
    def mean(self) -> np.ndarray:
        return self.shift + self.sum_shifted / self.n

    @cached_property
    def scatter(self) -> np.ndarray:
        """(d, d) centred scatter sum (x - mean)(x - mean)^T = (n - 1) x sample covariance."""
        m = self.sum_shifted / self.n
        s = self.m2 - self.n * np.outer(m, m)
        return (s + s.T) / 2

    @cached_property
    def second_moment(self) -> np.ndarray:
        """(d, d) uncentred sum x x^T."""
        a = np.outer(self.shift, self.sum_shifted)
        s = self.m2 + a + a.T + self.n * np.outer(self.shift, self.shift)
        return (s + s.T) / 2

    @cached_property
    def eigenvalues(self) -> np.ndarray:
        """Eigenvalues of :attr:`scatter`, descending; those below ``10 d eps lambda_max`` (rounding
        noise of a Gram matrix) are set to 0. Singular values of the centred data are their square roots."""
        lam = self.eigvalsh(self.scatter)[::-1].copy()
        top = max(lam[0], 0.0)
        lam[lam <= 10 * len(lam) * _EPS * top] = 0.0
        return lam

    def eigvalsh(self, matrix: np.ndarray) -> np.ndarray:
        """Eigenvalues (ascending) of a symmetric (d, d) float64 matrix, on :attr:`device` if there is one."""
        if self.device is None:
            return np.linalg.eigvalsh(matrix)
        on_device = torch.from_numpy(matrix).to(self.device, non_blocking=True)
        return torch.linalg.eigvalsh(on_device).cpu().numpy()


class Moments(Accumulator):
    quadratic = True

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.sum: np.ndarray | None = None
        self.m2: torch.Tensor | None = None

    def update(self, b: Block) -> None:
        y = torch.from_numpy(b.shifted)
        if self.ctx.device is not None:
            y = y.to(self.ctx.device, non_blocking=True)
        if self.m2 is None:
            self.sum = np.zeros(y.shape[1])
            self.m2 = torch.zeros(y.shape[1], y.shape[1], dtype=torch.float64, device=y.device)
        self.m2.addmm_(y.T, y)
        self.sum += b.shifted.sum(0)
        self.n += b.rows

    def finalize(self) -> MomentsState:
        assert self.m2 is not None and self.sum is not None and self.ctx.shift is not None
        return MomentsState(self.n, self.ctx.shift, self.sum, self.m2.cpu().numpy(), self.ctx.device)


@dataclass
class UnitSumState:
    """Finalised ``unit_sum``: ``n`` rows of which ``n_zero`` all-zero; sums over the nonzero rows."""

    n: int
    n_zero: int
    sum_unit: np.ndarray
    sum_norm: float


class UnitSum(Accumulator):
    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.n_zero = 0
        self.sum_unit: np.ndarray | None = None
        self.sum_norm = 0.0

    def update(self, b: Block) -> None:
        x = b.f64
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))
        nz = norms > 0
        if self.sum_unit is None:
            self.sum_unit = np.zeros(x.shape[1])
        self.sum_unit += (x[nz] / norms[nz, None]).sum(0)
        self.sum_norm += float(norms.sum())
        self.n_zero += int((~nz).sum())
        self.n += b.rows

    def finalize(self) -> UnitSumState:
        assert self.sum_unit is not None
        return UnitSumState(self.n, self.n_zero, self.sum_unit, self.sum_norm)


@dataclass
class UnitStatsState:
    """Finalised ``unit_stats`` over n rows of F units (power sums are of a - shift)."""

    n: int
    shift: np.ndarray
    s1: np.ndarray
    s2: np.ndarray
    s3: np.ndarray
    s4: np.ndarray
    min: np.ndarray
    max: np.ndarray
    n_small: np.ndarray  # per unit: rows with |a| <= sparsity_threshold
    sparsity_threshold: float

    @cached_property
    def mean(self) -> np.ndarray:
        return self.shift + self.s1 / self.n

    @cached_property
    def variance(self) -> np.ndarray:
        """Population variance (ddof 0) per unit."""
        m = self.s1 / self.n
        return np.maximum(self.s2 / self.n - m * m, 0.0)

    @cached_property
    def m4(self) -> np.ndarray:
        """Fourth central moment per unit."""
        n, m = self.n, self.s1 / self.n
        return self.s4 / n - 4 * m * self.s3 / n + 6 * m * m * self.s2 / n - 3 * m**4

    @property
    def constant(self) -> np.ndarray:
        return self.max == self.min


class UnitStats(Accumulator):
    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.thr = float(ctx.params.get("sparsity_threshold", 0.0))
        self.s: list[np.ndarray] | None = None

    def update(self, b: Block) -> None:
        y = b.shifted
        y2 = y * y
        parts = [y.sum(0), y2.sum(0), (y2 * y).sum(0), (y2 * y2).sum(0)]
        mn, mx = b.f64.min(0), b.f64.max(0)
        small = (np.abs(b.f64) <= self.thr).sum(0)
        if self.s is None:
            self.s, self.mn, self.mx, self.small = parts, mn, mx, small.astype(np.int64)
        else:
            self.s = [a + p for a, p in zip(self.s, parts, strict=True)]
            self.mn, self.mx = np.minimum(self.mn, mn), np.maximum(self.mx, mx)
            self.small += small
        self.n += b.rows

    def finalize(self) -> UnitStatsState:
        assert self.s is not None and self.ctx.shift is not None
        return UnitStatsState(self.n, self.ctx.shift, *self.s, self.mn, self.mx, self.small, self.thr)


@dataclass
class MaxAbsState:
    """Finalised ``max_abs``: the largest |a| and where; ``sample`` holds |a| of sampled rows."""

    n: int
    max_abs: float
    row: int
    dim: int
    sample: np.ndarray
    sampled_rows: int

    @property
    def exact(self) -> bool:
        return self.sampled_rows == self.n


class MaxAbs(Accumulator):
    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.budget = int(ctx.params.get("median_sample", 2_000_000))
        self.reservoir: RowReservoir | None = None
        self.best = (-1.0, 0, 0)

    def update(self, b: Block) -> None:
        a = np.abs(b.flat)
        if self.reservoir is None:
            self.reservoir = RowReservoir(max(1, self.budget // a.shape[1]), self.ctx.seed)
        self.reservoir.update(a, b.start)
        i = int(np.argmax(a))
        r, c = divmod(i, a.shape[1])
        v = float(a[r, c])
        if v > self.best[0]:
            self.best = (v, b.start + r, c)
        self.n += b.rows

    def finalize(self) -> MaxAbsState:
        assert self.reservoir is not None
        _, data = self.reservoir.result()
        return MaxAbsState(self.n, *self.best, data.ravel(), len(data))


@dataclass
class ClassMomentsState:
    """Finalised ``class_moments`` for C classes in d features (sums are of x - shift)."""

    n: int
    shift: np.ndarray
    classes: np.ndarray
    counts: np.ndarray
    sums: np.ndarray
    sumsq: np.ndarray

    @cached_property
    def means_shifted(self) -> np.ndarray:
        return self.sums / self.counts[:, None]

    @cached_property
    def means(self) -> np.ndarray:
        """(C, d) class means."""
        return self.shift + self.means_shifted

    @cached_property
    def centred_means(self) -> np.ndarray:
        """(C, d) class means minus the global mean mu_G = (1/C) sum_c mu_c, the unweighted mean of the
        class means (Papyan, Han & Donoho 2020 and their code). With imbalanced classes this is not the
        mean of all rows, which the largest class would pull towards itself; a simplex ETF is centred
        on mu_G whatever the class counts."""
        return self.means_shifted - self.means_shifted.mean(0)

    @cached_property
    def variances(self) -> np.ndarray:
        """(C,) mean squared distance of a class's rows to their class mean (trace of its covariance)."""
        m = self.means_shifted
        return np.maximum(self.sumsq / self.counts - np.einsum("ij,ij->i", m, m), 0.0)


class ClassMoments(Accumulator):
    def __init__(self, ctx: Context):
        super().__init__(ctx)
        assert ctx.labels is not None and ctx.classes is not None
        self.c = len(ctx.classes)
        self.counts = np.zeros(self.c, dtype=np.int64)
        self.sums: torch.Tensor | None = None
        self.sumsq = np.zeros(self.c)

    def update(self, b: Block) -> None:
        assert self.ctx.labels is not None
        codes = self.ctx.labels[b.start : b.start + b.rows]
        y = b.shifted
        if self.sums is None:
            self.sums = torch.zeros(self.c, y.shape[1], dtype=torch.float64)
        self.sums.index_add_(0, torch.from_numpy(codes), torch.from_numpy(y))
        self.counts += np.bincount(codes, minlength=self.c)
        self.sumsq += np.bincount(codes, weights=np.einsum("ij,ij->i", y, y), minlength=self.c)
        self.n += b.rows

    def finalize(self) -> ClassMomentsState:
        assert self.sums is not None and self.ctx.shift is not None and self.ctx.classes is not None
        present = self.counts > 0
        return ClassMomentsState(
            self.n,
            self.ctx.shift,
            self.ctx.classes[present],
            self.counts[present],
            self.sums.numpy()[present],
            self.sumsq[present],
        )


@dataclass
class SubsampleState:
    """Finalised ``subsample``: ``rows`` (m, d) at global ``index`` (increasing) out of ``n`` rows."""

    n: int
    index: np.ndarray
    rows: np.ndarray
    seed: int
    knn_k: int
    _knn: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    device: torch.device | None = None  # where the kNN search runs

    @property
    def note(self) -> str:
        if len(self.index) == self.n:
            return ""
        return f"subsampled {len(self.index)} of {self.n} rows (seed {self.seed}; raise max_rows for more)"

    def knn(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Sorted distances and indices (m, k) of each sampled row's k nearest other sampled rows."""
        from neurometry.measures.intrinsic_dimension import knn

        if self._knn is None or self._knn[0].shape[1] < k:
            self._knn = knn(self.rows, max(k, self.knn_k), device=self.device)
        return self._knn[0][:, :k], self._knn[1][:, :k]


class Subsample(Accumulator):
    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.reservoir = RowReservoir(ctx.max_rows, ctx.seed)

    def update(self, b: Block) -> None:
        self.reservoir.update(b.flat, b.start)
        self.n += b.rows

    def finalize(self) -> SubsampleState:
        index, rows = self.reservoir.result()
        return SubsampleState(self.n, index, rows, self.ctx.seed, self.ctx.knn_k, device=self.ctx.device)


@dataclass
class AttentionState:
    """Finalised ``attention`` over H heads: per-head sums over real (not all-zero) query rows."""

    n: int
    count: np.ndarray
    entropy_sum: np.ndarray
    sink_sum: np.ndarray


class Attention(Accumulator):
    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.sums: list[np.ndarray] | None = None

    def update(self, b: Block) -> None:
        if b.x.ndim != 3:
            raise NeurometryError(
                f"attention measures need rows of attention probabilities shaped (rows, heads, keys); got rows of shape "
                f"{b.x.shape[1:]}; record the attention-probability point"
            )
        p = np.asarray(b.x, dtype=np.float64)
        total = p.sum(-1)
        real = np.any(p != 0, axis=-1)
        bad = real & ((np.abs(total - 1) > 1e-2) | np.any(p < 0, axis=-1))
        if bad.any():
            r, h = np.argwhere(bad)[0]
            raise NeurometryError(
                f"row {b.start + r}, head {h} is not a probability distribution (sums to {total[r, h]:.4g}); "
                "pass softmax attention probabilities, zero-padded beyond the real keys"
            )
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        parts = [real.sum(0), -plogp.sum(-1).sum(0), np.where(real, p[..., 0], 0.0).sum(0)]
        self.sums = parts if self.sums is None else [a + q for a, q in zip(self.sums, parts, strict=True)]
        self.n += b.rows

    def finalize(self) -> AttentionState:
        assert self.sums is not None
        return AttentionState(self.n, *self.sums)


@dataclass
class GroupsState:
    """Finalised ``groups``: the relative rank-1 residual of each input with >= 2 nonzero rows."""

    n: int
    residuals: np.ndarray
    n_skipped: int


def rank1_residual(x: np.ndarray) -> float | None:
    """||X - best rank-1 approximation||_F / ||X||_F of a (T, d) matrix (None if T < 2 or X = 0)."""
    if len(x) < 2:
        return None
    s = np.linalg.svd(np.asarray(x, dtype=np.float64), compute_uv=False)
    total = float(np.sum(s * s))
    if total == 0:
        return None
    return float(np.sqrt(np.sum(s[1:] ** 2) / total))


class Groups(Accumulator):
    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.current: Any = None
        self.buffer: list[np.ndarray] = []
        self.done: set[Any] = set()
        self.residuals: list[float] = []
        self.skipped = 0

    def _close(self) -> None:
        if self.buffer:
            r = rank1_residual(np.concatenate(self.buffer))
            if r is None:
                self.skipped += 1
            else:
                self.residuals.append(r)
            self.done.add(self.current)
        self.buffer = []

    def update(self, b: Block) -> None:
        assert self.ctx.input_ids is not None
        ids = self.ctx.input_ids[b.start : b.start + b.rows]
        cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(ids)], strict=True):
            key = ids[lo].item()
            if key != self.current:
                self._close()
                if key in self.done:
                    raise NeurometryError(
                        f"the rows of input {key!r} are not contiguous (seen again at row {b.start + lo}); "
                        "sort the rows by input id"
                    )
                self.current = key
            self.buffer.append(np.array(b.flat[lo:hi]))
        self.n += b.rows

    def finalize(self) -> GroupsState:
        self._close()
        return GroupsState(self.n, np.array(self.residuals), self.skipped)


@dataclass
class PairState:
    """Finalised ``pair``: sum of row cosines over the rows where neither vector is zero."""

    n: int
    n_zero: int
    sum_cos: float


class Pair(Accumulator):
    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.n_zero = 0
        self.sum_cos = 0.0

    def update(self, b: Block) -> None:
        assert b.other is not None
        x, y = b.f64, np.asarray(b.other.reshape(b.rows, -1), dtype=np.float64)
        nx, ny = np.sqrt(np.einsum("ij,ij->i", x, x)), np.sqrt(np.einsum("ij,ij->i", y, y))
        ok = (nx > 0) & (ny > 0)
        self.sum_cos += float((np.einsum("ij,ij->i", x[ok], y[ok]) / (nx[ok] * ny[ok])).sum())
        self.n_zero += int((~ok).sum())
        self.n += b.rows

    def finalize(self) -> PairState:
        return PairState(self.n, self.n_zero, self.sum_cos)


ACCUMULATORS: dict[str, type[Accumulator]] = {
    "moments": Moments,
    "unit_sum": UnitSum,
    "unit_stats": UnitStats,
    "max_abs": MaxAbs,
    "class_moments": ClassMoments,
    "subsample": Subsample,
    "attention": Attention,
    "groups": Groups,
    "pair": Pair,
}
