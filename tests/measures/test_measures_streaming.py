import numpy as np
import pytest

from neurometry.errors import NeurometryError
from neurometry.measures import MEASURES, effective_rank, run_measures

N, D = 240, 12


def data():
    rng = np.random.default_rng(0)
    x = rng.standard_t(5, size=(N, D)) @ rng.normal(size=(D, D)) + 5.0
    x[x < 4.0] = 0.0  # some exact zeros for dead/sparsity
    x[:, 2] = 0.0
    labels = rng.integers(0, 4, size=N)
    x += 3 * rng.normal(size=(4, D))[labels]
    ids = np.repeat(np.arange(N // 8), 8)
    other = x + rng.normal(size=x.shape)
    w, b = rng.normal(size=(4, D)), rng.normal(size=4)
    return x, labels, ids, other, (w, b)


def chunked(a, size=7):
    return lambda: (a[i : i + size] for i in range(0, len(a), size))


ROW_MEASURES = sorted(n for n, m in MEASURES.items() if m.kind != "attention")


def test_registry_complete():
    assert set(MEASURES) >= {
        "effective_rank", "participation_ratio", "alpha_req", "n_components_90", "n_components_95",
        "n_components_99", "stable_rank", "twonn", "mle_id", "anisotropy", "mean_norm", "layer_cosine",
        "rank_collapse", "nc1", "nc2_equinorm", "nc2_equiangular", "nc3", "nc4", "cdnv", "coding_rate",
        "dead_fraction", "sparsity", "kurtosis", "outlier_dims", "massive_activations",
        "attention_entropy", "sink_mass",
    }  # fmt: skip
    for m in MEASURES.values():
        assert m.doc and m.kind and m.needs and callable(m.compute)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_streamed_equals_in_memory(dtype):
    x, labels, ids, other, clf = data()
    x, other = x.astype(dtype), other.astype(dtype)
    kw = dict(labels=labels, input_ids=ids, classifier=clf, n_neighbors=10, median_sample=100_000)
    whole = run_measures(lambda: [x], ROW_MEASURES, other=lambda: [other], **kw)
    streamed = run_measures(chunked(x), ROW_MEASURES, other=chunked(other), **kw)
    for name in ROW_MEASURES:
        assert streamed[name].value == pytest.approx(whole[name].value, rel=1e-9, abs=1e-12), name
        assert streamed[name].n_rows == N
    p = np.random.default_rng(1).dirichlet(np.ones(9), size=(N, 3))
    p[::5, 1, 5:] = 0
    p[::5, 1, :5] /= p[::5, 1, :5].sum(-1, keepdims=True)
    whole = run_measures(lambda: [p], ["attention_entropy", "sink_mass"])
    streamed = run_measures(chunked(p, 11), ["attention_entropy", "sink_mass"])
    for name in whole:
        assert streamed[name].value == pytest.approx(whole[name].value, rel=1e-9)


def test_float16_chunks():
    x = np.random.default_rng(2).normal(size=(500, 16)).astype(np.float16)
    assert run_measures(chunked(x, 64), ["effective_rank"])["effective_rank"].value == pytest.approx(
        effective_rank(x.astype(np.float64)).value, rel=1e-12
    )


def test_bad_input():
    x = np.random.default_rng(3).normal(size=(30, 4))
    bad = x.copy()
    bad[17, 2] = np.nan
    with pytest.raises(NeurometryError, match="row 17"):
        run_measures(chunked(bad, 5), ["mean_norm"])
    bad[17, 2] = np.inf
    with pytest.raises(NeurometryError, match="row 17"):
        effective_rank(bad)
    with pytest.raises(NeurometryError, match="shaped"):
        effective_rank(np.ones(5))
    with pytest.raises(NeurometryError, match="same feature shape"):
        run_measures(lambda: [x, x[:, :3]], ["mean_norm"])
    with pytest.raises(NeurometryError, match="did you mean"):
        run_measures(lambda: [x], ["efective_rank"])
    with pytest.raises(NeurometryError, match="unknown parameter"):
        run_measures(lambda: [x], ["twonn"], n_neighbours=3)
    with pytest.raises(NeurometryError, match="empty"):
        run_measures(lambda: [], ["mean_norm"])
    with pytest.raises(NeurometryError, match="real numbers"):
        run_measures(lambda: [np.array([["a"]])], ["mean_norm"])


def test_result_to_dict_is_json():
    import json

    x = np.random.default_rng(4).normal(size=(50, 6))
    r = run_measures(lambda: [x], ["outlier_dims", "kurtosis"])
    for v in r.values():
        json.dumps(v.to_dict())
        assert v.params is not None and v.name in MEASURES
