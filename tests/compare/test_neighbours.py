"""Mutual kNN, cycle kNN and CKNNA against hand counts, invariances, chance level and a dense brute force."""

from __future__ import annotations

import numpy as np
import pytest

from neurometry.compare import neighbours
from neurometry.compare.neighbours import cknna, cycle_knn, mutual_knn
from neurometry.compare.registry import METRICS
from neurometry.errors import NeurometryError

# ---- brute force, written from the definitions in Huh et al. (2024) / platonic-rep metrics.py ----


def dense_similarity(x: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Cosine similarities of the rows ``rows`` of x (a resample), the own stimulus set to -inf.

    Computed on x and then indexed, so copies of one stimulus have identical similarities.
    """
    norms = np.linalg.norm(x, axis=1)
    unit = x / np.where(norms > 0, norms, 1.0)[:, None]
    rows = np.arange(len(x)) if rows is None else rows
    sim = (unit @ unit.T)[np.ix_(rows, rows)]
    sim[rows[:, None] == rows[None, :]] = -np.inf
    return sim


def dense_neighbours(sim: np.ndarray, k: int, ids: np.ndarray | None = None) -> np.ndarray:
    """Top k per row by decreasing similarity, ties to the lower (id, position)."""
    n = len(sim)
    ids = np.arange(n) if ids is None else ids
    return np.stack([np.lexsort((np.arange(n), ids, -row))[:k] for row in sim])


def brute_mutual(x, y, k, rows=None):
    nx = dense_neighbours(dense_similarity(x, rows), k, rows)
    ny = dense_neighbours(dense_similarity(y, rows), k, rows)
    return np.mean([len(set(a) & set(b)) / k for a, b in zip(nx, ny, strict=True)])


def brute_cycle(x, y, k, rows=None):
    nx = dense_neighbours(dense_similarity(x, rows), k, rows)
    ny = dense_neighbours(dense_similarity(y, rows), k, rows)
    return np.mean([any(i in nx[j] for j in ny[i]) for i in range(len(nx))])


def neighbour_mask(sim: np.ndarray, k: int, unbiased: bool) -> np.ndarray:
    n = len(sim)
    mask = np.zeros((n, n))
    if unbiased:
        nb = dense_neighbours(sim, k)
    else:  # top k of the kernel with its diagonal: the row itself, then its k - 1 nearest others
        nb = np.concatenate([np.arange(n)[:, None], dense_neighbours(sim, k - 1)], axis=1)
    mask[np.arange(n)[:, None], nb] = 1.0
    return mask


def hsic_unbiased(k_mat, l_mat):
    m = len(k_mat)
    kt, lt = k_mat.copy(), l_mat.copy()
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(lt, 0.0)
    value = np.sum(kt * lt.T) + kt.sum() * lt.sum() / ((m - 1) * (m - 2)) - 2 * np.sum(kt @ lt) / (m - 2)
    return value / (m * (m - 3))


def hsic_biased(k_mat, l_mat):
    m = len(k_mat)
    h = np.eye(m) - 1.0 / m
    return np.trace(k_mat @ h @ l_mat @ h)


def brute_cknna(x, y, k, unbiased=True, epsilon=0.0):
    """HSIC(M_K M_L K, M_K M_L L) / (sqrt(HSIC(M_K K, M_K K) HSIC(M_L L, M_L L)) + epsilon): the paper's
    ratio with epsilon = 0, platonic-rep's ``cknna`` (its denominator plus 1e-6) with epsilon = 1e-6."""
    sx, sy = dense_similarity(x), dense_similarity(y)
    kx, ky = sx.copy(), sy.copy()
    np.fill_diagonal(kx, 1.0)  # the kernel itself: unit rows have self-similarity 1
    np.fill_diagonal(ky, 1.0)
    mx, my = neighbour_mask(sx, k, unbiased), neighbour_mask(sy, k, unbiased)
    hsic = hsic_unbiased if unbiased else hsic_biased
    cross = hsic(mx * my * kx, mx * my * ky)
    return cross / (np.sqrt(hsic(mx * kx, mx * kx) * hsic(my * ky, my * ky)) + epsilon)


# ---- known answers ----


def rotation(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


def test_identical_and_rotated_scaled_copy_give_one():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 8))
    y = 3.7 * x @ rotation(8, 1)
    assert mutual_knn(x, x, k=5) == 1.0
    assert mutual_knn(x, y, k=5) == 1.0
    assert cknna(x, x, k=5) == pytest.approx(1.0, abs=1e-12)
    assert cknna(x, y, k=5) == pytest.approx(1.0, abs=1e-12)
    assert cknna(x, y, k=5, unbiased=False) == pytest.approx(1.0, abs=1e-12)
    # cosine neighbours ignore each row's length as well
    row_scaled = y * rng.uniform(0.1, 10.0, size=(120, 1))
    assert mutual_knn(x, row_scaled, k=5) == 1.0
    # cycling through identical neighbours returns exactly when the row has a mutual neighbour
    assert cycle_knn(x, y, k=5) == brute_cycle(x, x, 5)


def angles(degrees) -> np.ndarray:
    """Points on circles (radius varies, cosine neighbours ignore it) at the given angles."""
    theta = np.deg2rad(np.asarray(degrees, dtype=float))
    radius = np.arange(1, len(theta) + 1)[:, None]
    return radius * np.stack([np.cos(theta), np.sin(theta)], axis=1)


def test_hand_counted_example():
    # nearest neighbour (k=1) by angle, counted by hand:
    #   x at 0, 10, 30, 100, 130, 260 deg -> neighbours 1, 0, 1, 4, 3, 0
    #   y at 0, 40, 30, 200, 210, 100 deg -> neighbours 2, 2, 1, 4, 3, 1
    x = angles([0, 10, 30, 100, 130, 260])
    y = angles([0, 40, 30, 200, 210, 100])
    # same neighbour for rows 2, 3, 4: 3 of 6
    assert mutual_knn(x, y, k=1) == 0.5
    # i -> j = N_y(i) -> N_x(j) == i ?  row 1 (2 -> 1), 3 (4 -> 3), 4 (3 -> 4) return: 3 of 6
    assert cycle_knn(x, y, k=1) == 0.5
    # k=2: x {1,2} {0,2} {1,0} {4,2} {3,2} {0,1}; y {2,1} {2,0} {1,0} {4,5} {3,5} {1,2}
    # overlaps 2, 2, 2, 1, 1, 1 -> 9 / 12
    assert mutual_knn(x, y, k=2) == 0.75


def test_independent_data_at_chance():
    rng = np.random.default_rng(3)
    n, k = 1000, 10
    x, y = rng.normal(size=(n, 20)), rng.normal(size=(n, 20))
    # expected overlap k^2/(n-1) per row; over 1000 rows the mean's sd is about 0.001
    assert mutual_knn(x, y, k=k) == pytest.approx(k / (n - 1), abs=0.004)


@pytest.mark.parametrize("n,d,k", [(40, 3, 1), (60, 5, 4), (150, 12, 10)])
def test_agrees_with_dense_brute_force(n, d, k):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, d))
    y = x[:, :2] @ rng.normal(size=(2, 6)) + 0.7 * rng.normal(size=(n, 6))
    assert mutual_knn(x, y, k) == pytest.approx(brute_mutual(x, y, k), abs=1e-12)
    assert cycle_knn(x, y, k) == pytest.approx(brute_cycle(x, y, k), abs=1e-12)
    assert cycle_knn(y, x, k) == pytest.approx(brute_cycle(y, x, k), abs=1e-12)
    if k >= 2:
        assert cknna(x, y, k) == pytest.approx(brute_cknna(x, y, k), abs=1e-12)
        assert cknna(x, y, k, unbiased=False) == pytest.approx(
            brute_cknna(x, y, k, unbiased=False), abs=1e-12
        )


def test_cknna_with_platonic_reps_epsilon():
    # platonic-rep's published numbers divide by sqrt(HSIC_KK HSIC_LL) + 1e-6; epsilon=1e-6 reproduces them
    rng = np.random.default_rng(11)
    z = rng.normal(size=(120, 4))
    x = z @ rng.normal(size=(4, 16)) + 0.5 * rng.normal(size=(120, 16))
    y = z @ rng.normal(size=(4, 8)) + 0.5 * rng.normal(size=(120, 8))
    for unbiased in (True, False):
        exact, reference = brute_cknna(x, y, 10, unbiased), brute_cknna(x, y, 10, unbiased, epsilon=1e-6)
        assert cknna(x, y, 10, unbiased=unbiased, epsilon=1e-6) == pytest.approx(reference, rel=1e-12)
        assert cknna(x, y, 10, unbiased=unbiased) == pytest.approx(exact, rel=1e-12)  # the default: no epsilon
    # the unbiased denominator is small (3.7e-2 here), so the epsilon is visible: 2.7e-5 relative
    exact, reference = cknna(x, y, 10), cknna(x, y, 10, epsilon=1e-6)
    assert 1e-5 < (exact - reference) / exact < 1e-3
    metric = METRICS["cknna"]
    assert metric.params == {"k": 10, "unbiased": True, "epsilon": 0.0}
    p = metric.resolve({"epsilon": 1e-6})
    assert metric.score(metric.prepare(x, p), metric.prepare(y, p), p) == pytest.approx(reference, rel=1e-12)
    for bad in (-1e-6, float("nan"), float("inf"), "tiny", True):
        with pytest.raises(NeurometryError, match="epsilon must be"):
            cknna(x, y, 10, epsilon=bad)


def test_ties_go_to_the_lower_index():
    # signed axis vectors with power-of-two lengths: every cosine is exactly -1, 0 or 1, so most
    # neighbour ranks are ties and the sets depend on the tie rule alone
    rng = np.random.default_rng(5)
    axes = np.concatenate([np.eye(3), -np.eye(3)])
    x = axes[rng.integers(0, 6, size=30)] * 2.0 ** rng.integers(-2, 3, size=(30, 1))
    y = axes[rng.integers(0, 6, size=30)] * 2.0 ** rng.integers(-2, 3, size=(30, 1))
    state = neighbours._prepare(x, 7, "test")
    assert np.array_equal(state.neighbours, dense_neighbours(dense_similarity(x), 7))
    assert mutual_knn(x, y, 7) == brute_mutual(x, y, 7)
    assert cycle_knn(x, y, 7) == brute_cycle(x, y, 7)


def test_blocked_search_matches_one_block(monkeypatch):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(97, 4))
    whole = neighbours._prepare(x, 6, "test")
    monkeypatch.setattr(neighbours, "BLOCK_BYTES", 8 * 97 * 5)  # five rows per block
    blocked = neighbours._prepare(x, 6, "test")
    assert np.array_equal(whole.neighbours, blocked.neighbours)
    # the matmul's rounding may differ between block shapes
    np.testing.assert_allclose(whole.similarity, blocked.similarity, rtol=0, atol=1e-15)


# ---- registry: prepare / score / take ----


@pytest.mark.parametrize("name", ["mutual_knn", "cycle_knn", "cknna"])
def test_registry_matches_plain_function_and_permutation_take(name):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(80, 5))
    y = x @ rng.normal(size=(5, 3)) + 0.5 * rng.normal(size=(80, 3))
    metric = METRICS[name]
    assert metric.params["k"] == 10
    params = metric.resolve({"k": 6})
    plain = {"mutual_knn": mutual_knn, "cycle_knn": cycle_knn, "cknna": cknna}[name]
    a, b = metric.prepare(x, params), metric.prepare(y, params)
    assert metric.score(a, b, params) == pytest.approx(plain(x, y, k=6), abs=1e-15)
    # a shuffled side: relabelled neighbour lists equal a fresh search of the shuffled rows
    perm = rng.permutation(80)
    shuffled = metric.take(b, perm, params)
    fresh = metric.prepare(y[perm], params)
    assert np.array_equal(shuffled.neighbours, fresh.neighbours)
    assert metric.score(a, shuffled, params) == pytest.approx(plain(x, y[perm], k=6), abs=1e-12)


def test_bootstrap_copies_are_not_each_others_neighbours():
    rng = np.random.default_rng(8)
    n, k = 60, 5
    x = rng.normal(size=(n, 4))
    y = x[:, :2] @ rng.normal(size=(2, 3)) + 0.5 * rng.normal(size=(n, 3))
    rows = rng.integers(0, n, size=n)  # with repeats
    metric = METRICS["mutual_knn"]
    params = metric.resolve({"k": k})
    a = metric.take(metric.prepare(x, params), rows, params)
    b = metric.take(metric.prepare(y, params), rows, params)
    assert not np.any(rows[a.neighbours] == rows[:, None])
    # same rule in the brute force: copies of one stimulus excluded, ties to the lower (id, position)
    assert metric.score(a, b, params) == pytest.approx(brute_mutual(x, y, k, rows), abs=1e-12)
    cycle = METRICS["cycle_knn"]
    assert cycle.score(a, b, params) == pytest.approx(brute_cycle(x, y, k, rows), abs=1e-12)
    # a rotated copy still agrees perfectly on the resample
    c = metric.take(metric.prepare(2.0 * x @ rotation(4, 9), params), rows, params)
    assert metric.score(a, c, params) == 1.0
    knna = METRICS["cknna"]
    kparams = knna.resolve({"k": k})
    ka = knna.take(knna.prepare(x, kparams), rows, kparams)
    kc = knna.take(knna.prepare(2.0 * x @ rotation(4, 9), kparams), rows, kparams)
    assert knna.score(ka, kc, kparams) == pytest.approx(1.0, abs=1e-12)


# ---- errors ----


def test_errors():
    rng = np.random.default_rng(10)
    x, y = rng.normal(size=(12, 3)), rng.normal(size=(12, 3))
    with pytest.raises(NeurometryError, match="k <= 11"):
        mutual_knn(x, y, k=12)
    with pytest.raises(NeurometryError, match="k >= 1"):
        cycle_knn(x, y, k=0)
    with pytest.raises(NeurometryError, match="k >= 2"):
        cknna(x, y, k=1)
    with pytest.raises(NeurometryError, match="whole number"):
        mutual_knn(x, y, k=2.5)
    with pytest.raises(NeurometryError, match="true or false"):
        cknna(x, y, k=3, unbiased="no")
    bad = x.copy()
    bad[4, 1] = np.nan
    with pytest.raises(NeurometryError, match="row 4"):
        mutual_knn(bad, y)
    with pytest.raises(NeurometryError, match="12 and 11 stimuli"):
        cknna(x, y[:11], k=3)
    # a resample with too few distinct stimuli for k neighbours
    metric = METRICS["mutual_knn"]
    params = metric.resolve({"k": 5})
    with pytest.raises(NeurometryError, match="only 4 other rows"):
        metric.take(metric.prepare(x, params), np.array([0] * 8 + [1, 2, 3, 4]), params)
    # a representation with one row for every stimulus (all zeros: a zero neighbour kernel, 0 / 0): an error, not
    # NaN, and not the arbitrary tie-break neighbours that mutual_knn gave a constant representation
    with pytest.raises(NeurometryError, match="cknna: a representation has the same row for every stimulus"):
        cknna(np.zeros((12, 3)), y, k=3)
    with pytest.raises(NeurometryError, match="mutual_knn: a representation has the same row for every stimulus"):
        mutual_knn(x, np.ones((12, 3)), k=3)
