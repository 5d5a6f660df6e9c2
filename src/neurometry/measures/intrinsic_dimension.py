"""Intrinsic dimension from nearest neighbours: TwoNN and the Levina-Bickel MLE.

Both run on the seeded ``subsample`` of at most ``max_rows`` rows (20,000 by default; stated in
the result's ``note``) and share one exact kNN search (:func:`knn`). Conventions follow
scikit-dimension 0.5 (``skdim.id.TwoNN``, ``skdim.id.MLE``) so that results agree with it to
rounding on the same data and parameters.

On a device (``device=``, a ``torch.device``) the kNN search is the exact float64 search of every row,
in blocks there (no screen to certify: the full search is fast there); only the (n, k) results come back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from functools import partial
from typing import Any

import numba
import numpy as np
import torch

from neurometry.errors import NeurometryError
from neurometry.measures.accumulators import SubsampleState
from neurometry.measures.registry import MeasureResult, register, result
from neurometry.measures.streaming import run_one
from neurometry.threads import map_blocks

BLOCK_BYTES = 64 << 20
"""Memory for one block of float64 distances in the full search (block rows x n)."""

BRUTE_MAX_ROWS = 1024
"""Up to this many rows the kNN is a plain float64 brute-force search; above, it is screened."""

SCREEN_COLS = 128
"""Query rows per screening matmul: its (n, SCREEN_COLS) low-precision output stays in cache."""

GROUP = 32
"""Rows per group in the two-level candidate selection (group minima, then members)."""

FEW_ROWS = 64
"""Rows that fail a screen go straight to the full float64 search when there are at most this many."""

KNN_STATS: dict[str, Any] = {}
"""How the last :func:`knn` call went: rows per stage (``screened_bf16``, ``failed_bf16``, ...)."""

_U_ACC = 2.0**-24  # unit roundoff of the float32 accumulation
_UNDERFLOW = 2.0**-124  # per-term slack for products the matmul may flush to zero (denormals)
_LOWP = {  # dtype -> (unit roundoff of the matmul output, int dtype of the same width)
    "bf16": (torch.bfloat16, 2.0**-8, torch.int16),
    "f32": (torch.float32, 0.0, torch.int32),
}
_FAST_BF16: bool | None = None


def _scratch(store: threading.local | None, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor of ``shape``, reused across calls from ``store`` (one per thread).

    Large temporaries allocated afresh in every block are page-faulted in every time; reusing one
    buffer per thread (``store`` lives for one :func:`knn` call) avoids that.
    """
    numel = 1
    for s in shape:
        numel *= s
    if store is None:
        return torch.empty(shape, dtype=dtype)
    buf = getattr(store, name, None)
    if buf is None or buf.numel() < numel or buf.dtype != dtype:
        buf = torch.empty(numel, dtype=dtype)
        setattr(store, name, buf)
    return buf[:numel].view(shape)


def _accumulates_in_f32(a: torch.Tensor, b: torch.Tensor, u_out: float) -> bool:
    """Whether ``torch.mm(a, b.T)`` stays within the float32-accumulation bound used by :func:`knn`."""
    a64, b64 = a.double(), b.double()
    exact = a64 @ b64.T
    gam = a.shape[1] * _U_ACC / (1 - a.shape[1] * _U_ACC)
    bound = gam * (a64.abs() @ b64.abs().T)
    err = (torch.mm(a, b.T).double() - exact).abs()
    return bool((err <= u_out * (exact.abs() + bound) * (1 + 1e-6) + bound).all())


def _f32_ok() -> bool:
    """float32 matmuls are IEEE float32 (not bf16/tf32 reduced precision set by the user)."""
    if torch.get_float32_matmul_precision() != "highest":
        return False
    mk = getattr(getattr(torch.backends, "mkldnn", None), "matmul", None)
    prec = getattr(mk, "fp32_precision", "none") if mk is not None else "none"
    return prec in ("none", "ieee")


def _bf16_fast() -> bool:
    """Once per process: is a bf16 matmul here much faster than float32 (AMX), and f32-accumulated?

    AMX tiles (as torch reports them) decide at once; otherwise a small bf16 and float32 matmul of the
    screening shape are timed (best of 5) and bf16 must be at least twice as fast.
    """
    global _FAST_BF16
    if _FAST_BF16 is None:
        g = torch.Generator().manual_seed(0)
        a = torch.randn(4096, 416, generator=g)
        b = torch.randn(SCREEN_COLS, 416, generator=g)
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
        fast = bool(amx is not None and amx())
        if not fast:
            times = {}
            for dt in (torch.float32, torch.bfloat16):
                aa, bb = a.to(dt), b.to(dt)
                torch.mm(aa, bb.T)
                best = float("inf")
                for _ in range(5):
                    t = time.perf_counter()
                    torch.mm(aa, bb.T)
                    best = min(best, time.perf_counter() - t)
                times[dt] = best
            fast = times[torch.bfloat16] * 2 < times[torch.float32]
        _FAST_BF16 = fast and _accumulates_in_f32(a[:256].bfloat16(), b.bfloat16(), 2.0**-8)
    return _FAST_BF16


class _Screen:
    """Low-precision screening matrix of the scaled, centred data and the per-row error terms.

    Row j of ``a`` is [z_j, 1, 1, 1, s_j1, s_j2, s_j3] and the query vector of row i is
    [-2 z_i, s_i1, s_i2, s_i3, 1, 1, 1], with z the rows rounded to the low precision and s_j1 + s_j2 + s_j3
    the low-precision split of ||z_j||^2, so one matmul gives ||z_i - z_j||^2 directly (small for
    near pairs, so its output rounding is relative to the distance itself).
    """

    def __init__(self, xc: torch.Tensor, mode: str, outliers: torch.Tensor, top: float):
        dt, self.u_out, self.idt = _LOWP[mode]
        n, d = xc.shape
        # top >= max |xc|: scale by a power of two (exact) to max |z| < 1 unless already moderate
        self.e = 0 if 2.0**-30 <= top <= 2.0**30 else int(np.frexp(top)[1])
        tiny = torch.finfo(dt).tiny  # denormals the matmul may flush to zero: < tiny per element
        low = partial(torch.Tensor.to, dtype=dt)
        kk = -(-(d + 6) // 32) * 32  # contraction length padded to the AMX tile
        npad = -(-n // GROUP) * GROUP
        a = torch.zeros(npad, kk, dtype=dt)
        z = a[:n, :d]
        z.copy_(xc * 2.0**-self.e if self.e else xc)  # rounded to nearest, as .to(dt)
        # input rounding: ||x~_i - (x_i - c)||, in data units (plus any flushed denormals)
        self.eps = torch.empty(n, dtype=torch.float64)
        s = torch.empty(n, dtype=torch.float64)
        for lo in range(0, n, 2048):  # in slices that stay in cache
            z64 = z[lo : lo + 2048].double()
            back = z64 * 2.0**self.e if self.e else z64
            torch.linalg.vector_norm(back - xc[lo : lo + 2048], dim=1, out=self.eps[lo : lo + 2048])
            torch.linalg.vecdot(z64, z64, out=s[lo : lo + 2048])
        self.eps = self.eps * (1 + 1e-9) + d**0.5 * tiny * 2.0**self.e
        p1 = low(s)
        r1 = s - p1.double()
        p2 = low(r1)
        r2 = r1 - p2.double()
        p3 = low(r2)
        rho = (r2 - p3.double()).abs() + d * 2.0**-52 * s + 3 * tiny  # split remainder, f64 rounding of s
        absp = p1.double().abs() + p2.double().abs() + p3.double().abs()
        norm = s.sqrt() * (1 + 1e-12)
        a[:n, d : d + 3] = 1
        a[:n, d + 3], a[:n, d + 4], a[:n, d + 5] = p1, p2, p3
        q = torch.zeros(n, kk, dtype=dt)
        q[:, :d].copy_(z).mul_(-2)  # exact (before the dummy rows of a, z among them, are cleared)
        q[:, d], q[:, d + 1], q[:, d + 2] = p1, p2, p3
        q[:, d + 3 : d + 6] = 1
        dummy = torch.cat([outliers, torch.arange(n, npad)])  # rows never screened: +inf everywhere
        a[dummy] = 0
        a[dummy, d + 3] = float("inf")
        self.a, self.q, self.n, self.npad = a, q, n, npad
        keep = torch.ones(n, dtype=torch.bool)
        keep[outliers] = False
        nu = (d + 6) * _U_ACC
        gam = nu / (1 - nu) if nu < 1 else float("inf")
        nm, am, rm, self.em = (float(v[keep].max()) for v in (norm, absp, rho, self.eps))
        # |computed sum - ||z_i - z_j||^2| <= bound_i for every screened j (scaled units)
        self.bound = gam * (2 * norm * nm + absp + am) + rho + rm + (d + 6) * _UNDERFLOW

    def block(
        self, x64: np.ndarray, rows: torch.Tensor, k: int, kc: int, outliers: np.ndarray, store: threading.local
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Exact k nearest of ``rows`` where the screen certifies them: (dist, idx, certified, pairs).

        One low-precision matmul gives c_ij ~ ||z~_i - z~_j||^2 for every point j (npad, b); the
        group minima (a group being the rows {p, p + per, p + 2 per, ...}) feed ``_certify_block``,
        which does steps 1-4 of :func:`knn` for each query row in one compiled pass.
        """
        b = len(rows)
        out = _scratch(store, "screen", (self.npad, b), self.a.dtype)
        torch.mm(self.a, self.q[rows].T, out=out)
        out[rows, torch.arange(b)] = float("inf")
        iv = out.view(self.idt)  # non-negative floats order as their bit patterns
        per = self.npad // GROUP
        gm = iv.view(GROUP, per, b).amin(0).T.contiguous()  # (b, per)
        dist = np.empty((b, k))
        idx = np.empty((b, k), dtype=np.int64)
        ok = np.empty(b, dtype=np.bool_)
        r = rows.numpy()
        pairs = _certify_block(
            iv.numpy(), gm.numpy(), kc + 2, 16 if self.idt == torch.int16 else 0, x64, r,
            self.bound.numpy()[r], self.eps.numpy(), self.em, self.u_out, 2.0**self.e, outliers,
            dist, idx, ok,
        )
        return dist, idx, ok, pairs


@numba.njit(nogil=True, cache=True)
def _as_float(v: int, shift: int, word: np.ndarray, value: np.ndarray) -> float:  # pragma: no cover
    """The float whose bit pattern is the integer ``v`` (bfloat16 when shift = 16, float32 when 0)."""
    word[0] = np.uint32((np.int64(v) & 0xFFFFFFFF) << shift) if shift else np.uint32(np.int64(v) & 0xFFFFFFFF)
    return np.float64(value[0])


@numba.njit(nogil=True, cache=True)
def _sort_prefix(a: np.ndarray, n: int) -> None:  # pragma: no cover - compiled
    """Sort a[:n] in place (insertion sort: n is a few dozen here)."""
    for i in range(1, n):
        v = a[i]
        pos = i
        while pos > 0 and a[pos - 1] > v:
            a[pos] = a[pos - 1]
            pos -= 1
        a[pos] = v


@numba.njit(nogil=True, cache=True)
def _certify_block(
    iv: np.ndarray,
    gm: np.ndarray,
    groups: int,
    shift: int,
    x: np.ndarray,
    rows: np.ndarray,
    bound: np.ndarray,
    eps: np.ndarray,
    eps_max: float,
    u_out: float,
    scale: float,
    outliers: np.ndarray,
    dist: np.ndarray,
    idx: np.ndarray,
    ok: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """Steps 1-4 of :func:`knn` for each query column r of one screened block; returns the pair count.

    iv (npad, b): screened values as integers (their order is the float order); gm (b, per): group
    minima. t_r is the ``groups``-th smallest minimum; the candidates are the points with
    c_rj < t_r (all in groups whose minimum is below t_r), and every other point is at least L_r
    away. Candidates whose lower bound exceeds the k-th smallest upper bound are dropped, the
    unscreened ``outliers`` added, and the rest ranked by exact distance (``_k_nearest``); the row is
    certified when its k-th distance is at most L_r.
    """
    b, per = gm.shape
    members = iv.shape[0] // per
    k = dist.shape[1]
    word = np.empty(1, dtype=np.uint32)
    value = word.view(np.float32)
    best = np.empty(groups, dtype=gm.dtype)
    cap = groups * members
    cj = np.empty(cap, dtype=np.int64)
    lo = np.empty(cap)
    hi = np.empty(cap)
    his = np.empty(cap)
    keep = np.empty(cap + len(outliers), dtype=np.int64)
    total = 0
    for r in range(b):
        g = gm[r]
        for p in range(groups):  # the `groups` smallest minima, kept sorted
            best[p] = g[p]
        _sort_prefix(best, groups)
        for p in range(groups, per):
            v = g[p]
            if v < best[groups - 1]:
                pos = groups - 1
                while pos > 0 and best[pos - 1] > v:
                    best[pos] = best[pos - 1]
                    pos -= 1
                best[pos] = v
        t = best[groups - 1]
        i = rows[r]
        bnd = bound[r]
        m = 0
        for p in range(per):
            if g[p] < t:
                for q in range(members):
                    v = iv[p + per * q, r]
                    if v < t:
                        c = _as_float(v, shift, word, value)
                        j = p + per * q
                        cj[m] = j
                        lo[m] = np.sqrt(max(c / (1 + u_out) - bnd, 0.0)) * (scale * (1 - 1e-12)) - eps[i] - eps[j]
                        up = c / (1 - u_out) if c > 0 else c * (1 + u_out)
                        hi[m] = np.sqrt(max(up + bnd, 0.0)) * (scale * (1 + 1e-12)) + eps[i] + eps[j]
                        m += 1
        # prune: a pair whose lower bound exceeds the k-th smallest upper bound of its row is
        # strictly farther than k candidates, so never among the k nearest
        uk = np.inf
        if m >= k:
            his[:m] = hi[:m]
            _sort_prefix(his, m)  # a few dozen values: insertion sort compiles fast and runs fast
            uk = his[k - 1]
        kept = 0
        for a in range(m):
            if lo[a] <= uk:
                keep[kept] = cj[a]
                kept += 1
        for j in outliers:  # never screened: every row's candidates
            if j != i:
                keep[kept] = j
                kept += 1
        _sort_prefix(keep, kept)  # index order, so ties go to the lower index
        cand = keep[:kept]
        total += kept
        _k_nearest(x, i, cand, dist[r], idx[r])
        tf = -np.inf if t < 0 else _as_float(t, shift, word, value)  # negative int: a negative float
        low = np.sqrt(max(tf / (1 + u_out) - bnd, 0.0)) * (scale * (1 - 1e-12)) - eps[i] - eps_max
        ok[r] = np.isfinite(dist[r, k - 1]) and dist[r, k - 1] * (1 + 1e-12) <= low
    return total


@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract", "nsz"})
def _k_nearest(x: np.ndarray, i: int, cand: np.ndarray, dist: np.ndarray, idx: np.ndarray) -> None:  # pragma: no cover
    """dist/idx (k,): the k nearest of row i among ``cand`` (increasing indices), +inf when too few.

    Float64 norms of the differences, summed in any order (within a few ulps of a sequential sum);
    each candidate row is read once from memory, with no (pairs, d) difference array: that gather
    dominated the search. A candidate displaces another only when strictly nearer, so ties keep the
    lower index.
    """
    k = dist.shape[0]
    d = x.shape[1]
    dist[:] = np.inf
    idx[:] = i
    filled = 0
    for jj in cand:
        s = 0.0
        for c in range(d):
            t = x[jj, c] - x[i, c]
            s += t * t
        v = np.sqrt(s)
        if filled == k and v >= dist[k - 1]:
            continue
        pos = filled if filled < k else k - 1
        while pos > 0 and dist[pos - 1] > v:
            dist[pos] = dist[pos - 1]
            idx[pos] = idx[pos - 1]
            pos -= 1
        dist[pos] = v
        idx[pos] = jj
        if filled < k:
            filled += 1


def _brute(x64: torch.Tensor, rows: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact float64 k nearest of ``rows`` among all rows (full rows, in blocks of BLOCK_BYTES), where x64 is."""
    n = len(x64)
    dist = torch.empty(len(rows), k, dtype=torch.float64, device=x64.device)
    idx = torch.empty(len(rows), k, dtype=torch.int64, device=x64.device)
    step = max(1, BLOCK_BYTES // (8 * n))
    for lo in range(0, len(rows), step):
        r = rows[lo : lo + step]
        full = torch.cdist(x64[r], x64, compute_mode="donot_use_mm_for_euclid_dist")  # from differences
        full[torch.arange(len(r), device=x64.device), r] = float("inf")
        srt = torch.sort(full, dim=1, stable=True)
        dist[lo : lo + step], idx[lo : lo + step] = srt.values[:, :k], srt.indices[:, :k]
    return dist, idx


def knn(x: np.ndarray, k: int, device: torch.device | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of every row of X (n, d) among the other rows (Euclidean).

    Distances are float64 (the norm of the differences, no matmul shortcut) and ties are
    broken by the lower index, as a stable sort of the full float64 distance rows would. Up to
    ``BRUTE_MAX_ROWS`` rows that full search is what runs. Above, candidates are screened and then
    certified:

    1. Screen. The rows less c (a coordinate-wise median of <= 1024 rows), times 2^-e (a power of two,
       e = 0 unless they are far from 1), are rounded to bfloat16 where a bf16 matmul is fast (AMX, or
       timed at least twice as fast as float32, once per process), else to float32: z~. One matmul
       per block of ``SCREEN_COLS`` query rows against all rows gives c_ij ~ ||z~_i - z~_j||^2
       (augmented vectors, see ``_Screen``, so the output is the squared distance itself); a row's
       candidates are the points with c_ij < t_i, t_i the largest of its k + m + 2 smallest group
       minima (m = max(6, k // 2); groups of ``GROUP`` rows), found among those groups' members, never
       an n x n matrix: about k + m + 2 per row, and every other point j has c_ij >= t_i.
    2. Bound. Products summed in float32 in any order (N = d + 6 terms, gamma = N u / (1 - N u),
       u = 2^-24) and rounded once to the output (u_out = 2^-8 for bf16, 0 for float32; the float32
       accumulation is checked once per process on a test product) give, for every screened pair,
       |c_ij / (1 +- u_out) - ||z~_i - z~_j||^2| <= B_i
         = gamma (2 |z~_i| max|z~| + a_i + max a) + rho_i + max rho + N 2^-124,
       a_i the sum of the |pieces| that ||z~_i||^2 is split into, rho_i the remainder of that split
       (plus its float64 rounding), 2^-124 per term for flushed denormals. The rounding of the inputs
       moves a distance by at most eps_i + eps_j, eps_i = ||2^e z~_i - (x_i - c)|| computed per row
       (about 2^-9 |x_i - c| in bf16). So every non-candidate j has a true distance
       ||x_i - x_j|| >= L_i = 2^e sqrt(max(0, t_i / (1 + u_out) - B_i)) - eps_i - max eps.
       The max terms run over all rows except the (at most 32) rows with a norm above twice the 33rd
       largest, which are not screened but added to every row's candidates.
    3. Prune. The same bound per pair (eps_j in place of max eps) puts each candidate's true distance
       in [lo_ij, hi_ij]; a candidate with lo_ij above the k-th smallest hi_ij of its row is strictly
       farther than k others and is dropped (about 23 of 32 remain for k = 20 on the data below).
    4. Certify. The remaining candidates' exact distances (one compiled pass that reads each candidate
       row once, see ``_k_nearest_of_pairs``) are ranked, ties to the lower index; if the
       k-th is <= L_i (less 1e-12 relative), the row's k nearest are certain. Other rows go through the float32 screen (or, when
       at most ``FEW_ROWS``, straight on) to the full float64 search. ``KNN_STATS`` counts the rows
       at each stage: on 20,000 x 384 planted-subspace data 0 (k = 2) and 1 (k = 20) fail in bf16.

    With ``device`` (a ``torch.device``) every row takes the full float64 search, in blocks there, and
    only the results come back: the same neighbours and the same distances up to the order in which
    each norm's squares are summed.

    Returns:
        (distances, indices), both (n, k), sorted by distance, the row itself excluded.
    """
    x64 = np.ascontiguousarray(x, dtype=np.float64)
    n = len(x64)
    if not 1 <= k <= n - 1:
        raise NeurometryError(
            f"{k} neighbours need at least {k + 1} rows, got {n}; use fewer neighbours or more rows"
        )
    if not np.isfinite(x64).all():
        raise NeurometryError("knn: the data contain NaN or Inf; remove or fill those rows")
    t64 = torch.from_numpy(x64)
    if device is not None:
        dist, idx = _brute(t64.to(device, non_blocking=True), torch.arange(n, device=device), k)
        KNN_STATS.clear()
        KNN_STATS.update({"rows": n, "k": k, "brute": n, "device": str(device)})
        return dist.cpu().numpy(), idx.cpu().numpy()
    # centre on the coordinate-wise median of at most 1024 evenly spaced rows: any fixed vector would do,
    # a robust one keeps a far outlier from inflating every row's norm (and so the rounding bound)
    xc = t64 - t64[:: max(1, n // 1024)].median(0).values
    norms = torch.linalg.vector_norm(xc, dim=1)
    top = float(norms.max())
    kc = k + max(6, k // 2)
    KNN_STATS.clear()
    KNN_STATS.update({"rows": n, "k": k, "candidates": kc})
    todo = torch.arange(n)
    if n <= max(BRUTE_MAX_ROWS, GROUP * (kc + 2)) or not 1e-150 < top < 1e150:
        dist, idx = _brute(t64, todo, k)
        KNN_STATS["brute"] = n
        return dist.numpy(), idx.numpy()
    dist = torch.empty(n, k, dtype=torch.float64)
    idx = torch.empty(n, k, dtype=torch.int64)
    ref = torch.topk(norms, 33).values[-1]
    outliers = torch.nonzero(norms > 2 * ref).flatten()
    KNN_STATS["outliers"] = len(outliers)
    unscreened = outliers.numpy().copy()
    modes = (["bf16"] if _bf16_fast() else []) + (["f32"] if _f32_ok() else [])
    for mode in modes:
        if len(todo) <= FEW_ROWS:  # cheaper straight to the full search than another screen
            break
        scr = _Screen(xc, mode, outliers, float(norms.max()))

        pairs: list[int] = []
        store = threading.local()  # per-thread scratch buffers, for this screen only

        def block(
            rows: torch.Tensor, scr: _Screen = scr, pairs: list[int] = pairs, store: threading.local = store
        ) -> torch.Tensor:
            dd, ii, ok, count = scr.block(x64, rows, k, kc, unscreened, store)
            pairs.append(count)  # list.append: safe from the block threads
            ok = torch.from_numpy(ok)
            dist[rows[ok]], idx[rows[ok]] = torch.from_numpy(dd[ok.numpy()]), torch.from_numpy(ii[ok.numpy()])
            return rows[~ok]

        failed = map_blocks(block, list(torch.split(todo, SCREEN_COLS)))
        KNN_STATS[f"screened_{mode}"] = len(todo)
        KNN_STATS[f"exact_pairs_{mode}"] = sum(pairs)
        todo = torch.cat(failed)
        KNN_STATS[f"failed_{mode}"] = len(todo)
    if len(todo):
        dist[todo], idx[todo] = _brute(t64, todo, k)
        KNN_STATS["brute"] = len(todo)
    return dist.numpy(), idx.numpy()


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
    x: np.ndarray,
    discard_fraction: float = 0.1,
    *,
    seed: int = 0,
    max_rows: int = 20000,
    device: torch.device | None = None,
) -> MeasureResult:
    """TwoNN intrinsic dimension of X (n, d) (Facco et al. 2017, Sci. Rep. 7:12140).

    mu_i = r2_i / r1_i (second over first nearest-neighbour distance); the largest ``discard_fraction``
    of the mu are dropped and the slope of -log(1 - F_emp(mu)) against log(mu), fitted through the
    origin with F_emp(mu_(i)) = i / N over all N ratios, is the dimension (scikit-dimension's
    ``TwoNN(discard_fraction, method='linear')``; the values in scikit-dimension's repository test
    ``test_results.py``, 4.05496 and 4.11323, come from an off-by-one F_emp = (i - 1) / N, see
    ``docs/measures.md``). Rows with a duplicate (r1 = 0) are dropped, as skdim intends; distances are
    computed from differences, so every duplicate has r1 exactly 0 at any width (skdim's path above 25
    features, sqrt(|x|^2 + |y|^2 - 2 x.y), leaves some a rounding-sized r1 and keeps them). At most
    ``max_rows`` rows, a seeded subsample, are used. ``device``: where the kNN search runs (:func:`knn`).
    """
    return run_one("twonn", x, discard_fraction=discard_fraction, seed=seed, max_rows=max_rows, device=device)


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
    x: np.ndarray,
    n_neighbors: int = 20,
    comb: str = "mle",
    *,
    seed: int = 0,
    max_rows: int = 20000,
    device: torch.device | None = None,
) -> MeasureResult:
    """Maximum-likelihood intrinsic dimension of X (n, d) (Levina & Bickel 2004, NeurIPS).

    Local estimate at each row: (k - 1) / sum_{j=1..k} log(R_k / R_j) over its k = ``n_neighbors``
    nearest neighbours. ``comb='mle'`` (default) combines them as 1 / mean(1 / local) (MacKay &
    Ghahramani 2005), ``'mean'`` / ``'median'`` as named: scikit-dimension's
    ``MLE().fit(X, n_neighbors=k, comb=comb)``. Rows with a duplicate (R_1 = 0) are dropped. At most
    ``max_rows`` rows, a seeded subsample, are used. ``device``: where the kNN search runs (:func:`knn`).
    """
    return run_one(
        "mle_id", x, n_neighbors=n_neighbors, comb=comb, seed=seed, max_rows=max_rows, device=device
    )
