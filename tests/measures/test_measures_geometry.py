import numpy as np
import pytest

from neurometry.errors import NeurometryError
from neurometry.measures import anisotropy, layer_cosine, mean_norm, rank_collapse


def test_anisotropy_closed_forms():
    v = np.random.default_rng(0).normal(size=16)
    assert anisotropy(np.tile(v, (50, 1))).value == pytest.approx(1.0, rel=1e-12)
    # m antipodal pairs: the unit vectors sum to 0, so the mean over n(n-1) ordered pairs is -n / (n(n-1))
    x = np.random.default_rng(1).normal(size=(20, 8))
    pm = np.concatenate([x, -x])
    assert anisotropy(pm).value == pytest.approx(-1 / (len(pm) - 1), rel=1e-12)
    # orthonormal rows: every pair has cosine 0
    assert anisotropy(np.eye(6) * 3).value == pytest.approx(0.0, abs=1e-15)


def test_anisotropy_matches_pairwise_definition():
    x = np.random.default_rng(2).normal(size=(60, 5)) + 0.7
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    c = u @ u.T
    ref = c[~np.eye(60, dtype=bool)].mean()
    assert anisotropy(x).value == pytest.approx(ref, rel=1e-12)


def test_anisotropy_leaves_out_zero_rows():
    x = np.vstack([np.ones((5, 3)), np.zeros((2, 3))])
    r = anisotropy(x)
    assert r.value == pytest.approx(1.0) and r.fields["n_zero_rows"] == 2 and "2 all-zero" in r.note


def test_mean_norm_and_layer_cosine():
    x = np.random.default_rng(3).normal(size=(40, 6))
    assert mean_norm(x).value == pytest.approx(np.linalg.norm(x, axis=1).mean(), rel=1e-12)
    assert layer_cosine(x, 2 * x).value == pytest.approx(1.0, rel=1e-12)
    assert layer_cosine(x, -x).value == pytest.approx(-1.0, rel=1e-12)
    y = np.random.default_rng(4).normal(size=(40, 6))
    ref = np.mean(np.sum(x * y, 1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1))
    assert layer_cosine(x, y).value == pytest.approx(ref, rel=1e-12)
    with pytest.raises(NeurometryError, match="same rows"):
        layer_cosine(x, y[:30])


def test_rank_collapse():
    rng = np.random.default_rng(5)
    rank1 = [np.outer(rng.normal(size=t), rng.normal(size=8)) for t in (3, 5, 9)]
    assert rank_collapse(rank1).value == pytest.approx(0.0, abs=1e-12)
    mats = [rng.normal(size=(t, 8)) for t in (4, 6)]
    ref = []
    for m in mats:
        s = np.linalg.svd(m, compute_uv=False)
        ref.append(np.sqrt((s[1:] ** 2).sum() / (s**2).sum()))
    r = rank_collapse(mats)
    assert r.value == pytest.approx(np.mean(ref), rel=1e-12) and r.fields["n_inputs"] == 2
    ids = np.repeat([7, 3], [4, 6])
    assert rank_collapse(np.concatenate(mats), ids).value == pytest.approx(np.mean(ref), rel=1e-12)
    with pytest.raises(NeurometryError, match="contiguous"):
        rank_collapse(np.concatenate(mats), np.array([0, 0, 1, 1, 0, 0, 1, 1, 1, 1]))
    with pytest.raises(NeurometryError, match="input_ids"):
        rank_collapse(np.concatenate(mats))
