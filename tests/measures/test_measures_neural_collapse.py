import numpy as np
import pytest

from neurometry.errors import NeurometryError
from neurometry.measures import cdnv, nc1, nc2_equiangular, nc2_equinorm, nc3, nc4, run_measures


def etf_data(c: int = 4, d: int = 12, r: float = 3.0, a: float = 0.5, seed: int = 0):
    """Class means r * u_c (a simplex ETF in R^d); each class: mu_c +- a e_j for an orthonormal basis
    e_1..e_{c-1} of the ETF's span, so class means, Sigma_W = a^2/(c-1) P and Var_c = a^2 are exact."""
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(rng.normal(size=(d, c)))[0]  # (d, c) orthonormal
    etf = np.sqrt(c / (c - 1)) * (np.eye(c) - 1.0 / c) @ q.T  # (c, d) unit rows, cos = -1/(c-1)
    span = np.linalg.svd(etf, full_matrices=False)[2][: c - 1]  # (c-1, d) basis of the span
    rows, labels = [], []
    for k in range(c):
        for e in span:
            rows += [r * etf[k] + a * e, r * etf[k] - a * e]
            labels += [k, k]
    return np.array(rows), np.array(labels), r * etf


def test_etf_closed_forms():
    c, r, a = 4, 3.0, 0.5
    x, y, means = etf_data(c=c, r=r, a=a)
    assert nc1(x, y).value == pytest.approx(a**2 * (c - 1) / (r**2 * c), rel=1e-9)
    assert cdnv(x, y).value == pytest.approx(a**2 * (c - 1) / (2 * r**2 * c), rel=1e-9)
    assert nc2_equinorm(x, y).value == pytest.approx(0.0, abs=1e-12)
    assert nc2_equiangular(x, y).value == pytest.approx(0.0, abs=1e-12)
    assert nc3(x, y, means * 7.0).value == pytest.approx(0.0, abs=1e-12)
    swapped = means[[1, 0, 2, 3]]  # classes 0 and 1 swapped: <W^, M^> = (c - 2 - 2/(c-1)) / c
    assert nc3(x, y, swapped).value == pytest.approx(2 - 2 * (c - 2 - 2 / (c - 1)) / c, rel=1e-9)
    assert nc4(x, y, classifier=(means, np.zeros(c))).value == 1.0
    assert nc4(x, y).value == 1.0  # fitted logistic regression


def test_unequal_norms_and_angles():
    # classes at +-2 e1 and +-1 e2: norms 2, 2, 1, 1; cosines -1 (twice) and 0 (four times)
    means = np.array([[2.0, 0, 0], [-2.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]])
    x = np.repeat(means, 2, axis=0) + np.tile([[0, 0, 0.1], [0, 0, -0.1]], (4, 1))
    y = np.repeat(np.arange(4), 2)
    # std with ddof=1 as the reference's torch.std: sqrt(4 * 0.5^2 / 3) over the mean 1.5
    assert nc2_equinorm(x, y).value == pytest.approx(np.sqrt(1 / 3) / 1.5, rel=1e-12)
    assert nc2_equiangular(x, y).value == pytest.approx(4 / 9, rel=1e-12)


def test_nc1_matches_direct_formula():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, size=300)
    x = rng.normal(size=(300, 8)) + 2 * rng.normal(size=(5, 8))[y] + 10
    mus = np.array([x[y == k].mean(0) for k in range(5)])
    mu_g = mus.mean(0)  # the unweighted mean of the class means (the classes have unequal counts)
    sw = sum((x[y == k] - mus[k]).T @ (x[y == k] - mus[k]) for k in range(5)) / len(x)
    sb = (mus - mu_g).T @ (mus - mu_g) / 5
    ref = np.trace(sw @ np.linalg.pinv(sb)) / 5
    assert nc1(x, y).value == pytest.approx(ref, rel=1e-9)


def test_labels_errors():
    x = np.random.default_rng(2).normal(size=(20, 4))
    with pytest.raises(NeurometryError, match="at least 2 classes"):
        nc1(x, np.zeros(20, int))
    with pytest.raises(NeurometryError, match="labels"):
        run_measures(lambda: [x], ["nc1"])
    with pytest.raises(NeurometryError, match="one per row"):
        nc1(x, np.arange(19) % 2)
    with pytest.raises(NeurometryError, match="integers in"):
        nc4(x, np.arange(20) % 3, classifier=(np.ones((2, 4)), np.zeros(2)))


def imbalanced_etf(counts=(10, 20, 40, 400), d: int = 12, noise: float = 1e-3, seed: int = 0):
    """A perfectly collapsed network with imbalanced classes: class c's rows are its simplex-ETF vertex
    plus ``noise`` Gaussian jitter. The vertices sum to 0, so the ETF is centred on the unweighted mean
    of the class means, not on the mean of all rows (which the 400-row class pulls towards itself)."""
    rng = np.random.default_rng(seed)
    c = len(counts)
    q = np.linalg.qr(rng.normal(size=(d, c)))[0]
    etf = np.sqrt(c / (c - 1)) * (np.eye(c) - 1.0 / c) @ q.T  # (c, d) unit rows, cos = -1/(c-1)
    y = np.repeat(np.arange(c), counts)
    x = etf[y] + noise * rng.normal(size=(len(y), d))
    return x, y, etf


def test_imbalanced_collapsed_etf_is_collapsed():
    # Papyan, Han & Donoho (2020) centre the class means on their unweighted mean; centring on the mean
    # of all rows gave nc2_equiangular 0.56, nc2_equinorm 0.48 and nc3 0.44 here
    x, y, etf = imbalanced_etf()
    assert nc2_equiangular(x, y).value < 2e-3
    assert nc2_equinorm(x, y).value < 2e-3
    assert nc3(x, y, etf).value < 1e-5
    assert nc1(x, y).value < 1e-5  # Sigma_W ~ 1e-6 I against Sigma_B ~ 1/3 on the ETF's span
    assert nc4(x, y, classifier=(etf, np.zeros(4))).value == 1.0
    # the streamed path (uneven chunks through run_measures) centres the same way
    chunks = np.split(x, [7, 8, 100, 301])
    streamed = run_measures(
        lambda: iter(chunks), ["nc1", "nc2_equinorm", "nc2_equiangular", "nc3"], labels=y, classifier=(etf, np.zeros(4))
    )
    for name, fn in (("nc1", nc1), ("nc2_equinorm", nc2_equinorm), ("nc2_equiangular", nc2_equiangular)):
        assert streamed[name].value == pytest.approx(fn(x, y).value, rel=1e-9, abs=1e-15)
    assert streamed["nc3"].value == pytest.approx(nc3(x, y, etf).value, rel=1e-9, abs=1e-15)


def test_imbalanced_means_centred_on_the_mean_of_class_means():
    # the reference definitions, with M the (C, d) class means centred on their unweighted mean mu_G
    x, y, etf = imbalanced_etf(noise=0.3, seed=4)
    c = 4
    means = np.array([x[y == k].mean(0) for k in range(c)])
    centred = means - means.mean(0)
    norms = np.linalg.norm(centred, axis=1)
    assert nc2_equinorm(x, y).value == pytest.approx(np.std(norms, ddof=1) / np.mean(norms), rel=1e-10)
    unit = centred / norms[:, None]
    cos = (unit @ unit.T)[np.triu_indices(c, 1)]
    assert nc2_equiangular(x, y).value == pytest.approx(np.mean(np.abs(cos + 1 / (c - 1))), rel=1e-10)
    w = etf + 0.1
    expected = np.sum((w / np.linalg.norm(w) - centred / np.linalg.norm(centred)) ** 2)
    assert nc3(x, y, w).value == pytest.approx(expected, rel=1e-10)
    # and not on the mean of all rows (which the large class dominates)
    wrong = means - x.mean(0)
    assert nc2_equinorm(x, y).value != pytest.approx(
        np.std(np.linalg.norm(wrong, axis=1), ddof=1) / np.mean(np.linalg.norm(wrong, axis=1)), rel=1e-3
    )


def test_balanced_classes_unchanged_by_the_centring():
    # equal counts: the mean of the class means is the mean of all rows, so both centrings agree
    x, y, etf = imbalanced_etf(counts=(30, 30, 30, 30), noise=0.3, seed=5)
    means = np.array([x[y == k].mean(0) for k in range(4)])
    np.testing.assert_allclose(means.mean(0), x.mean(0), atol=1e-14)
    row_centred = means - x.mean(0)
    norms = np.linalg.norm(row_centred, axis=1)
    assert nc2_equinorm(x, y).value == pytest.approx(np.std(norms, ddof=1) / np.mean(norms), rel=1e-10)
    w = etf - 0.2
    expected = np.sum((w / np.linalg.norm(w) - row_centred / np.linalg.norm(row_centred)) ** 2)
    assert nc3(x, y, w).value == pytest.approx(expected, rel=1e-10)
