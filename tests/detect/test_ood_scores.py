"""OOD scores against closed forms, planted structure, scikit-learn/scipy, and the formulas of pytorch-ood
(commit d0476736, ``src/pytorch_ood/detector/``) and of the NECO authors' evaluation code, re-typed here
from their sources as independent reference implementations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.linalg import norm, pinv
from scipy.special import logsumexp, softmax
from sklearn.covariance import EmpiricalCovariance, LedoitWolf
from sklearn.covariance import ledoit_wolf_shrinkage as sklearn_ledoit_wolf_shrinkage
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from neurometry.detect import (
    OOD_SCORES,
    EnergyScore,
    KNNScore,
    MahalanobisScore,
    MaxSoftmaxScore,
    NECOScore,
    ViMScore,
    get_ood_score,
    kth_neighbour_distances,
    ledoit_wolf_shrinkage,
    vim_principal_dim,
)
from neurometry.detect import ood as ood_module
from neurometry.errors import NeurometryError


def classes_data(n=600, d=20, classes=4, seed=0, test=80, conditioned=False):
    """Gaussian classes with a shared, correlated covariance (with ``conditioned``, no eigenvalue below
    about 0.4); test rows partly off the classes."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 2, (classes, d))
    y = rng.integers(0, classes, n)
    mix = np.eye(d) + rng.normal(0, 0.2 / np.sqrt(d), (d, d)) if conditioned else rng.normal(0, 1, (d, d)) * 0.5
    x = means[y] + rng.normal(0, 1, (n, d)) @ mix
    xt = np.concatenate([means[rng.integers(0, classes, test // 2)] + rng.normal(0, 1, (test // 2, d)) @ mix,
                         rng.normal(0, 3, (test - test // 2, d))])
    weight, bias = rng.normal(0, 1, (classes, d)), rng.normal(0, 1, classes)
    return x, y, xt, weight, bias


# --- logits scores ----------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_msp_is_minus_the_max_of_scipy_softmax(temperature):
    logits = np.random.default_rng(1).normal(0, 3, (50, 7))
    got = MaxSoftmaxScore(temperature).fit().score(logits=logits)
    ref = -softmax(logits / temperature, axis=1).max(axis=1)  # pytorch-ood MaxSoftmax.score
    assert got.dtype == np.float64 and got.shape == (50,)
    np.testing.assert_allclose(got, ref, rtol=1e-13)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_energy_is_minus_t_scipy_logsumexp(temperature):
    logits = np.random.default_rng(2).normal(0, 3, (50, 7))
    got = EnergyScore(temperature).fit().score(logits=logits)
    ref = -temperature * logsumexp(logits / temperature, axis=1)  # pytorch-ood EnergyBased.score
    np.testing.assert_allclose(got, ref, rtol=1e-13)


def test_logit_scores_stay_finite_for_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4], [5e3, 5e3, 0.0]])
    np.testing.assert_allclose(MaxSoftmaxScore().score(logits=logits), [-1.0, -0.5], rtol=1e-15)
    np.testing.assert_allclose(EnergyScore().score(logits=logits), [-1e4, -5e3 - np.log(2)], rtol=1e-15)


# --- Mahalanobis ------------------------------------------------------------------------------------


def test_mahalanobis_matches_sklearn_empirical_covariance_and_lee_et_al():
    x, y, xt, _, _ = classes_data()
    got = MahalanobisScore().fit(x, y).score(xt)
    means = np.stack([x[y == c].mean(0) for c in range(4)])
    # Lee et al.'s code (as in the NECO authors' mahalanobis()): one EmpiricalCovariance of the class-centred rows
    ec = EmpiricalCovariance(assume_centered=True).fit(x - means[y])
    via_mahalanobis = np.min([ec.mahalanobis(xt - m) for m in means], axis=0)
    via_precision = np.min([(((xt - m) @ ec.precision_) * (xt - m)).sum(1) for m in means], axis=0)
    np.testing.assert_allclose(got, via_mahalanobis, rtol=1e-9)
    np.testing.assert_allclose(got, via_precision, rtol=1e-9)


def test_mahalanobis_is_a_rescaling_of_pytorch_ood():
    x, y, xt, _, _ = classes_data(conditioned=True)  # so that pytorch-ood's 1e-6 I moves little
    n, d = x.shape
    # pytorch-ood Mahalanobis.fit_features / predict_features (no input perturbation)
    mu = np.stack([x[y == c].mean(0) for c in range(4)])
    cov = sum((x[y == c] - mu[c]).T @ (x[y == c] - mu[c]) for c in range(4)) / (n - 1) + 1e-6 * np.eye(d)
    precision = np.linalg.inv(cov)
    term_gau = np.stack([-0.5 * (((xt - m) @ precision) * (xt - m)).sum(1) for m in mu], axis=1)
    pytorch_ood = -term_gau.max(axis=1)
    got = MahalanobisScore().fit(x, y).score(xt)
    # theirs divides the scatter by n - 1 (ours by n), halves, and adds 1e-6 I: equal up to that jitter
    np.testing.assert_allclose(0.5 * got * (n - 1) / n, pytorch_ood, rtol=1e-5)


def test_ledoit_wolf_matches_sklearn():
    x, y, xt, _, _ = classes_data(n=120, d=40)  # few rows per feature: a real shrinkage
    means = np.stack([x[y == c].mean(0) for c in range(4)])
    centred = x - means[y]
    lw = LedoitWolf(assume_centered=True).fit(centred)
    score = MahalanobisScore("ledoit_wolf").fit(x, y)
    assert 0.01 < lw.shrinkage_ < 1
    assert score.shrinkage_ == pytest.approx(lw.shrinkage_, abs=1e-12)
    assert ledoit_wolf_shrinkage(centred) == pytest.approx(sklearn_ledoit_wolf_shrinkage(centred, assume_centered=True), abs=1e-12)
    ref = np.min([lw.mahalanobis(xt - m) for m in means], axis=0)
    np.testing.assert_allclose(score.score(xt), ref, rtol=1e-9)


def test_mahalanobis_with_identity_covariance_is_squared_distance_to_the_nearest_mean():
    rng = np.random.default_rng(3)
    n, d, classes = 300, 6, 3
    y = np.arange(n) % classes
    g = rng.normal(size=(n, d))
    g -= np.stack([g[y == c].mean(0) for c in range(classes)])[y]  # class-wise zero mean
    w, v = np.linalg.eigh(g.T @ g / n)
    noise = g @ v @ np.diag(w**-0.5) @ v.T  # now noise^T noise / n = I exactly (to rounding)
    means = rng.normal(0, 4, (classes, d))
    queries = rng.normal(0, 4, (25, d))
    got = MahalanobisScore().fit(means[y] + noise, y).score(queries)
    ref = ((queries[:, None, :] - means[None]) ** 2).sum(-1).min(1)
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_mahalanobis_ignores_a_constant_feature_as_sklearn_pinvh_does():
    x, y, xt, _, _ = classes_data()
    with_constant = np.column_stack([x, np.full(len(x), 3.0)])
    queries = np.column_stack([xt, np.linspace(-5, 5, len(xt))])  # off the constant: invisible to S^+
    got = MahalanobisScore().fit(with_constant, y).score(queries)
    np.testing.assert_allclose(got, MahalanobisScore().fit(x, y).score(xt), rtol=1e-9)
    means = np.stack([with_constant[y == c].mean(0) for c in range(4)])
    ec = EmpiricalCovariance(assume_centered=True).fit(with_constant - means[y])
    np.testing.assert_allclose(got, np.min([ec.mahalanobis(queries - m) for m in means], axis=0), rtol=1e-8)


# --- kNN --------------------------------------------------------------------------------------------


def relu_classes(n, m, d, seed):
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 1, (10, d)) * 2
    x = np.maximum(means[rng.integers(0, 10, n)] + rng.normal(0, 1, (n, d)), 0)
    q = np.maximum(means[rng.integers(0, 10, m)] + rng.normal(0, 1.3, (m, d)), 0)
    return x, q


@pytest.mark.parametrize("k", [1, 50])
def test_knn_matches_sklearn_nearest_neighbors_on_normalised_features(k):
    x, q = relu_classes(3000, 400, 64, seed=k)  # 3,000 reference rows: the screened search
    got = KNNScore(k=k).fit(x).score(q)
    xn, qn = x / norm(x, axis=1, keepdims=True), q / norm(q, axis=1, keepdims=True)
    ref = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(xn).kneighbors(qn)[0][:, -1]
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    stats = ood_module.KTH_NEIGHBOUR_STATS
    assert stats["screened"] == 400 and "plain" not in stats, stats


def test_knn_unnormalised_k1_is_pytorch_ood_knn():
    x, q = relu_classes(500, 60, 16, seed=4)  # small: the plain float64 search
    got = KNNScore(k=1, normalize=False).fit(x).score(q)
    ref = NearestNeighbors(n_neighbors=1).fit(x).kneighbors(q)[0][:, 0]  # pytorch-ood KNN.predict_features
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert ood_module.KTH_NEIGHBOUR_STATS["plain"] == 60


def test_knn_of_a_fit_row_to_itself_is_zero():
    x, _ = relu_classes(2000, 1, 32, seed=5)
    np.testing.assert_array_equal(KNNScore(k=1).fit(x).score(x[:100]), np.zeros(100))


def test_equidistant_reference_rows_fall_back_to_the_exact_search():
    rng = np.random.default_rng(6)
    sphere = rng.normal(size=(1500, 16))
    sphere /= norm(sphere, axis=1, keepdims=True)
    got = kth_neighbour_distances(np.zeros((7, 16)), sphere, 20)
    np.testing.assert_allclose(got, np.ones(7), rtol=1e-15)
    stats = ood_module.KTH_NEIGHBOUR_STATS
    assert stats["plain"] == 7, stats  # every screen saw a tie of all 1,500 distances and gave up


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_knn_on_a_device_screens_there_and_matches_sklearn(device):
    """``device=``: both sets go there and the screen runs there (on a GPU its float32 GEMM is checked against
    the bound on that GPU); the distances equal scikit-learn's brute search on the CPU."""
    x, q = relu_classes(3000, 400, 64, seed=11)
    got = KNNScore(k=50, device=device).fit(x).score(q)
    xn, qn = x / norm(x, axis=1, keepdims=True), q / norm(q, axis=1, keepdims=True)
    ref = NearestNeighbors(n_neighbors=50, algorithm="brute").fit(xn).kneighbors(qn)[0][:, -1]
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    stats = ood_module.KTH_NEIGHBOUR_STATS
    assert torch.device(stats["device"]).type == device and stats["screened"] == 400 and stats["failed"] < 40, stats


def test_a_lowered_float32_matmul_precision_sends_every_row_to_the_plain_search():
    """Where float32 products may be computed in bf16 or TF32 the screen's bound does not hold: every row takes
    the float64 search, and the distances are still exact."""
    x, q = relu_classes(3000, 50, 64, seed=12)
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        got = kth_neighbour_distances(q, x, 5)
    finally:
        torch.set_float32_matmul_precision(previous)
    assert ood_module.KTH_NEIGHBOUR_STATS["plain"] == 50 and "screened" not in ood_module.KTH_NEIGHBOUR_STATS
    np.testing.assert_allclose(got, NearestNeighbors(n_neighbors=5).fit(x).kneighbors(q)[0][:, -1], rtol=1e-12)


def test_scores_at_20000_reference_rows():
    """The kNN search and the covariance products at n = 20,000 (numpy's OpenBLAS crashes there on X @ X.T)."""
    x, q = relu_classes(20000, 300, 32, seed=7)
    y = np.arange(20000) % 4
    got = KNNScore().fit(x).score(q)
    xn, qn = x / norm(x, axis=1, keepdims=True), q / norm(q, axis=1, keepdims=True)
    ref = NearestNeighbors(n_neighbors=50, algorithm="brute").fit(xn).kneighbors(qn)[0][:, -1]
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    for score in (MahalanobisScore(), NECOScore(), ViMScore()):
        values = score.fit(x, y, logits=x[:, :4], classifier=(np.eye(4, 32), np.zeros(4))).score(q, q[:, :4])
        assert values.shape == (300,) and np.isfinite(values).all()


# --- ViM --------------------------------------------------------------------------------------------


def planted_spectrum(n=800, d=24, classes=5, seed=8):
    """Features with a clear eigengap after 8 directions, and a random last layer."""
    rng = np.random.default_rng(seed)
    scales = np.r_[np.linspace(6, 3, 8), np.linspace(0.6, 0.2, d - 8)]
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0]
    x = (rng.normal(size=(n, d)) * scales) @ basis.T + rng.normal(0, 1, d)
    xt = np.concatenate([(rng.normal(size=(60, d)) * scales) @ basis.T, rng.normal(0, 2, (60, d))])
    return x, xt, rng.normal(0, 1, (classes, d)), rng.normal(0, 1, classes)


def test_vim_matches_pytorch_ood_and_the_vim_authors_formula():
    x, xt, weight, bias = planted_spectrum()
    score = ViMScore(dim=8).fit(x, classifier=(weight, bias))
    # pytorch-ood ViM.fit_features / predict_features (= the ViM authors' vim(), without the clip to +-100)
    u = -np.matmul(pinv(weight), bias)
    ec = EmpiricalCovariance(assume_centered=True).fit(x - u)
    eig_vals, eigen_vectors = np.linalg.eig(ec.covariance_)
    ns = np.ascontiguousarray((eigen_vectors.T[np.argsort(eig_vals * -1)[8:]]).T).real
    alpha = (x @ weight.T + bias).max(axis=-1).mean() / norm(np.matmul(x - u, ns), axis=-1).mean()
    vlogit = norm(np.matmul(xt - u, ns), axis=-1) * alpha
    ref = -(-vlogit + logsumexp(xt @ weight.T + bias, axis=-1))
    assert score.alpha_ == pytest.approx(alpha, rel=1e-10)
    assert score.residual_dims_ == 16
    np.testing.assert_allclose(score.score(xt), ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())


def test_vim_on_the_principal_space_is_the_energy():
    x, xt, weight, bias = planted_spectrum()
    score = ViMScore(dim=8).fit(x, classifier=(weight, bias))
    centred = xt - score.origin_
    inside = score.origin_ + centred - (centred @ score.residual_) @ score.residual_.T  # residual removed
    ref = -logsumexp(inside @ weight.T + bias, axis=1)
    np.testing.assert_allclose(score.score(inside), ref, atol=1e-9)


def test_vim_default_dimension_rule():
    assert [vim_principal_dim(d) for d in (4096, 2048, 1024, 768, 576, 512, 64, 1)] == [1000, 1000, 512, 512, 288, 256, 32, 1]
    x, _, weight, bias = planted_spectrum(d=24)
    assert ViMScore().fit(x, classifier=(weight, bias)).residual_dims_ == 12


# --- NECO -------------------------------------------------------------------------------------------


def neco_authors(train, test, test_logits, dim, standardize=True, times_max_logit=True):
    """The NECO authors' neco(): StandardScaler, full PCA, |first dim PCA coordinates| / |scaled row|,
    times the max logit (their non-ResNet branch); without the scaler when standardize is False."""
    if standardize:
        ss = StandardScaler()
        train, test = ss.fit_transform(train), ss.transform(test)
    pca = PCA(train.shape[1]).fit(train)
    reduced = pca.transform(test)[:, :dim]
    ratio = np.array([norm(reduced[i]) / norm(test[i]) for i in range(len(test))])
    return -(ratio * test_logits.max(axis=-1) if times_max_logit else ratio)


@pytest.mark.parametrize("times_max_logit", [True, False])
def test_neco_matches_the_authors_code(times_max_logit):
    x, xt, weight, bias = planted_spectrum()
    logits, test_logits = x @ weight.T + bias, xt @ weight.T + bias
    score = NECOScore(dim=4, times_max_logit=times_max_logit).fit(x, logits=logits)
    ref = neco_authors(x, xt, test_logits, 4, times_max_logit=times_max_logit)
    np.testing.assert_allclose(score.score(xt, test_logits), ref, rtol=1e-9)


def test_neco_without_standardisation_is_the_papers_ratio():
    x, xt, weight, bias = planted_spectrum()
    x, xt = x - x.mean(0), xt - x.mean(0)  # the authors' code divides by the uncentred norm: centre first
    score = NECOScore(dim=8, standardize=False, times_max_logit=False).fit(x)
    np.testing.assert_allclose(score.score(xt), neco_authors(x, xt, None, 8, False, False), rtol=1e-9)


def test_neco_ratio_closed_form():
    rng = np.random.default_rng(9)
    base = np.linalg.qr(rng.normal(size=(200, 3)))[0] * [3.0, 2.0, 1.0]  # orthogonal columns
    train = np.zeros((400, 10))
    train[:, :3] = np.concatenate([base, -base])  # zero mean, diagonal covariance, 9 > 4 > 1 on axes 0-2
    score = NECOScore(dim=2, standardize=False, times_max_logit=False).fit(train)
    queries = np.zeros((4, 10))
    queries[0, 0] = 2.0  # inside span(e0, e1)
    queries[1, 5] = 1.0  # orthogonal to it
    queries[2, [1, 7]] = 1.0  # half in, half out
    queries[3, 2] = 1.0  # the third direction: not among the top two
    np.testing.assert_allclose(score.ratio(queries), [1.0, 0.0, np.sqrt(0.5), 0.0], atol=1e-12)
    assert score.ratio(np.zeros((1, 10)))[0] == 1.0  # the training mean itself


def test_neco_default_dim_is_classes_minus_one():
    x, _, weight, bias = planted_spectrum(classes=5)
    assert NECOScore().fit(x, logits=x @ weight.T + bias).dim_ == 4
    assert NECOScore().fit(x, np.arange(len(x)) % 3).dim_ == 2


# --- registry and bad input -------------------------------------------------------------------------


def test_registry_names_every_score():
    assert list(OOD_SCORES) == ["msp", "energy", "mahalanobis", "knn", "vim", "neco"]
    for name, cls in OOD_SCORES.items():
        assert cls.name == name and isinstance(get_ood_score(name), cls)
    assert get_ood_score("knn", k=7).k == 7
    with pytest.raises(NeurometryError, match="did you mean"):
        get_ood_score("mahalanobix")
    with pytest.raises(NeurometryError, match="unexpected keyword"):
        get_ood_score("msp", k=3)


def _fitted(name):
    x, y, _, weight, bias = classes_data()
    return get_ood_score(name).fit(x, y, logits=x @ weight.T + bias, classifier=(weight, bias))


BAD_INPUT = {
    "nan features": (lambda: MahalanobisScore().fit(np.full((10, 3), np.nan), np.arange(10) % 2), "NaN"),
    "1-D features": (lambda: KNNScore(k=1).fit(np.ones(10)), "2-D"),
    "wrong columns": (lambda: _fitted("mahalanobis").score(np.ones((3, 5))), "columns"),
    "single class": (lambda: MahalanobisScore().fit(np.random.rand(10, 3), np.zeros(10)), "2 classes"),
    "labels length": (lambda: MahalanobisScore().fit(np.random.rand(10, 3), np.arange(9) % 2), "labels"),
    "no labels": (lambda: MahalanobisScore().fit(np.random.rand(10, 3)), "labels"),
    "fewer rows than k": (lambda: KNNScore(k=50).fit(np.random.rand(20, 3)), "at least 50"),
    "msp without logits": (lambda: MaxSoftmaxScore().score(np.ones((3, 2))), "logits"),
    "energy without logits": (lambda: EnergyScore().score(), "logits"),
    "vim without classifier": (lambda: ViMScore().fit(np.random.rand(30, 6)), "classifier"),
    "vim bad bias": (lambda: ViMScore().fit(np.random.rand(30, 6), classifier=(np.ones((3, 6)), np.ones(4))), "bias"),
    "neco without logits": (lambda: _fitted("neco").score(np.random.rand(3, 20)), "logits"),
    "neco without dim": (lambda: NECOScore().fit(np.random.rand(30, 6)), "dim"),
    "score before fit": (lambda: KNNScore().score(np.ones((2, 3))), "fit"),
    "zero row for knn": (lambda: KNNScore(k=1).fit(np.zeros((3, 2))), "all zeros"),
    "k = 0": (lambda: KNNScore(k=0), "k must"),
    "covariance name": (lambda: MahalanobisScore("shrunk"), "ledoit_wolf"),
    "temperature": (lambda: MaxSoftmaxScore(0.0), "temperature"),
    "vim dim too large": (lambda: ViMScore(dim=6).fit(np.random.rand(30, 6), classifier=(np.ones((3, 6)), np.ones(3))), "principal"),
    "strings": (lambda: KNNScore(k=1).fit(np.array([["a", "b"]])), "real numbers"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_raises_one_line(case):
    call, fragment = BAD_INPUT[case]
    with pytest.raises(NeurometryError, match=fragment) as caught:
        call()
    assert "\n" not in str(caught.value)


def test_scores_accept_torch_tensors_and_return_float64():
    x, y, xt, weight, bias = classes_data()
    score = MahalanobisScore().fit(torch.from_numpy(x).float(), torch.from_numpy(y))
    values = score.score(torch.from_numpy(xt).float())
    assert values.dtype == np.float64 and values.shape == (len(xt),)
    np.testing.assert_allclose(values, MahalanobisScore().fit(x.astype(np.float32), y).score(xt.astype(np.float32)))
