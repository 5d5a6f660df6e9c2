"""Nearest-neighbour alignment: mutual kNN, cycle kNN and CKNNA.

Huh, Cheung, Wang & Isola (2024), "The Platonic Representation Hypothesis", ICML; conventions follow
their code (github.com/minyoungg/platonic-rep, ``metrics.py``, ``AlignmentMetrics``):

- Rows are L2-normalised (their ``measure_alignment.compute_score`` does ``F.normalize`` before every
  metric) and neighbours are ranked by inner product, i.e. cosine similarity. A row's own entry is
  excluded, so every row has ``k`` neighbours among the other ``n - 1``. An all-zero row stays zero
  (as ``F.normalize`` leaves it): its similarity to every row is 0.
- Ties are broken deterministically: equal similarities go to the lower original row index (the
  reference's ``argsort``/``topk`` leave ties unspecified). Ranking by original index, not by position,
  keeps the neighbour sets of a row-shuffled representation the shuffled sets.
- Their pipeline's outlier clipping (``remove_outliers``, a feature-preparation step, not part of the
  metrics) is not applied.
- Their ``cknna`` divides by ``sqrt(HSIC(K, K) HSIC(L, L)) + 1e-6``; by default we divide by the square
  root alone (``epsilon=0``), so a value is the ratio of the paper's formula. ``epsilon=1e-6`` reproduces
  their number (the published tables); the two differ by a relative ~1e-6 / sqrt(HSIC(K, K) HSIC(L, L)).
  The unbiased neighbour HSICs are small and shrink with n: for k = 10 on 100, 500 and 1,024 stimuli
  of related random data the denominator was 3e-2, 9e-3 and 5e-3, and the two values differed by
  3e-5, 1.1e-4 and 2.1e-4 relative.

Everything is built from per-row neighbour lists (n, k) found in blocks of rows, so no n x n matrix is
held: n = 20,000 stimuli are fine (time O(n^2 d), memory O(n k + block x n)). CKNNA needs the kernel
only on the neighbour pairs, so it uses the same lists and scales the same way (the reference forms
n x n masked kernels; the sums below are the same sums over their non-zero entries).

Bootstrap resamples (``take`` with repeated rows): two copies of the same original stimulus would be
each other's nearest neighbours (similarity 1) and inflate every score. The state carries each row's
original index and copies of one original row are excluded from each other's neighbour lists, just
like the row itself; a row's other neighbours may include several copies of one other stimulus.

With ``device=`` (a ``torch.device``) the float64 similarity blocks and each row's k-th largest similarity
are computed there; only the candidate pairs come back, ordered by the same tie rule on the CPU.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from neurometry.arrays import as_rows, check_same_rows
from neurometry.compare.registry import Metric, register
from neurometry.errors import NeurometryError

BLOCK_BYTES = 32 << 20
"""Memory for one block of float64 similarities (block rows x n) in the neighbour search."""

DEVICE_BLOCK_BYTES = 256 << 20
"""The same on a device, where larger blocks keep it busy."""


@dataclass(frozen=True)
class NeighbourState:
    """One representation's neighbour lists.

    Attributes:
        rows: (n, d) float64 features as given (normalised on the fly; kept for re-preparing).
        inv_norm: (n,) 1 / L2 norm of each row (0 for an all-zero row).
        ids: (n,) original row index of each row (repeats after a bootstrap ``take``).
        neighbours: (n, k) int64 positions of each row's k nearest other rows, nearest first.
        similarity: (n, k) float64 cosine similarity to each of those neighbours.
        device: where the similarities are computed (None: the CPU); ``take`` searches there again.
    """

    rows: np.ndarray
    inv_norm: np.ndarray
    ids: np.ndarray
    neighbours: np.ndarray
    similarity: np.ndarray
    device: torch.device | None = None

    @property
    def k(self) -> int:
        return self.neighbours.shape[1]


def _check_k(k: Any, n: int, name: str, least: int = 1) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise NeurometryError(f"{name}: k must be a whole number of neighbours, got {k!r}")
    k = int(k)
    if k < least:
        raise NeurometryError(f"{name} needs k >= {least} neighbours, got k={k}")
    if k >= n:
        raise NeurometryError(
            f"{name} with k={k} neighbours needs more than k stimuli, got {n}; use k <= {n - 1} or more stimuli"
        )
    return k


def _inverse_norms(rows: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    inv = np.zeros_like(norms)
    np.divide(1.0, norms, out=inv, where=norms > 0)
    return inv


def _nearest(
    rows: np.ndarray,
    inv_norm: np.ndarray,
    ids: np.ndarray,
    k: int,
    name: str,
    device: torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k most cosine-similar rows of each row, excluding rows with the same original id.

    Returns positions (n, k) int64 and similarities (n, k) float64, ordered by decreasing similarity,
    then increasing original id, then increasing position. With ``device`` the float64 similarities
    and each row's k-th largest one are computed there and only the candidates (those at least as
    similar: k per row but for ties) come back to be ordered.
    """
    n = len(rows)
    _, first, stimulus = np.unique(ids, return_index=True, return_inverse=True)
    stimulus = stimulus.reshape(-1)
    copies = np.bincount(stimulus)
    if k > n - copies.max():
        raise NeurometryError(
            f"{name} with k={k} neighbours: with copies of its own stimulus left out a row has only "
            f"{n - copies.max()} other rows (a resample with too few distinct stimuli); use a smaller k"
        )
    repeats = len(first) < n
    # Similarities are computed once per distinct stimulus and copied to its repeats, so copies tie
    # exactly and the tie rule, not rounding, decides between them.
    base, base_inv_norm = (rows[first], inv_norm[first]) if repeats else (rows, inv_norm)
    m = len(base)
    # tie-break rank: original id first, position second
    tie_rank = np.empty(n, dtype=np.int64)
    tie_rank[np.lexsort((np.arange(n), ids))] = np.arange(n)

    with warnings.catch_warnings():  # torch warns about read-only arrays; we never write to them
        warnings.simplefilter("ignore")
        all_base = torch.from_numpy(base)
        if device is not None:
            all_base = all_base.to(device, non_blocking=True)
            device_inv_norm = torch.from_numpy(base_inv_norm).to(device, non_blocking=True)
            device_stimulus = torch.from_numpy(stimulus).to(device, non_blocking=True)
    block = max(1, (BLOCK_BYTES if device is None else DEVICE_BLOCK_BYTES) // (8 * n))
    neighbours = np.empty((m, k), dtype=np.int64)
    similarity = np.empty((m, k), dtype=np.float64)
    for start in range(0, m, block):
        stop = min(start + block, m)
        b = stop - start
        if device is None:
            # cosine similarity: scale the inner products rather than copy a normalised matrix
            sim = torch.mm(all_base[start:stop], all_base.T).numpy()
            sim *= base_inv_norm[start:stop, None] * base_inv_norm[None, :]
            sim[np.arange(b), np.arange(start, stop)] = -np.inf  # the stimulus itself
            if repeats:
                sim = sim[:, stimulus]  # one column per row, copies of the stimulus included (all -inf)
            kth = np.partition(sim, n - k, axis=1)[:, n - k]
            # every row has at least k candidates (>= its k-th largest); more only when there are ties
            cand_row, cand_col = np.nonzero(sim >= kth[:, None])
            cand_sim = sim[cand_row, cand_col]
        else:  # the same steps there; only the candidates come back
            on = torch.mm(all_base[start:stop], all_base.T)
            on *= device_inv_norm[start:stop, None] * device_inv_norm[None, :]
            on[torch.arange(b, device=device), torch.arange(start, stop, device=device)] = -torch.inf
            if repeats:
                on = on[:, device_stimulus]
            kth_on = torch.topk(on, k, dim=1, sorted=True).values[:, k - 1]
            rows_on, cols_on = torch.nonzero(on >= kth_on[:, None], as_tuple=True)
            cand_row, cand_col = rows_on.cpu().numpy(), cols_on.cpu().numpy()
            cand_sim = on[rows_on, cols_on].cpu().numpy()
        order = np.lexsort((tie_rank[cand_col], -cand_sim, cand_row))
        counts = np.bincount(cand_row, minlength=b)
        first_candidate = np.concatenate(([0], np.cumsum(counts)[:-1]))
        pick = order[first_candidate[:, None] + np.arange(k)]
        neighbours[start:stop] = cand_col[pick]
        similarity[start:stop] = cand_sim[pick]
    if repeats:
        return neighbours[stimulus], similarity[stimulus]
    return neighbours, similarity


def _prepare(
    x: Any, k: int, name: str, least_k: int = 1, device: torch.device | None = None
) -> NeighbourState:
    rows = as_rows(x, name="x")
    k = _check_k(k, len(rows), name, least_k)
    if not np.ptp(rows, axis=0).any():
        raise NeurometryError(f"{name}: a representation has the same row for every stimulus, so its nearest "
                              "neighbours are arbitrary ties; give representations that vary across stimuli")
    ids = np.arange(len(rows), dtype=np.int64)
    inv_norm = _inverse_norms(rows)
    neighbours, similarity = _nearest(rows, inv_norm, ids, k, name, device)
    return NeighbourState(rows, inv_norm, ids, neighbours, similarity, device)


def _take(state: NeighbourState, rows: np.ndarray, name: str, least_k: int = 1) -> NeighbourState:
    rows = np.asarray(rows, dtype=np.int64)
    n = len(state.rows)
    if len(rows) == n and np.array_equal(np.sort(rows), np.arange(n)):
        # a permutation: the neighbour sets are the old ones relabelled (ties go by original id, which
        # moves with the rows, so this equals re-preparing the shuffled rows)
        new_position = np.empty(n, dtype=np.int64)
        new_position[rows] = np.arange(n)
        return NeighbourState(
            state.rows[rows],
            state.inv_norm[rows],
            state.ids[rows],
            new_position[state.neighbours[rows]],
            state.similarity[rows],
            state.device,
        )
    # a subset or a resample: neighbours depend on which stimuli are present, so search again
    kept = state.rows[rows]
    k = _check_k(state.k, len(kept), name, least_k)
    ids = state.ids[rows]
    inv_norm = state.inv_norm[rows]
    neighbours, similarity = _nearest(kept, inv_norm, ids, k, name, state.device)
    return NeighbourState(kept, inv_norm, ids, neighbours, similarity, state.device)


def _pair_keys(neighbours: np.ndarray) -> np.ndarray:
    """Each (row i, neighbour j) as the integer i * n + j, shape (n, k)."""
    n = len(neighbours)
    return np.arange(n, dtype=np.int64)[:, None] * n + neighbours


def _check_pair(a: NeighbourState, b: NeighbourState, name: str) -> None:
    check_same_rows(a.rows, b.rows)
    if a.k != b.k:
        raise NeurometryError(
            f"{name}: the two states have k={a.k} and k={b.k}; prepare both with the same k"
        )


def _mutual_knn_score(a: NeighbourState, b: NeighbourState) -> float:
    _check_pair(a, b, "mutual_knn")
    shared = np.isin(_pair_keys(a.neighbours), _pair_keys(b.neighbours))
    return float(np.mean(shared.sum(axis=1) / a.k))


def _cycle_knn_score(a: NeighbourState, b: NeighbourState) -> float:
    _check_pair(a, b, "cycle_knn")
    n = len(a.neighbours)
    # row i returns when some j among its neighbours in b has i among its neighbours in a
    back = b.neighbours * n + np.arange(n, dtype=np.int64)[:, None]
    returned = np.isin(back, _pair_keys(a.neighbours)).any(axis=1)
    return float(returned.mean())


def _masked_kernel(state: NeighbourState, unbiased: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The non-zero entries (row, col, value) of the kernel masked to each row's k nearest rows.

    Unbiased: the k nearest other rows. Biased: the row itself plus its k - 1 nearest others, as the
    reference's top-k on the kernel with its diagonal (self-similarity 1 is the largest; for an all-zero
    row, whose self-similarity is 0, we still count the row itself first).
    """
    n, k = state.neighbours.shape
    row = np.repeat(np.arange(n, dtype=np.int64), k)
    if unbiased:
        return row, state.neighbours.ravel(), state.similarity.ravel()
    self_similarity = (state.inv_norm > 0).astype(np.float64)
    col = np.concatenate((np.arange(n)[:, None], state.neighbours[:, : k - 1]), axis=1)
    value = np.concatenate((self_similarity[:, None], state.similarity[:, : k - 1]), axis=1)
    return row, col.ravel(), value.ravel()


def _sparse_hsic(
    row: np.ndarray, col: np.ndarray, a: np.ndarray, b: np.ndarray, n: int, unbiased: bool
) -> float:
    """HSIC of two n x n matrices A, B with the same non-zero pattern (row, col), values a and b.

    Unbiased: Song et al. (2012) eq. 5 as in the reference's ``hsic_unbiased`` (diagonals zeroed):
    [sum(A o B^T) + sum(A) sum(B) / ((n-1)(n-2)) - 2 sum(A B) / (n-2)] / (n (n-3)).
    Biased: trace(A H B H) with H = I - 11^T / n, the reference's ``hsic_biased``.
    Each term is a sum over the non-zero entries, so nothing n x n is formed.
    """
    if unbiased:
        off_diagonal = row != col
        row, col, a, b = row[off_diagonal], col[off_diagonal], a[off_diagonal], b[off_diagonal]
    key = row * n + col
    order = np.argsort(key)
    key_sorted = key[order]
    transposed = col * n + row
    at = np.minimum(np.searchsorted(key_sorted, transposed), len(key_sorted) - 1)
    found = key_sorted[at] == transposed
    trace_ab = float(np.sum(a[found] * b[order[at[found]]]))  # sum_ij A_ij B_ji
    sum_a, sum_b = float(a.sum()), float(b.sum())
    col_sum_a, row_sum_a = np.bincount(col, a, minlength=n), np.bincount(row, a, minlength=n)
    col_sum_b, row_sum_b = np.bincount(col, b, minlength=n), np.bincount(row, b, minlength=n)
    sum_ab = float(col_sum_a @ row_sum_b)  # 1^T A B 1
    if unbiased:
        return (trace_ab + sum_a * sum_b / ((n - 1) * (n - 2)) - 2.0 * sum_ab / (n - 2)) / (n * (n - 3))
    sum_ba = float(col_sum_b @ row_sum_a)  # 1^T B A 1
    return trace_ab - (sum_ab + sum_ba) / n + sum_a * sum_b / n**2


def _check_epsilon(epsilon: Any) -> float:
    try:
        value = float(epsilon)
    except (TypeError, ValueError):
        raise NeurometryError(f"cknna: epsilon must be a number >= 0, got {epsilon!r}") from None
    if isinstance(epsilon, bool) or not (np.isfinite(value) and value >= 0.0):
        raise NeurometryError(
            f"cknna: epsilon must be a finite number >= 0 (0: the exact ratio; 1e-6: platonic-rep's), got {epsilon!r}"
        )
    return value


def _cknna_score(a: NeighbourState, b: NeighbourState, unbiased: Any, epsilon: Any = 0.0) -> float:
    _check_pair(a, b, "cknna")
    if not isinstance(unbiased, (bool, np.bool_)):
        raise NeurometryError(f"cknna: unbiased must be true or false, got {unbiased!r}")
    epsilon = _check_epsilon(epsilon)
    n = len(a.rows)
    if unbiased and n < 4:
        raise NeurometryError(f"cknna with the unbiased HSIC needs at least 4 stimuli, got {n}")
    row_a, col_a, val_a = _masked_kernel(a, unbiased)
    row_b, col_b, val_b = _masked_kernel(b, unbiased)
    self_a = _sparse_hsic(row_a, col_a, val_a, val_a, n, unbiased)
    self_b = _sparse_hsic(row_b, col_b, val_b, val_b, n, unbiased)
    if not (self_a > 0 and self_b > 0):
        raise NeurometryError(
            "cknna is undefined: the neighbour kernel of one representation has no centred variance "
            f"(HSIC with itself {min(self_a, self_b):.3g}); check for constant or degenerate rows"
        )
    # joint mask: pairs (i, j) with j among i's neighbours in both representations
    key_a, key_b = row_a * n + col_a, row_b * n + col_b
    order_b = np.argsort(key_b)
    at = np.minimum(np.searchsorted(key_b[order_b], key_a), len(key_b) - 1)
    both = key_b[order_b[at]] == key_a
    cross = _sparse_hsic(row_a[both], col_a[both], val_a[both], val_b[order_b[at[both]]], n, unbiased)
    return cross / (np.sqrt(self_a * self_b) + epsilon)


def mutual_knn(x: Any, y: Any, k: int = 10, device: torch.device | None = None) -> float:
    """Mutual k-nearest-neighbour alignment (Huh et al. 2024, "The Platonic Representation Hypothesis").

    mean over stimuli i of |N_x(i) & N_y(i)| / k, where N_x(i) are the k rows most cosine-similar to
    row i of ``x`` (the row itself excluded; ties to the lower row index). 1 when both representations
    give every stimulus the same neighbours; about k / (n - 1) for unrelated ones.

    Args:
        x: (n_stimuli, n_features_x) responses.
        y: (n_stimuli, n_features_y) responses to the same stimuli, same order.
        k: neighbours per stimulus, 1 <= k < n_stimuli.
        device: a ``torch.device`` for the similarity search; None: the CPU.
    """
    x, y = as_rows(x, "x"), as_rows(y, "y")
    check_same_rows(x, y)
    return _mutual_knn_score(
        _prepare(x, k, "mutual_knn", device=device), _prepare(y, k, "mutual_knn", device=device)
    )


def cycle_knn(x: Any, y: Any, k: int = 10, device: torch.device | None = None) -> float:
    """Cycle k-nearest-neighbour accuracy (Huh et al. 2024; reference ``AlignmentMetrics.cycle_knn``).

    Fraction of stimuli i for which some j in N_y(i) has i in N_x(j): step to a neighbour in ``y``,
    step back through the neighbours in ``x``, and count whether the cycle returns to i (the
    reference's ``compute_knn_accuracy(knn_A[knn_B])`` with A = x, B = y). Not symmetric in x and y.
    Neighbours as in :func:`mutual_knn`.

    Args:
        x: (n_stimuli, n_features_x) responses.
        y: (n_stimuli, n_features_y) responses to the same stimuli, same order.
        k: neighbours per stimulus, 1 <= k < n_stimuli.
        device: a ``torch.device`` for the similarity search; None: the CPU.
    """
    x, y = as_rows(x, "x"), as_rows(y, "y")
    check_same_rows(x, y)
    return _cycle_knn_score(
        _prepare(x, k, "cycle_knn", device=device), _prepare(y, k, "cycle_knn", device=device)
    )


def cknna(
    x: Any,
    y: Any,
    k: int = 10,
    unbiased: bool = True,
    epsilon: float = 0.0,
    device: torch.device | None = None,
) -> float:
    """Centred kernel nearest-neighbour alignment, CKNNA (Huh et al. 2024, eq. in section 2).

    CKA restricted to neighbour pairs: with K = X X^T and L = Y Y^T on L2-normalised rows, M_K(i, j) = 1
    when j is among the k nearest rows of i by K (likewise M_L),

        CKNNA = HSIC(M_K M_L K, M_K M_L L) / sqrt(HSIC(M_K K, M_K K) HSIC(M_L L, M_L L))

    (products elementwise). ``unbiased=True`` (the reference's default) uses the unbiased HSIC of
    Song et al. (2012) and neighbours exclude the row itself; ``unbiased=False`` uses the biased HSIC
    trace(K H L H) and top-k on the kernel with its diagonal, i.e. the row itself and its k - 1 nearest
    others. The reference code (platonic-rep ``AlignmentMetrics.cknna``) divides by
    ``sqrt(HSIC_KK HSIC_LL) + 1e-6``; by default (``epsilon=0``) we divide by the square root alone, so
    the value is exactly the ratio above. Pass ``epsilon=1e-6`` to reproduce the reference's (published)
    numbers: the two differ by a relative ~1e-6 / sqrt(HSIC_KK HSIC_LL), which is not small when the
    HSICs are. A non-positive HSIC_KK or HSIC_LL is an error, not NaN, whatever ``epsilon``.
    Computed from the (n, k) neighbour lists, so n = 20,000 is fine.

    Args:
        x: (n_stimuli, n_features_x) responses.
        y: (n_stimuli, n_features_y) responses to the same stimuli, same order.
        k: neighbours per stimulus, 2 <= k < n_stimuli (the reference requires k >= 2).
        unbiased: unbiased HSIC (needs >= 4 stimuli) or the biased one.
        epsilon: added to the denominator; 0 (default) or platonic-rep's 1e-6.
        device: a ``torch.device`` for the similarity search; None: the CPU.
    """
    x, y = as_rows(x, "x"), as_rows(y, "y")
    check_same_rows(x, y)
    return _cknna_score(
        _prepare(x, k, "cknna", 2, device), _prepare(y, k, "cknna", 2, device), unbiased, epsilon
    )


register(
    Metric(
        name="mutual_knn",
        summary="mutual k-nearest-neighbour overlap (Huh et al. 2024, Platonic Representation Hypothesis)",
        prepare=lambda x, p, device=None: _prepare(x, p["k"], "mutual_knn", device=device),
        score=lambda a, b, p: _mutual_knn_score(a, b),
        take=lambda s, rows, p: _take(s, rows, "mutual_knn"),
        params={"k": 10},
        min_rows=2,
        on_device=True,
    )
)

register(
    Metric(
        name="cycle_knn",
        summary="cycle kNN accuracy: to a neighbour in b and back through neighbours in a (Huh et al. 2024)",
        prepare=lambda x, p, device=None: _prepare(x, p["k"], "cycle_knn", device=device),
        score=lambda a, b, p: _cycle_knn_score(a, b),
        take=lambda s, rows, p: _take(s, rows, "cycle_knn"),
        params={"k": 10},
        min_rows=2,
        on_device=True,
    )
)

register(
    Metric(
        name="cknna",
        summary="centred kernel nearest-neighbour alignment, CKA on mutual kNN pairs (Huh et al. 2024)",
        prepare=lambda x, p, device=None: _prepare(x, p["k"], "cknna", 2, device=device),
        score=lambda a, b, p: _cknna_score(a, b, p["unbiased"], p["epsilon"]),
        take=lambda s, rows, p: _take(s, rows, "cknna", 2),
        params={"k": 10, "unbiased": True, "epsilon": 0.0},
        min_rows=4,
        on_device=True,
    )
)
