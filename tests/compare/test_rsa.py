"""RDM comparisons, the rsa metric and the noise ceiling: agreement with rsatoolbox (1e-6), with scipy,
with brute-force definitions (Kendall tau-a over all pairs, corr_cov with the dense V matrix), and
the metric's prepare / score / take contract."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from neurometry.compare.rdm import RDM, compute_rdm, n_pairs
from neurometry.compare.rdm_comparison import average_ranks, compare_rdms, noise_ceiling, pool_rdms, rsa
from neurometry.compare.registry import METRICS
from neurometry.errors import NeurometryError

TOL = 1e-6
OURS_TO_RSATOOLBOX = {
    "spearman": "spearman",
    "pearson": "corr",
    "kendall_tau_a": "tau-a",
    "cosine": "cosine",
    "corr_cov": "corr_cov",
}


def _pair(n: int = 30, seed: int = 0) -> tuple[RDM, RDM]:
    """Two related RDMs: a correlation RDM and a euclidean RDM of a noisy linear map of the same data."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12))
    y = x @ rng.normal(size=(12, 20)) + 1.5 * rng.normal(size=(n, 20))
    return compute_rdm(x, "correlation"), compute_rdm(y, "euclidean")


def _rsatoolbox_compare(a: np.ndarray, b: np.ndarray, method: str) -> float:
    pytest.importorskip("rsatoolbox")
    from rsatoolbox.rdm import RDMs, compare

    return float(compare(RDMs(a[None]), RDMs(b[None]), OURS_TO_RSATOOLBOX[method])[0, 0])


@pytest.mark.parametrize("method", list(OURS_TO_RSATOOLBOX))
def test_compare_equals_rsatoolbox(method: str) -> None:
    a, b = _pair()
    ours = compare_rdms(a, b, method)
    assert abs(ours - _rsatoolbox_compare(a.dissimilarities, b.dissimilarities, method)) < TOL
    # a model RDM with many ties (rounded to 3 levels): tie handling agrees too
    levels = RDM(np.digitize(b.dissimilarities, np.quantile(b.dissimilarities, [0.3, 0.7])).astype(float), 30)
    tied = compare_rdms(a, levels, method)
    assert abs(tied - _rsatoolbox_compare(a.dissimilarities, levels.dissimilarities, method)) < TOL


@pytest.mark.parametrize("method", list(OURS_TO_RSATOOLBOX))
def test_nan_pairs_from_repeated_rows_are_ignored_as_rsatoolbox(method: str) -> None:
    a, b = _pair(seed=1)
    rows = np.random.default_rng(1).integers(0, 30, 30)  # a bootstrap draw: repeats give NaN pairs
    ta, tb = a.take(rows), b.take(rows)
    assert np.isnan(ta.dissimilarities).any()
    ours = compare_rdms(ta, tb, method)
    assert np.isfinite(ours)
    assert abs(ours - _rsatoolbox_compare(ta.dissimilarities, tb.dissimilarities, method)) < TOL
    if method == "spearman":  # and it is the plain statistic of the kept pairs
        keep = ~np.isnan(ta.dissimilarities)
        expected = scipy.stats.spearmanr(ta.dissimilarities[keep], tb.dissimilarities[keep]).statistic
        assert ours == pytest.approx(expected, abs=1e-12)


def _dense_v(n: int) -> np.ndarray:
    """Covariance of condensed RDM entries under iid noise: V = (C C') o (C C'), C the pair contrasts."""
    contrasts = np.zeros((n_pairs(n), n))
    rows, cols = np.triu_indices(n, 1)
    contrasts[np.arange(len(rows)), rows] = 1.0
    contrasts[np.arange(len(rows)), cols] = -1.0
    xi = contrasts @ contrasts.T
    return xi * xi


@pytest.mark.parametrize("with_nan", [False, True])
def test_corr_cov_is_whitening_by_v(with_nan: bool) -> None:
    a, b = _pair(n=9, seed=2)
    va, vb = a.dissimilarities.copy(), b.dissimilarities.copy()
    keep = np.ones(len(va), dtype=bool)
    if with_nan:
        keep[[0, 7, 20]] = False
        va[~keep] = np.nan
        vb[~keep] = np.nan
    v = _dense_v(9)[np.ix_(keep, keep)]
    ca, cb = va[keep] - va[keep].mean(), vb[keep] - vb[keep].mean()
    solve_b, solve_a = np.linalg.solve(v, cb), np.linalg.solve(v, ca)
    expected = ca @ solve_b / np.sqrt((ca @ solve_a) * (cb @ solve_b))
    assert compare_rdms(RDM(va, 9), RDM(vb, 9), "corr_cov") == pytest.approx(expected, abs=1e-12)


def test_kendall_tau_a_equals_all_pairs_definition() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 6, 45).astype(float)  # many ties in both
    y = x + rng.integers(0, 4, 45)
    sign = np.sign(x[:, None] - x[None, :]) * np.sign(y[:, None] - y[None, :])
    expected = sign[np.triu_indices(45, 1)].sum() / n_pairs(45)
    assert compare_rdms(RDM(x, 10), RDM(y, 10), "kendall_tau_a") == pytest.approx(expected, abs=1e-12)


def test_spearman_pearson_cosine_equal_scipy() -> None:
    a, b = _pair(seed=4)
    va, vb = a.dissimilarities, b.dissimilarities
    assert compare_rdms(a, b, "spearman") == pytest.approx(scipy.stats.spearmanr(va, vb).statistic, abs=1e-12)
    assert compare_rdms(a, b, "pearson") == pytest.approx(scipy.stats.pearsonr(va, vb).statistic, abs=1e-12)
    assert compare_rdms(a, b, "cosine") == pytest.approx(
        va @ vb / np.linalg.norm(va) / np.linalg.norm(vb), abs=1e-12
    )


def test_average_ranks_equal_rankdata_on_hard_inputs() -> None:
    rng = np.random.default_rng(5)
    cases = [
        rng.normal(size=2000),
        rng.integers(-4, 4, 3000).astype(float),  # heavy ties
        np.array([-0.0, 0.0, 0.0, -0.0, 1.0, -1.0]),  # signed zeros are equal
        np.array([1.0, 1 + 2e-16, 1.0, 1 - 1e-16, np.nextafter(1.0, 2)]),  # neighbouring floats
        1.0 - 1e-9 * rng.random(100_000),  # values sharing their leading bits: colliding packed keys
        np.array([5e-324, 5e-324, 0.0, -5e-324, 1e308, -1e308]),
    ]
    for values in cases:
        np.testing.assert_array_equal(average_ranks(values), scipy.stats.rankdata(values))


def test_rsa_plain_function_and_invariances() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(25, 10))
    y = x @ rng.normal(size=(10, 30)) + rng.normal(size=(25, 30))
    value = rsa(x, y)
    assert value == compare_rdms(compute_rdm(x), compute_rdm(y), "spearman")
    assert rsa(x, 3.0 * x + 1.0) == pytest.approx(1.0)  # correlation RDM ignores scale and offset
    assert rsa(compute_rdm(x), y) == value  # RDMs are used as given
    # Spearman depends on the order of dissimilarities only: a monotone transform leaves it unchanged
    ry = compute_rdm(y)
    squashed = RDM(np.log1p(ry.dissimilarities), ry.n_conditions)
    assert rsa(x, squashed) == pytest.approx(value, abs=1e-12)
    # and the conditions must match: reordering one side changes the value
    assert rsa(x, y[rng.permutation(25)]) < value - 0.2


def test_rsa_metric_prepare_score_take() -> None:
    from neurometry.compare import rdm_comparison  # noqa: F401  (registers the metric)

    metric = METRICS["rsa"]
    assert metric.params == {"rdm": "correlation", "compare": "spearman"} and metric.accepts_rdm
    rng = np.random.default_rng(7)
    x = rng.normal(size=(20, 8))
    y = x @ rng.normal(size=(8, 12)) + rng.normal(size=(20, 12))
    perm = rng.permutation(20)
    boot = rng.integers(0, 20, 20)
    for method in OURS_TO_RSATOOLBOX:
        params = metric.resolve({"compare": method, "rdm": "euclidean"})
        sx, sy = metric.prepare(x, params), metric.prepare(y, params)
        rx, ry = compute_rdm(x, "euclidean"), compute_rdm(y, "euclidean")
        assert metric.score(sx, sy, params) == pytest.approx(compare_rdms(rx, ry, method), abs=1e-12)
        # a precomputed RDM prepares to the same state
        assert metric.score(metric.prepare(rx, params), sy, params) == pytest.approx(
            metric.score(sx, sy, params), abs=1e-12
        )
        # take: a permutation of one side (permutation test) and the same bootstrap rows on both sides
        shuffled = metric.score(metric.take(sx, perm, params), sy, params)
        assert shuffled == pytest.approx(
            compare_rdms(compute_rdm(x[perm], "euclidean"), ry, method), abs=1e-12
        )
        drawn = metric.score(metric.take(sx, boot, params), metric.take(sy, boot, params), params)
        assert drawn == pytest.approx(compare_rdms(rx.take(boot), ry.take(boot), method), abs=1e-12)
        # bootstrap rows on one side only: NaN pairs differ, the score uses the pairs both have
        mixed = metric.score(metric.take(sx, boot, params), metric.take(sy, perm, params), params)
        assert mixed == pytest.approx(compare_rdms(rx.take(boot), ry.take(perm), method), abs=1e-12)
    with pytest.raises(NeurometryError, match="did you mean spearman"):
        metric.prepare(x, metric.resolve({"compare": "spearmann"}))


def test_comparison_errors() -> None:
    a, b = _pair()
    with pytest.raises(NeurometryError, match="did you mean kendall_tau_a"):
        compare_rdms(a, b, "kendall_tau")
    with pytest.raises(NeurometryError, match="constant"):
        compare_rdms(a, RDM(np.ones(n_pairs(30)), 30), "spearman")
    with pytest.raises(NeurometryError, match="constant"):
        compare_rdms(a, RDM(np.ones(n_pairs(30)), 30), "kendall_tau_a")
    with pytest.raises(NeurometryError, match="30 and 29 conditions"):
        compare_rdms(a, RDM(np.arange(float(n_pairs(29))), 29))
    with pytest.raises(NeurometryError, match="stimuli"):
        rsa(np.random.default_rng(0).normal(size=(5, 3)), np.random.default_rng(1).normal(size=(6, 3)))


def _subjects(n_subjects: int = 6, n: int = 25, noise: float = 0.4, seed: int = 8) -> np.ndarray:
    """Noisy subject RDMs of one planted true RDM, (subjects, pairs)."""
    rng = np.random.default_rng(seed)
    truth = compute_rdm(rng.normal(size=(n, 10))).dissimilarities
    return truth + noise * truth.std() * rng.normal(size=(n_subjects, len(truth)))


@pytest.mark.filterwarnings("ignore:Noise ceiling for tau")  # rsatoolbox notes it pools tau by ranks
@pytest.mark.parametrize("method", ["spearman", "pearson", "kendall_tau_a", "cosine", "corr_cov"])
def test_noise_ceiling_equals_rsatoolbox(method: str) -> None:
    pytest.importorskip("rsatoolbox")
    from rsatoolbox.inference import boot_noise_ceiling
    from rsatoolbox.rdm import RDMs

    subjects = _subjects()
    lower, upper = noise_ceiling(subjects, method)
    expected_lower, expected_upper = boot_noise_ceiling(RDMs(subjects), method=OURS_TO_RSATOOLBOX[method])
    assert 0 < lower < upper < 1
    assert noise_ceiling([RDM(v, 25) for v in subjects], method) == (lower, upper)
    if method != "corr_cov":
        assert abs(lower - expected_lower) < TOL and abs(upper - expected_upper) < TOL
        return
    # corr_cov: boot_noise_ceiling pools with rsatoolbox.util.inference_util.pool_rdm, which pools corr_cov
    # RDMs by z-scores (as for corr); we pool by whitened norms (test_noise_ceiling_corr_cov_exact_pooling).
    # With z-score pooling, our corr_cov comparisons give rsatoolbox's ceiling to rounding: the pooling,
    # not a solver, is the difference.
    def zscore_pool(group: np.ndarray) -> RDM:
        z = (group - group.mean(1, keepdims=True)) / group.std(1, keepdims=True)
        return RDM(z.mean(0) - z.mean(0).min(), 25)

    z_upper = np.mean([compare_rdms(zscore_pool(subjects), RDM(s, 25), "corr_cov") for s in subjects])
    z_lower = np.mean(
        [compare_rdms(zscore_pool(np.delete(subjects, i, 0)), RDM(s, 25), "corr_cov") for i, s in enumerate(subjects)]
    )
    assert z_lower == pytest.approx(expected_lower, abs=1e-12) and z_upper == pytest.approx(expected_upper, abs=1e-12)
    # and ours differs from it by more than rounding (1.1e-5 on the lower bound here)
    assert abs(lower - expected_lower) > 1e-6


@pytest.mark.parametrize("method", list(OURS_TO_RSATOOLBOX))
def test_pool_rdms_equals_rsatoolbox(method: str) -> None:
    pytest.importorskip("rsatoolbox")
    from rsatoolbox.rdm import RDMs
    from rsatoolbox.util.pooling import pool_rdm

    subjects = _subjects(n_subjects=4)
    # NaN pairs, as in a bootstrap sample of conditions, in every subject alike
    rows = np.random.default_rng(10).integers(0, 25, 25)
    taken = [RDM(v, 25).take(rows) for v in subjects]
    for group in (subjects, taken):
        vectors = np.stack([r.dissimilarities for r in group]) if group is taken else group
        expected = pool_rdm(RDMs(vectors), method=OURS_TO_RSATOOLBOX[method]).get_vectors()[0]
        pooled = pool_rdms(list(group) if group is taken else group, method)
        assert pooled.n_conditions == 25
        np.testing.assert_array_equal(np.isnan(pooled.dissimilarities), np.isnan(expected))
        keep = ~np.isnan(expected)
        # corr_cov: rsatoolbox's conjugate-gradient norms stop at relative tolerance 1e-5
        rtol = 1e-4 if method == "corr_cov" else 1e-9
        np.testing.assert_allclose(pooled.dissimilarities[keep], expected[keep], rtol=rtol)
        if group is taken and method == "spearman":
            lower, upper = noise_ceiling(taken, method)
            assert 0 < lower < upper < 1


def test_noise_ceiling_corr_cov_exact_pooling() -> None:
    subjects = _subjects(n_subjects=4, n=10, seed=9)
    v = _dense_v(10)

    def whitened_corr(p: np.ndarray, s: np.ndarray) -> float:
        cp, cs = p - p.mean(), s - s.mean()
        return (
            cp @ np.linalg.solve(v, cs) / np.sqrt(cp @ np.linalg.solve(v, cp) * (cs @ np.linalg.solve(v, cs)))
        )

    def pool(group: np.ndarray) -> np.ndarray:
        centred = group - group.mean(axis=1, keepdims=True)
        norms = np.sqrt(np.einsum("ij,ij->i", centred, np.linalg.solve(v, centred.T).T))
        return (centred / norms[:, None]).mean(axis=0)

    upper = np.mean([whitened_corr(pool(subjects), s) for s in subjects])
    lower = np.mean([whitened_corr(pool(np.delete(subjects, i, 0)), s) for i, s in enumerate(subjects)])
    assert noise_ceiling(subjects, "corr_cov") == pytest.approx((lower, upper), abs=1e-10)


def test_crossnobis_noise_dof_where_rsatoolbox_differs() -> None:
    # Residuals around C condition means over K runs have C (K - 1) degrees of freedom; rsatoolbox's
    # prec_from_measurements(dataset, "conds") divides by (C - 1) K, so its precision, and every crossnobis
    # distance computed with it, is (C - 1) K / (C (K - 1)) times ours (1.25 for C = 6, K = 3).
    pytest.importorskip("rsatoolbox")
    from rsatoolbox.data import Dataset, prec_from_measurements
    from rsatoolbox.rdm import calc_rdm

    from neurometry.compare.rdm import noise_covariance

    rng = np.random.default_rng(0)
    c, k, d = 6, 3, 4
    data = 3 * rng.normal(size=(1, c, d)) + rng.normal(size=(k, c, d))
    dataset = Dataset(
        data.reshape(k * c, d),
        obs_descriptors={"conds": np.tile(np.arange(c), k), "runs": np.repeat(np.arange(k), c)},
    )
    for theirs_method, shrinkage in (("full", 0.0), ("diag", 1.0)):
        precision = prec_from_measurements(dataset, "conds", method=theirs_method)
        theirs = calc_rdm(dataset, method="crossnobis", descriptor="conds", cv_descriptor="runs", noise=precision)
        ours = compute_rdm(data, "crossnobis", shrinkage=shrinkage).dissimilarities
        np.testing.assert_allclose(theirs.get_vectors()[0], ours * (c - 1) * k / (c * (k - 1)), rtol=1e-10)
    # ours is the unbiased noise variance: pure noise of variance 1, averaged over draws
    c, k, d = 4, 2, 3
    draws = [rng.normal(size=(k, c, d)) for _ in range(2000)]
    variance = np.mean(
        [np.trace(noise_covariance((x - x.mean(0)).reshape(k * c, d), 0.0, dof=(k - 1) * c)) / d for x in draws]
    )
    assert variance == pytest.approx(1.0, abs=0.03)


def test_noise_ceiling_planted_and_errors() -> None:
    # identical subjects: the ceiling is exactly 1; more noise lowers it and widens the gap
    clean = np.tile(_subjects(noise=0.0)[0], (4, 1))
    assert noise_ceiling(clean) == pytest.approx((1.0, 1.0))
    low_noise, high_noise = noise_ceiling(_subjects(noise=0.2)), noise_ceiling(_subjects(noise=1.0))
    assert high_noise[0] < low_noise[0] and high_noise[1] - high_noise[0] > low_noise[1] - low_noise[0]
    with pytest.raises(NeurometryError, match="at least 2 subjects"):
        noise_ceiling(_subjects()[:1])
    with pytest.raises(NeurometryError, match="did you mean pearson"):
        noise_ceiling(_subjects(), "pearsn")
