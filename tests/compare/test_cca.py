"""CCA, SVCCA and PWCCA: closed forms, scikit-learn agreement, invariances, planted structure, errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
from sklearn.cross_decomposition import CCA

from neurometry.compare.canonical import canonical_correlations, cca, pwcca, svcca
from neurometry.compare.registry import METRICS
from neurometry.errors import NeurometryError


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(2017)


def _planted(rng: np.random.Generator, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """x (n, 4) and y (n, 3) sharing three latent signals at decreasing strength."""
    z = rng.standard_normal((n, 3))
    x = np.c_[z, rng.standard_normal((n, 1))] @ rng.standard_normal((4, 4))
    y = (z * [1.0, 0.5, 0.2] + 0.5 * rng.standard_normal((n, 3))) @ rng.standard_normal((3, 3))
    return x, y


def _orthonormal_centred(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """(n, k) orthonormal columns, each with mean 0."""
    a = rng.standard_normal((n, k))
    q, _ = np.linalg.qr(a - a.mean(0))
    return q


def test_canonical_correlations_match_the_generalised_eigenproblem(rng):
    # rho^2 are the eigenvalues of Sxx^-1 Sxy Syy^-1 Syx (Hotelling 1936), here via scipy's solver
    x, y = _planted(rng)
    xc, yc = x - x.mean(0), y - y.mean(0)
    sxx, syy, sxy = xc.T @ xc, yc.T @ yc, xc.T @ yc
    eig = scipy.linalg.eigvals(np.linalg.solve(sxx, sxy) @ np.linalg.solve(syy, sxy.T))
    expected = np.sort(np.sqrt(np.clip(eig.real, 0, None)))[::-1][:3]
    rho = canonical_correlations(x, y)
    assert rho.shape == (3,)
    np.testing.assert_allclose(rho, expected, atol=1e-8)
    assert cca(x, y) == pytest.approx(expected.mean(), abs=1e-8)


def test_canonical_correlations_match_scikit_learn(rng):
    # sklearn's CCA is iterative (NIPALS); with a tight tolerance its score correlations agree to 1e-6
    x, y = _planted(rng, n=400)
    model = CCA(n_components=3, scale=False, max_iter=10_000, tol=1e-14).fit(x, y)
    xs, ys = model.transform(x, y)
    reference = [np.corrcoef(xs[:, i], ys[:, i])[0, 1] for i in range(3)]
    np.testing.assert_allclose(canonical_correlations(x, y), reference, atol=1e-6)


def test_cca_invariant_to_invertible_linear_maps(rng):
    x, y = _planted(rng)
    a = rng.standard_normal((4, 4)) + 2 * np.eye(4)
    b = rng.standard_normal((3, 3)) + 2 * np.eye(3)
    base = canonical_correlations(x, y)
    np.testing.assert_allclose(canonical_correlations(x @ a + 3.0, y @ b - 1.0), base, atol=1e-8)
    assert cca(x @ a, y) == pytest.approx(cca(x, y), abs=1e-8)
    assert svcca(x, y, keep=1.0) == pytest.approx(cca(x, y), abs=1e-8)
    # the same column space: every correlation is 1
    assert cca(x, x @ a) == pytest.approx(1.0, abs=1e-10)


def test_planted_relation_high_independent_low(rng):
    n = 2000
    x = rng.standard_normal((n, 5))
    # a well-conditioned map (singular values 1..3): every direction's signal-to-noise is >= 10
    a = scipy.stats.ortho_group.rvs(5, random_state=8) @ np.diag([1.0, 1.5, 2.0, 2.5, 3.0])
    y = x @ a + 0.1 * rng.standard_normal((n, 5))
    # population correlations are >= 1 / sqrt(1 + 0.1^2) = 0.995
    assert canonical_correlations(x, y).min() > 0.98
    # independent: canonical correlations of noise are about (sqrt 5 + sqrt 5) / sqrt n = 0.1 at most
    independent = canonical_correlations(x, rng.standard_normal((n, 5)))
    assert independent.max() < 0.2
    assert cca(x, y) > 0.95 and pwcca(x, y) > 0.95
    assert cca(x, rng.standard_normal((n, 5))) < 0.15


def test_svcca_keeps_components_explaining_99_percent(rng):
    # variances 50, 30, 19.5, 0.3, 0.2 (total 100): the first three explain 99.5 %, two only 80 %
    n = 200
    u = _orthonormal_centred(rng, n, 5)
    v = scipy.stats.ortho_group.rvs(5, random_state=7)
    x = (u * np.sqrt([50.0, 30.0, 19.5, 0.3, 0.2])) @ v + 4.0
    metric = METRICS["svcca"]
    assert metric.prepare(x, metric.resolve({})).rank == 3
    assert metric.prepare(x, metric.resolve({"keep": 0.8})).rank == 2  # 80 % exactly is enough
    assert metric.prepare(x, metric.resolve({"keep": 0.5})).rank == 1
    assert metric.prepare(x, metric.resolve({"keep": 1.0})).rank == 5
    # svcca is mean CCA between the kept principal components
    y = rng.standard_normal((n, 3)) + u[:, [0, 1, 3]] * 5
    pcs = u[:, :3] * np.sqrt([50.0, 30.0, 19.5])
    assert svcca(x, y) == pytest.approx(cca(pcs, y), abs=1e-10)
    # the low-variance direction u3 that y carries is dropped from x: one correlation is lost
    assert svcca(x, y) < cca(x, y)


def test_pwcca_equals_mean_cca_when_weights_are_equal(rng):
    # x = two orthonormal centred signals (equal norms); y pairs each with independent noise of different
    # size. The canonical variates of x are its own columns, each carrying the same activity, so weights
    # are equal and the correlations are 1/sqrt(1 + 0.5^2) and 1/sqrt(1 + 2^2).
    q = _orthonormal_centred(rng, 100, 4)
    x = q[:, :2] * 10.0
    y = np.c_[q[:, 0] + 0.5 * q[:, 2], q[:, 1] + 2.0 * q[:, 3]]
    rho = np.array([1 / np.sqrt(1.25), 1 / np.sqrt(5.0)])
    np.testing.assert_allclose(canonical_correlations(x, y), rho, atol=1e-12)
    assert pwcca(x, y) == pytest.approx(rho.mean(), abs=1e-12)
    assert pwcca(x, y) == pytest.approx(cca(x, y), abs=1e-12)


def test_pwcca_weights_favour_the_components_carrying_x_variance(rng):
    # same correlations, but x's first signal carries 10x the activity of its second: weights 10/11, 1/11
    q = _orthonormal_centred(rng, 100, 4)
    y = np.c_[q[:, 0] + 0.5 * q[:, 2], q[:, 1] + 2.0 * q[:, 3]]
    rho_strong, rho_weak = 1 / np.sqrt(1.25), 1 / np.sqrt(5.0)
    loud_first = q[:, :2] * [10.0, 1.0]
    loud_second = q[:, :2] * [1.0, 10.0]
    assert pwcca(loud_first, y) == pytest.approx((10 * rho_strong + rho_weak) / 11, abs=1e-12)
    assert pwcca(loud_second, y) == pytest.approx((rho_strong + 10 * rho_weak) / 11, abs=1e-12)
    # CCA itself does not see the scale of x
    assert cca(loud_first, y) == pytest.approx(cca(loud_second, y), abs=1e-12)
    # not symmetric: with y first, y's weights count
    assert pwcca(y, loud_first) != pytest.approx(pwcca(loud_first, y), abs=1e-3)


def _inverse_sqrt(s: np.ndarray) -> np.ndarray:
    lam, v = np.linalg.eigh(s)
    return (v / np.sqrt(lam)) @ v.T


def _morcos_pwcca(x: np.ndarray, y: np.ndarray) -> float:
    """Morcos, Raghu & Bengio (2018): sum_i alpha_i rho_i with alpha_i = sum_j |<h_i, x_j>| / Z, h_i the
    unit-norm canonical variates Xc Sxx^-1/2 u_i of x and x_j x's centred neurons (over stimuli)."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    ixx, iyy = _inverse_sqrt(xc.T @ xc), _inverse_sqrt(yc.T @ yc)
    u, rho, _ = np.linalg.svd(ixx @ xc.T @ yc @ iyy, full_matrices=False)
    h = xc @ ixx @ u  # canonical variates, unit norm and orthogonal
    alpha = np.abs(h.T @ xc).sum(axis=1)
    return float(np.dot(alpha / alpha.sum(), rho))


def _google_style_pwcca(x: np.ndarray, y: np.ndarray) -> float:
    """google/svcca ``compute_pwcca`` with x the side of fewer neurons, written from its description: the
    weight directions are the singular vectors u_i of the whitened cross-covariance applied to x's centred
    activity WITHOUT the whitening Sxx^-1/2 (plus the neuron means), orthonormalised by QR, and the weights
    sum |<p_i, x_j>| over x's uncentred neurons."""
    mean = x.mean(0)
    xc, yc = x - mean, y - y.mean(0)
    ixx, iyy = _inverse_sqrt(xc.T @ xc), _inverse_sqrt(yc.T @ yc)
    u, rho, _ = np.linalg.svd(ixx @ xc.T @ yc @ iyy, full_matrices=False)
    directions = xc @ u + mean  # (n, d1); mean added per neuron index, as that code does
    p, _ = np.linalg.qr(directions)
    alpha = np.abs(p.T @ x).sum(axis=1)
    return float(np.dot(alpha / alpha.sum(), rho))


def test_pwcca_is_morcos_formula_not_google_svcca(rng):
    n = 200
    q = _orthonormal_centred(rng, n, 8)
    mix = rng.standard_normal((3, 3))
    # x (3 neurons, the narrower side, passed first) with an anisotropic covariance and non-zero means
    x = (q[:, :3] * [10.0, 1.0, 0.3]) @ mix + [2.0, -1.0, 0.5]
    # y mixes x's space with noise in five other directions: distinct canonical correlations below 1
    y = q[:, :3] @ rng.standard_normal((3, 4)) + 0.8 * q[:, 3:] @ rng.standard_normal((5, 4))
    rho = canonical_correlations(x, y)
    assert rho[0] < 0.999 and np.all(np.diff(rho) < -1e-3)
    assert pwcca(x, y) == pytest.approx(_morcos_pwcca(x, y), abs=1e-10)
    # google/svcca's weights differ: not a matter of which side goes first
    assert abs(pwcca(x, y) - _google_style_pwcca(x, y)) > 1e-3
    # ... except where x is white and centred (Sxx = c I): there the omitted whitening is a constant
    white = q[:, :3] * 4.0
    assert pwcca(white, y) == pytest.approx(_google_style_pwcca(white, y), abs=1e-10)
    assert pwcca(white, y) == pytest.approx(_morcos_pwcca(white, y), abs=1e-10)


def test_registered_metrics_and_take(rng):
    assert METRICS["svcca"].params == {"keep": 0.99}
    assert METRICS["cca"].params == {} and METRICS["pwcca"].params == {}
    assert all(METRICS[name].higher_is_similar for name in ("cca", "svcca", "pwcca"))
    x, y = _planted(rng, n=120)
    rows = rng.integers(0, 120, size=120)
    for name, plain in (("cca", cca), ("svcca", svcca), ("pwcca", pwcca)):
        metric = METRICS[name]
        p = metric.resolve({})
        sa, sb = metric.prepare(x, p), metric.prepare(y, p)
        assert metric.score(sa, sb, p) == pytest.approx(plain(x, y), abs=1e-12)
        taken = metric.score(metric.take(sa, rows, p), metric.take(sb, rows, p), p)
        assert taken == pytest.approx(plain(x[rows], y[rows]), abs=1e-12)


def test_too_few_stimuli_for_the_features_is_an_error(rng):
    # 30 centred stimuli span 29 dimensions; ranks 20 + 20 would force 11 correlations to 1
    x, y = rng.standard_normal((30, 20)), rng.standard_normal((30, 20))
    for f in (canonical_correlations, cca, pwcca):
        with pytest.raises(NeurometryError, match="11 canonical correlations would be 1.*svcca"):
            f(x, y)
    with pytest.raises(NeurometryError, match="lower keep"):
        svcca(x, y, keep=1.0)
    # n <= d on one side alone is refused too
    with pytest.raises(NeurometryError, match="more stimuli than features"):
        cca(rng.standard_normal((10, 12)), rng.standard_normal((10, 1)))
    # svcca cuts the features down to what the stimuli support
    low_rank = rng.standard_normal((30, 3)) @ rng.standard_normal((3, 20))
    assert np.isfinite(svcca(low_rank + 1e-3 * x, low_rank @ rng.standard_normal((20, 20))))


def test_collinear_features_use_the_numerical_rank(rng):
    x = rng.standard_normal((50, 3))
    doubled = np.c_[x, x @ [1.0, -2.0, 0.5]]  # rank 3 in 4 columns
    np.testing.assert_allclose(
        canonical_correlations(doubled, x[:, :2]), canonical_correlations(x, x[:, :2]), atol=1e-10
    )


def test_input_errors(rng):
    x = rng.standard_normal((10, 2))
    bad = x.copy()
    bad[7, 0] = np.inf
    for f in (canonical_correlations, cca, svcca, pwcca):
        with pytest.raises(NeurometryError, match="row 7 contains NaN or Inf"):
            f(x, bad)
        with pytest.raises(NeurometryError, match="10 and 8 stimuli"):
            f(x, x[:8])
        with pytest.raises(NeurometryError, match="at least 3"):
            f(x[:2], x[:2])
        with pytest.raises(NeurometryError, match="constant"):
            f(np.full((10, 2), 3.0), x)
    for keep in (0.0, 1.5, "most"):
        with pytest.raises(NeurometryError, match="keep"):
            svcca(x, x, keep=keep)
