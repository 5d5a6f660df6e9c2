"""Representational similarity analysis: compare RDMs, the ``rsa`` metric, and the noise ceiling.

Kriegeskorte, Mur & Bandettini (2008), Representational similarity analysis - connecting the branches
of systems neuroscience, Front. Syst. Neurosci. 2:4; Nili et al. (2014), A toolbox for representational
similarity analysis, PLoS Comput. Biol. 10(4) (Kendall tau-a, noise ceiling); Diedrichsen et al.
(2021), Comparing representational geometries using whitened unbiased-distance-matrix similarity,
Neurons, Behavior, Data analysis and Theory 5(3) (whitened correlation ``corr_cov``).

Comparison methods (rsatoolbox's ``rsatoolbox.rdm.compare`` name in brackets; values agree with it):

- ``spearman`` (``spearman``): Pearson correlation of the ranks, ties given their average rank.
- ``pearson`` (``corr``): Pearson correlation of the dissimilarities.
- ``kendall_tau_a`` (``tau-a``): (concordant - discordant pairs) / all pairs, no tie correction, so a
  model predicting ties is not rewarded for them (Nili et al. 2014). O(m log m) for m pairs.
- ``cosine`` (``cosine``): cosine similarity of the dissimilarity vectors.
- ``corr_cov`` (``corr_cov``): Pearson correlation after whitening with V, the covariance of the RDM
  entries of an iid-noise distance estimate (rsatoolbox's ``_get_v``: V = (C C') * (C C') elementwise,
  C the pair-contrast matrix). v' V^-1 w equals, up to a constant, the Frobenius product of the
  double-centred matrices G = -H D H / 2, which is how it is computed (no m x m matrix). With NaN pairs,
  V is restricted to the kept pairs, as rsatoolbox does, by a weighted least-squares centring.

NaN dissimilarities (from :meth:`RDM.take` with repeated rows) are left out pairwise: a pair counts when
both RDMs have it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats
import torch

from neurometry.arrays import check_same_rows
from neurometry.compare.rdm import RDM, compute_rdm, index_rows, pair_indices, take_index
from neurometry.compare.registry import Metric, Params, register
from neurometry.errors import NeurometryError, did_you_mean

COMPARE_METHODS = ("spearman", "pearson", "kendall_tau_a", "cosine", "corr_cov")
# methods whose score is one dot product of per-RDM unit vectors
_DOT_METHODS = ("spearman", "pearson", "cosine", "corr_cov")
_MIN_PAIRS = 3


def _check_method(method: str) -> None:
    if method not in COMPARE_METHODS:
        raise NeurometryError(
            f"unknown RDM comparison {method!r}{did_you_mean(method, COMPARE_METHODS)}; "
            f"methods: {', '.join(COMPARE_METHODS)}"
        )


def _sorted_groups(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A permutation sorting ``values`` (1-D, finite), and where a new value starts in sorted order.

    Returns ``(order, new_value)``: ``values[order]`` is ascending (the order among equal values is
    arbitrary) and ``new_value[k]`` is True when sorted element k differs from element k - 1 (always
    True for k = 0).

    Faster than ``np.argsort``: each float is mapped to an int64 with the same order, its lowest bits
    are replaced by the element's index, and the packed keys are sorted as plain integers (numpy's
    vectorised sort). Keys that collide on the remaining high bits come out ordered by index, so those
    few runs are re-sorted by their full keys. The result is an exact sort.
    """
    m = len(values)
    index_bits = max(1, (m - 1).bit_length())
    if index_bits > 40:  # too few value bits would remain for the packing to pay off
        order = np.argsort(values)
        ordered = values[order]
        return order, np.concatenate([[True], ordered[1:] != ordered[:-1]])
    # + 0.0 turns -0.0 into +0.0, so that equal floats have equal keys
    key = np.add(values, 0.0, dtype=np.float64).view(np.int64)
    # IEEE floats order like sign-magnitude integers: flipping the magnitude bits of negative ones
    # makes the int64 order the float order (in place where possible: these arrays are m long)
    flip = key >> 63
    flip &= np.int64(0x7FFF_FFFF_FFFF_FFFF)
    key ^= flip
    packed = np.right_shift(key, index_bits, out=flip)
    packed <<= index_bits
    packed |= np.arange(m, dtype=np.int64)
    packed.sort()
    order = packed & np.int64((1 << index_bits) - 1)
    high = np.right_shift(packed, index_bits, out=packed)
    new_value = np.empty(m, dtype=bool)
    new_value[0] = True
    np.not_equal(high[1:], high[:-1], out=new_value[1:])
    clash = np.flatnonzero(~new_value[1:]) + 1  # sorted positions whose high bits equal the previous
    if len(clash):
        in_run = np.zeros(m, dtype=bool)
        in_run[clash] = True
        in_run[clash - 1] = True
        positions = np.flatnonzero(in_run)
        # the runs sit at increasing high bits, which lead the full key, so sorting all their members by
        # the full key puts each run's members back into that run's positions, in order
        members = order[positions]
        order[positions] = members[np.argsort(key[members], kind="stable")]
        new_value[clash] = key[order[clash]] != key[order[clash - 1]]
    return order, new_value


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` (1-D, finite), ties given the average of the ranks they span.

    Equal to ``scipy.stats.rankdata(values)`` (method "average"), several times faster: an exact sort of
    packed integer keys (:func:`_sorted_groups`) and vectorised tie groups.
    """
    m = len(values)
    order, new_value = _sorted_groups(values)
    ranks = np.empty(m)
    starts = np.flatnonzero(new_value)
    if len(starts) == m:  # no ties
        ranks[order] = np.arange(1.0, m + 1.0)
        return ranks
    ends = np.append(starts[1:], m)
    # a group at sorted positions start..end-1 holds ranks start+1..end: their mean is (start+end+1)/2
    group_rank = (starts + ends + 1) / 2.0
    ranks[order] = group_rank[np.cumsum(new_value) - 1]
    return ranks


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    # numpy's own SIMD loop, not BLAS ddot: a threaded BLAS call costs more in thread wake-ups than
    # the few milliseconds a 2M-long dot product takes, badly so on a busy machine
    return float(np.einsum("i,i->", a, b))


def _unit(vector: np.ndarray, what: str) -> np.ndarray:
    norm = float(np.sqrt(_dot(vector, vector)))
    if not norm > 0:
        raise NeurometryError(
            f"{what} is constant (all dissimilarities equal); a comparison needs dissimilarities that vary"
        )
    return vector / norm


def _constant_error(values: np.ndarray, what: str, method: str) -> None:
    # exact test first: the mean of equal floats need not equal them, so centring a constant vector can
    # leave rounding noise that a norm check would take for variation
    if np.ptp(values) == 0 and (method != "cosine" or not values.any()):
        raise NeurometryError(
            f"{what} is constant (all {len(values)} dissimilarities equal); {method} needs dissimilarities that "
            "vary (a model RDM with some ties is fine)"
        )


def _whitened(values: np.ndarray, valid: np.ndarray | None, n: int) -> np.ndarray:
    """The corr_cov representation of (mean-removed) dissimilarities ``values`` over the pairs ``valid``.

    Returns the whitened vector [sqrt(2) G_ij for kept pairs i < j, G_ii], G = -H D H / 2 the
    double-centred matrix: its inner products are v' V^-1 w up to a constant factor. With missing pairs
    the row/column effects are projected out as rsatoolbox's ``_cov_weighting`` does, which equals
    whitening with V restricted to the kept pairs.
    """
    if valid is None:
        square = np.zeros((n, n))
        rows, cols = pair_indices(n)
        square[rows, cols] = values
        square[cols, rows] = values
        row_mean = square.mean(axis=1)
        centred = square - row_mean[:, None] - row_mean[None, :] + row_mean.mean()
        centred *= -0.5
        return np.concatenate([np.sqrt(2.0) * centred[rows, cols], np.diagonal(centred)])
    rows, cols = (index[valid] for index in pair_indices(n))
    half = -0.5 * values
    # The entries are w = [-D_ij / 2 for kept pairs, 0 for the n diagonal entries]; S is the design with
    # row e_i + e_j for pair (i, j) and e_k for diagonal k, W = diag(1/2 for pairs, 1 for the diagonal).
    # The whitened entries are w - W S (S'WS)^-1 S'w: pairs w_ij - (b_i + b_j) / 2, diagonal -b_k, with
    # (S'WS) b = S'w. This n x n system replaces the m x m V^-1 (checked against V in the tests).
    counts = np.bincount(rows, minlength=n) + np.bincount(cols, minlength=n)
    normal = np.zeros((n, n))
    normal[rows, cols] = 0.5
    normal[cols, rows] = 0.5
    normal[np.diag_indices(n)] = 1.0 + 0.5 * counts
    rhs = np.bincount(rows, half, minlength=n) + np.bincount(cols, half, minlength=n)
    effects = np.linalg.solve(normal, rhs)
    return np.concatenate([np.sqrt(2.0) * (half - (effects[rows] + effects[cols]) / 2), -effects])


def _unit_vector(method: str, values: np.ndarray, valid: np.ndarray | None, n: int, what: str) -> np.ndarray:
    """The unit vector whose dot products give ``method`` (finite ``values`` of the kept pairs)."""
    if method == "spearman":
        return _spearman_unit(values, what)
    _constant_error(values, what, method)
    if method == "pearson":
        return _unit(values - values.mean(), what)
    if method == "cosine":
        return _unit(values, what)
    if method == "corr_cov":
        return _unit(_whitened(values - values.mean(), valid, n), what)
    raise AssertionError(method)


def _spearman_unit(values: np.ndarray, what: str) -> np.ndarray:
    """Centred, normalised average ranks of ``values``. Without ties the ranks are a permutation of
    1..m, whose mean (m + 1) / 2 and squared norm about it m (m^2 - 1) / 12 are known in closed form."""
    m = len(values)
    order, new_value = _sorted_groups(values)
    if new_value.all():
        unit = np.empty(m)
        unit[order] = (np.arange(1.0, m + 1.0) - (m + 1) / 2.0) / np.sqrt(m * (m * m - 1.0) / 12.0)
        return unit
    if not new_value[1:].any():
        raise NeurometryError(
            f"{what} is constant (all dissimilarities equal); a comparison needs dissimilarities that vary"
        )
    ranks = average_ranks(values)
    return _unit(ranks - ranks.mean(), what)


def _kendall_tau_a(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall tau-a of two finite vectors in O(m log m).

    scipy's kendalltau gives tau-b = (C - D) / sqrt((T - X)(T - Y)) by merge-sort counting, with T all
    pairs and X, Y the pairs tied in a, in b; tau-a = (C - D) / T.
    """
    total = len(a) * (len(a) - 1) // 2
    tied_a, tied_b = _tied_pairs(a), _tied_pairs(b)
    tau_b = float(scipy.stats.kendalltau(a, b).statistic)
    tau_a = tau_b * np.sqrt(float(total - tied_a)) * np.sqrt(float(total - tied_b)) / total
    return float(np.clip(tau_a, -1.0, 1.0))


def _tied_pairs(values: np.ndarray) -> int:
    """Number of pairs of equal values."""
    starts = np.flatnonzero(_sorted_groups(values)[1])
    counts = np.diff(starts, append=len(values)).astype(np.int64)
    return int(np.sum(counts * (counts - 1) // 2))


def _paired_values(a: RDM, b: RDM) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The dissimilarities both RDMs have (NaN pairs dropped) and the kept mask (None: all kept)."""
    if not isinstance(a, RDM) or not isinstance(b, RDM):
        raise NeurometryError("compare_rdms takes two RDMs; build them with compute_rdm or RDM.from_square")
    if a.n_conditions != b.n_conditions:
        raise NeurometryError(
            f"the RDMs have {a.n_conditions} and {b.n_conditions} conditions; compare RDMs of the same stimuli"
        )
    for rdm in (a, b):
        if np.isinf(rdm.dissimilarities).any():
            raise NeurometryError(f"{_what(rdm)} contains Inf; give finite dissimilarities")
    valid = ~(np.isnan(a.dissimilarities) | np.isnan(b.dissimilarities))
    if valid.all():
        return a.dissimilarities, b.dissimilarities, None
    if valid.sum() < _MIN_PAIRS:
        raise NeurometryError(
            f"only {int(valid.sum())} condition pairs are not NaN in both RDMs; a comparison needs at least "
            f"{_MIN_PAIRS} (too many repeated rows?)"
        )
    return a.dissimilarities[valid], b.dissimilarities[valid], valid


def _what(rdm: RDM) -> str:
    return f"RDM {rdm.name!r}" if rdm.name else "an RDM"


def compare_rdms(a: RDM, b: RDM, method: str = "spearman") -> float:
    """Similarity of two RDMs of the same conditions.

    Args:
        a, b: :class:`RDM` objects with the same n_conditions (NaN pairs are skipped pairwise).
        method: ``spearman``, ``pearson``, ``kendall_tau_a``, ``cosine`` or ``corr_cov`` (see the module
            docstring; each equals rsatoolbox's ``compare`` with ``spearman``, ``corr``, ``tau-a``,
            ``cosine``, ``corr_cov``).

    Returns:
        a float in [-1, 1]. A constant RDM (no variation to correlate) is an error, never NaN.
    """
    _check_method(method)
    values_a, values_b, valid = _paired_values(a, b)
    if method == "kendall_tau_a":
        _constant_error(values_a, _what(a), method)
        _constant_error(values_b, _what(b), method)
        return _kendall_tau_a(values_a, values_b)
    unit_a = _unit_vector(method, values_a, valid, a.n_conditions, _what(a))
    unit_b = _unit_vector(method, values_b, valid, b.n_conditions, _what(b))
    return float(np.clip(_dot(unit_a, unit_b), -1.0, 1.0))


def _as_rdm(x: Any, rdm_method: str, name: str, device: torch.device | None = None) -> RDM:
    if isinstance(x, RDM):
        return x
    # compute_rdm validates x; its errors name the side (x or y)
    return compute_rdm(x, rdm_method, name=name, device=device)


def rsa(
    x: Any, y: Any, rdm: str = "correlation", compare: str = "spearman", device: torch.device | None = None
) -> float:
    """RSA between two representations of the same stimuli: compare_rdms(RDM(x), RDM(y)).

    Args:
        x, y: activations (n_stimuli, n_features_x) and (n_stimuli, n_features_y), or :class:`RDM` objects
            (used as they are).
        rdm: how to build an RDM from activations (:func:`compute_rdm` methods; default 1 - Pearson r).
        compare: how to compare the RDMs (:func:`compare_rdms` methods; default Spearman).
        device: a ``torch.device`` on which the RDMs are built (:func:`compute_rdm`); the comparison of
            the two RDMs runs on the CPU. None: NumPy on the CPU.

    Kriegeskorte, Mur & Bandettini (2008), Front. Syst. Neurosci. 2:4.
    """
    _check_method(compare)
    rdm_x, rdm_y = _as_rdm(x, rdm, "x", device), _as_rdm(y, rdm, "y", device)
    check_same_rows(rdm_x, rdm_y)
    return compare_rdms(rdm_x, rdm_y, compare)


# ---------------------------------------------------------------------------------------------------
# the registered metric


@dataclass(eq=False)
class RSAState:
    """A prepared RDM: the RDM and, for dot-product methods, the unit vector of its kept pairs.

    ``valid`` is the mask of non-NaN pairs (None: all). Two states with the same mask score by one dot
    product of ``unit``; otherwise (or for kendall_tau_a) the score recomputes on the shared pairs.
    """

    rdm: RDM
    unit: np.ndarray | None
    valid: np.ndarray | None


def _prepare_rdm(rdm: RDM, method: str) -> RSAState:
    values = rdm.dissimilarities
    nan = np.isnan(values)
    valid = None if not nan.any() else ~nan
    if valid is not None and valid.sum() < _MIN_PAIRS:
        raise NeurometryError(f"{_what(rdm)} has fewer than {_MIN_PAIRS} non-NaN pairs")
    if np.isinf(values).any():
        raise NeurometryError(f"{_what(rdm)} contains Inf; give finite dissimilarities")
    if method not in _DOT_METHODS:
        return RSAState(rdm, None, valid)
    kept = values if valid is None else values[valid]
    return RSAState(rdm, _unit_vector(method, kept, valid, rdm.n_conditions, _what(rdm)), valid)


def _prepare(x: Any, params: Params, device: torch.device | None = None) -> RSAState:
    method = params["compare"]
    _check_method(method)
    rdm = _as_rdm(x, params["rdm"], "", device)
    return _prepare_rdm(rdm, method)


def _score(a: RSAState, b: RSAState, params: Params) -> float:
    same_pairs = (a.valid is None and b.valid is None) or (
        a.valid is not None and b.valid is not None and np.array_equal(a.valid, b.valid)
    )
    if a.unit is not None and b.unit is not None and same_pairs and len(a.unit) == len(b.unit):
        return float(np.clip(_dot(a.unit, b.unit), -1.0, 1.0))
    return compare_rdms(a.rdm, b.rdm, params["compare"])


def _take(state: RSAState, rows: np.ndarray, params: Params) -> RSAState:
    n = state.rdm.n_conditions
    picked = index_rows(rows, n)
    index, repeated = take_index(n, picked)
    values = state.rdm.dissimilarities[index]
    values[repeated] = np.nan
    taken = RDM(values, len(picked), state.rdm.name)
    is_permutation = len(picked) == n and not repeated.any()
    if is_permutation and state.unit is not None and state.valid is None:
        # reordering the conditions permutes the pairs: ranks, centring and norms are unchanged, so the
        # unit vector is permuted, not recomputed (corr_cov: the diagonal part follows the rows)
        m = len(index)
        unit = state.unit[index]
        if params["compare"] == "corr_cov":
            unit = np.concatenate([state.unit[:m][index], state.unit[m:][picked]])
        return RSAState(taken, unit, None)
    return _prepare_rdm(taken, params["compare"])


register(
    Metric(
        name="rsa",
        summary="RSA: compare representational dissimilarity matrices (Kriegeskorte et al. 2008)",
        prepare=_prepare,
        score=_score,
        take=_take,
        params={"rdm": "correlation", "compare": "spearman"},
        min_rows=3,
        accepts_rdm=True,
        on_device=True,
    )
)


# ---------------------------------------------------------------------------------------------------
# noise ceiling


def _subject_matrix(subject_rdms: Sequence[RDM] | np.ndarray) -> tuple[np.ndarray, int]:
    """(subjects, pairs) float64 and n_conditions, validated."""
    if isinstance(subject_rdms, np.ndarray):
        a = subject_rdms
        if a.ndim == 3:
            rdms = [RDM.from_square(m, f"subject {i}") for i, m in enumerate(a)]
        elif a.ndim == 2:
            rdms = [RDM.from_condensed(v, f"subject {i}") for i, v in enumerate(a)]
        else:
            raise NeurometryError(
                f"subject RDMs have shape {a.shape}; give (subjects, pairs), (subjects, n, n) or a list of RDMs"
            )
    else:
        rdms = list(subject_rdms)
        if not all(isinstance(r, RDM) for r in rdms):
            raise NeurometryError("subject_rdms must be RDM objects or an array (subjects, pairs)")
    if len(rdms) < 2:
        raise NeurometryError(
            f"a noise ceiling needs at least 2 subjects' RDMs (it compares each with the others); got {len(rdms)}"
        )
    n = rdms[0].n_conditions
    if any(r.n_conditions != n for r in rdms):
        counts = sorted({r.n_conditions for r in rdms})
        raise NeurometryError(
            f"subject RDMs have different numbers of conditions {counts}; use the same stimuli"
        )
    return np.stack([r.dissimilarities for r in rdms]), n


def _pool(vectors: np.ndarray, method: str, n: int, valid: np.ndarray | None) -> np.ndarray:
    """The group RDM that best represents ``vectors`` under ``method`` (rsatoolbox's ``pool_rdm``).

    Each subject's RDM is first brought to the scale the method sees: ranks (spearman, kendall_tau_a),
    z-scores (pearson), unit root-mean-square (cosine), unit whitened norm after centring (corr_cov, as
    ``rsatoolbox.util.pooling.pool_rdm``; its ``boot_noise_ceiling`` pools corr_cov by z-scores instead);
    then averaged.
    """
    if method in ("spearman", "kendall_tau_a"):
        scaled = np.stack([average_ranks(v) for v in vectors])
    elif method == "pearson":
        scaled = (vectors - vectors.mean(axis=1, keepdims=True)) / vectors.std(axis=1, keepdims=True)
    elif method == "cosine":
        scaled = vectors / np.sqrt(np.mean(vectors**2, axis=1, keepdims=True))
    else:  # corr_cov
        centred = vectors - vectors.mean(axis=1, keepdims=True)
        # any fixed multiple of the whitened norm sqrt(v' V^-1 v) pools the same up to scale
        norms = np.array([np.linalg.norm(_whitened(c, valid, n)) for c in centred])
        scaled = centred / norms[:, None]
    return scaled.mean(axis=0)


def pool_rdms(subject_rdms: Sequence[RDM] | np.ndarray, method: str = "spearman") -> RDM:
    """The group RDM of several subjects' RDMs, pooled for comparisons by ``method``.

    As rsatoolbox's ``pool_rdm``: the mean of the subjects' ranks (spearman, kendall_tau_a), of their
    z-scores (pearson; then shifted to a minimum of 0.01), of their unit-root-mean-square vectors (cosine),
    or of their centred vectors over their whitened norms (corr_cov; shifted as pearson). Pairs that are
    NaN in any subject are NaN. Takes the same inputs as :func:`noise_ceiling`.
    """
    _check_method(method)
    vectors, n = _subject_matrix(subject_rdms)
    mask, kept = _kept_pairs(vectors, method)
    pooled = _pool(kept, method, n, mask)
    if method in ("pearson", "corr_cov"):  # only the scale the method sees matters; keep them positive
        pooled = pooled - pooled.min() + 0.01
    values = np.full(vectors.shape[1], np.nan)
    values[slice(None) if mask is None else mask] = pooled
    return RDM(values, n, f"pooled ({len(vectors)} subjects)")


def _kept_pairs(vectors: np.ndarray, method: str) -> tuple[np.ndarray | None, np.ndarray]:
    """The mask of pairs finite in every subject (None: all) and the subjects' values there."""
    if np.isinf(vectors).any():
        raise NeurometryError("subject RDMs contain Inf; give finite dissimilarities")
    valid = ~np.isnan(vectors).any(axis=0)
    if valid.sum() < _MIN_PAIRS:
        raise NeurometryError(f"fewer than {_MIN_PAIRS} condition pairs are not NaN in every subject's RDM")
    mask = None if valid.all() else valid
    kept = vectors if mask is None else vectors[:, mask]
    for i, v in enumerate(kept):
        _constant_error(v, f"subject {i}'s RDM", method)
    return mask, kept


def noise_ceiling(subject_rdms: Sequence[RDM] | np.ndarray, method: str = "spearman") -> tuple[float, float]:
    """Lower and upper bounds on the best possible model's mean similarity to the subjects' RDMs.

    Nili et al. (2014), PLoS Comput. Biol. 10(4): the upper bound is the mean over subjects of
    compare(subject, group RDM of all subjects), the lower bound the mean of compare(subject, group RDM
    of the other subjects) (leave one subject out). The group RDM is pooled as :func:`pool_rdms` does for
    ``method`` (mean of ranks for spearman / kendall_tau_a, of z-scores for pearson, of unit-RMS vectors
    for cosine), so for those methods the bounds equal rsatoolbox's ``boot_noise_ceiling(rdms, method)``.

    For ``corr_cov`` the subjects' centred RDMs are scaled to unit whitened norm sqrt(v' V^-1 v) before
    averaging (as rsatoolbox's ``rsatoolbox.util.pooling.pool_rdm``), the pooling that maximises the
    mean corr_cov. rsatoolbox's ``boot_noise_ceiling`` instead pools with
    ``rsatoolbox.util.inference_util.pool_rdm``, which treats ``corr_cov`` like ``corr``: the mean of
    z-scores. That pooling, not a solver tolerance, is why the two ceilings differ (by 1e-5 to 1.5e-4 on
    the planted subjects of ``tests/compare/test_rsa.py``); with z-score pooling our comparisons give
    rsatoolbox's ceiling to rounding.

    Args:
        subject_rdms: RDMs of the same conditions, one per subject (at least 2): a sequence of
            :class:`RDM`, or an array (subjects, pairs) condensed or (subjects, n, n) square. Pairs that
            are NaN in any subject's RDM (from :meth:`RDM.take` with repeated rows) are left out.
        method: a :func:`compare_rdms` method.

    Returns:
        (lower, upper).
    """
    _check_method(method)
    vectors, n = _subject_matrix(subject_rdms)
    mask, kept = _kept_pairs(vectors, method)

    def similarity(u: np.ndarray, v: np.ndarray) -> float:
        if method == "kendall_tau_a":
            return _kendall_tau_a(u, v)
        unit_u = _unit_vector(method, u, mask, n, "the pooled RDM")
        unit_v = _unit_vector(method, v, mask, n, "a subject RDM")
        return float(np.clip(_dot(unit_u, unit_v), -1.0, 1.0))

    pooled_all = _pool(kept, method, n, mask)
    upper, lower = [], []
    for i in range(len(kept)):
        others = np.delete(kept, i, axis=0)
        upper.append(similarity(pooled_all, kept[i]))
        lower.append(similarity(_pool(others, method, n, mask), kept[i]))
    return float(np.mean(lower)), float(np.mean(upper))
