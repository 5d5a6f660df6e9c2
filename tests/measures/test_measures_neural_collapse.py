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
    assert nc2_equinorm(x, y).value == pytest.approx(1 / 3, rel=1e-12)
    assert nc2_equiangular(x, y).value == pytest.approx(4 / 9, rel=1e-12)


def test_nc1_matches_direct_formula():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, size=300)
    x = rng.normal(size=(300, 8)) + 2 * rng.normal(size=(5, 8))[y] + 10
    mu_g = x.mean(0)
    mus = np.array([x[y == k].mean(0) for k in range(5)])
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
