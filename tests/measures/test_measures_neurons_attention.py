import numpy as np
import pytest
import scipy.stats

from neurometry.errors import NeurometryError
from neurometry.measures import (
    attention_entropy,
    dead_fraction,
    kurtosis,
    massive_activations,
    outlier_dims,
    sink_mass,
    sparsity,
)


def test_kurtosis_matches_scipy():
    rng = np.random.default_rng(0)
    a = np.column_stack([rng.normal(size=500), rng.standard_t(4, size=500), rng.exponential(size=500) + 50])
    r = kurtosis(a)
    ref = scipy.stats.kurtosis(a, axis=0, fisher=True, bias=True)
    np.testing.assert_allclose(r.fields["per_unit"], ref, rtol=1e-9)
    assert r.value == pytest.approx(np.median(ref), rel=1e-9)


def test_kurtosis_constant_units_left_out():
    a = np.column_stack([np.random.default_rng(1).normal(size=100), np.full(100, 3.0)])
    r = kurtosis(a)
    assert r.fields["n_constant"] == 1 and np.isnan(r.fields["per_unit"][1]) and "constant" in r.note
    assert r.to_dict()["fields"]["per_unit"][1] is None


def test_dead_sparsity_outliers():
    rng = np.random.default_rng(2)
    a = np.maximum(rng.normal(size=(200, 10)), 0)
    a[:, [3, 7]] = 0
    a[5, 4] = 0.005
    r = dead_fraction(a)
    assert r.value == pytest.approx(0.2) and list(r.fields["dead_units"]) == [3, 7]
    assert sparsity(a).value == pytest.approx(np.mean(np.abs(a) <= 1e-2), rel=1e-12)
    assert sparsity(a, threshold=0.0).value == pytest.approx(np.mean(a == 0), rel=1e-12)
    b = rng.normal(size=(300, 20))
    b[:, 5] *= 10
    b[:, 11] *= 5
    o = outlier_dims(b)
    assert o.value == 2 and list(o.fields["dims"]) == [5, 11]


def test_massive_activations():
    a = np.random.default_rng(3).normal(size=(50, 30))
    a[17, 21] = -400.0
    r = massive_activations(a)
    assert (r.fields["row"], r.fields["dim"]) == (17, 21)
    assert r.value == pytest.approx(400 / np.median(np.abs(a)), rel=1e-12)
    assert r.note == ""
    sampled = massive_activations(a, median_sample=300)  # 10 rows of 30
    assert "sample of 10 of 50 rows" in sampled.note and sampled.fields["row"] == 17
    with pytest.raises(NeurometryError, match="median"):
        massive_activations(np.maximum(a, 0) * (a > 1))


def test_attention_entropy_and_sink():
    # 2 heads, 4 keys; head 0 uniform over 2 real keys, head 1 all on key 0; one padding row
    p = np.zeros((3, 2, 4))
    p[:2, 0, :2] = 0.5
    p[:2, 1, 0] = 1.0
    r = attention_entropy(p)
    np.testing.assert_allclose(r.fields["per_head"], [np.log(2), 0.0], atol=1e-15)
    assert r.value == pytest.approx(np.log(2) / 2)
    s = sink_mass(p)
    np.testing.assert_allclose(s.fields["per_head"], [0.5, 1.0])
    with pytest.raises(NeurometryError, match="probability"):
        attention_entropy(p * 2)
    with pytest.raises(NeurometryError, match="heads, keys"):
        sink_mass(np.ones((3, 4)) / 4)
