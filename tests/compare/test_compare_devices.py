"""``device=`` on the compare stage: the torch path (taken whenever a device is given, so a CPU device runs
it here) agrees with the NumPy path for CKA, RDMs and the neighbour metrics, statistics included, and
``compare --device cuda`` on a machine without CUDA stops in one line with nothing saved.

Measured on the data below (float64 on both paths): CKA within 1.4e-15 (values, p-values and intervals),
RDM entries within 3.3e-15 relative (crossnobis 2.8e-16 of its largest entry), RSA within 2.2e-16, the
neighbour metrics exactly equal. The tolerances (1e-12) leave a margin of several hundred."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neurometry.cli import main
from neurometry.compare import kernel_alignment
from neurometry.compare.kernel_alignment import LinearCKAAccumulator, cka
from neurometry.compare.matrix import compare_matrix
from neurometry.compare.neighbours import cknna, cycle_knn, mutual_knn
from neurometry.compare.rdm import compute_rdm
from neurometry.compare.rdm_comparison import rsa
from tests.cli.test_bad_inputs import saved_results, snapshot

CPU = torch.device("cpu")
CKA_ABS = 1e-12  # CKA lies in [0, 1] (the unbiased estimators dip just below 0): an absolute tolerance
RDM_REL = 1e-12


@pytest.fixture(scope="module")
def planted() -> dict[str, np.ndarray]:
    """Three representations of 120 stimuli: two narrow and related (features), one wider than n (a Gram)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 12))
    y = x @ rng.normal(size=(12, 20)) + 0.7 * rng.normal(size=(120, 20))
    wide = np.tanh(x @ rng.normal(size=(12, 300))) + 0.3 * rng.normal(size=(120, 300))
    return {"x": x, "y": y, "wide": wide}


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("estimator", ["biased", "unbiased", "minibatch"])
@pytest.mark.parametrize(("a", "b"), [("x", "y"), ("x", "wide"), ("wide", "y")])
def test_cka_torch_path_equals_numpy(planted, kernel, estimator, a, b):
    kw = {"kernel": kernel, "estimator": estimator, "batch_size": 30}
    expected = cka(planted[a], planted[b], **kw)
    assert cka(planted[a], planted[b], device=CPU, **kw) == pytest.approx(expected, abs=CKA_ABS)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_streamed_linear_cka_accumulates_on_the_device(planted, estimator):
    x, y = planted["x"] + 50.0, planted["y"]  # an offset the shift by the first chunk's mean removes
    results = []
    for device in (None, CPU):
        acc = LinearCKAAccumulator(x.shape[1], y.shape[1], device=device)
        for lo in range(0, len(x), 37):
            acc.update(x[lo : lo + 37], y[lo : lo + 37])
        results.append(acc.result(estimator))
    assert results[1] == pytest.approx(results[0], abs=CKA_ABS)
    assert results[0] == pytest.approx(cka(x, y, estimator=estimator), abs=1e-12)


def test_streamed_grams_stay_on_the_cpu_beside_device_features(planted, monkeypatch):
    """Above the stored-Gram limit a Gram is streamed on the CPU; device features cross it tile by tile."""
    monkeypatch.setattr(kernel_alignment, "_GRAM_STORE_MAX_ROWS", 50)
    for kernel in ("linear", "rbf"):
        expected = cka(planted["x"], planted["wide"], kernel=kernel, estimator="unbiased")
        got = cka(planted["x"], planted["wide"], kernel=kernel, estimator="unbiased", device=CPU)
        assert got == pytest.approx(expected, abs=CKA_ABS)


@pytest.mark.parametrize(
    ("metric", "params"),
    [
        ("cka", {}),
        ("cka", {"kernel": "rbf", "estimator": "unbiased"}),
        ("rsa", {}),
        ("rsa", {"rdm": "euclidean", "compare": "pearson"}),
        ("mutual_knn", {"k": 5}),
        ("cknna", {"k": 5}),
        ("cycle_knn", {"k": 5}),
    ],
)
def test_matrix_with_statistics_agrees_on_the_device(planted, metric, params):
    """Values, permutation p-values and bootstrap intervals: take() keeps each state on its device."""
    a, b = {"x": planted["x"], "wide": planted["wide"]}, {"y": planted["y"]}
    kw = {"permutations": 9, "bootstrap": 9, "seed": 3, **params}
    expected = compare_matrix(a, b, metric, **kw)
    got = compare_matrix(a, b, metric, device=CPU, **kw)
    fields = ("value", "p_value", "null_mean", "ci_low", "ci_high")
    exact = metric in ("mutual_knn", "cycle_knn", "cknna")  # the same float64 similarities, the same sets
    for e, g in zip(expected, got, strict=True):
        for name in fields:
            want, have = getattr(e, name), getattr(g, name)
            where = (e.point_a, e.point_b, name)
            assert have == want if exact else have == pytest.approx(want, abs=CKA_ABS), where


def test_metrics_without_a_device_path_ignore_it(planted):
    expected = compare_matrix(planted, None, "procrustes")
    got = compare_matrix(planted, None, "procrustes", device=CPU)
    assert [r.value for r in got] == [r.value for r in expected]


@pytest.mark.parametrize("method", ["correlation", "cosine", "euclidean", "sqeuclidean", "mahalanobis"])
@pytest.mark.parametrize("name", ["x", "wide"])
def test_rdm_torch_path_equals_numpy(planted, method, name):
    # "wide" has fewer pairs than entries: the NumPy path takes its few-conditions shortcut there
    expected = compute_rdm(planted[name], method).dissimilarities
    got = compute_rdm(planted[name], method, device=CPU).dissimilarities
    np.testing.assert_allclose(got, expected, rtol=RDM_REL, atol=0)


def test_crossnobis_torch_path_equals_numpy():
    rng = np.random.default_rng(1)
    means = rng.normal(size=(30, 15))
    data = means + 0.5 * rng.normal(size=(3, 30, 15))
    expected = compute_rdm(data, "crossnobis", shrinkage="diag").dissimilarities
    got = compute_rdm(data, "crossnobis", shrinkage="diag", device=CPU).dissimilarities
    # crossnobis crosses 0, so relative to its largest entry
    assert np.max(np.abs(got - expected)) <= RDM_REL * np.max(np.abs(expected))


def test_the_plain_functions_take_a_device(planted):
    x, y = planted["x"], planted["y"]
    assert rsa(x, y, device=CPU) == pytest.approx(rsa(x, y), abs=1e-12)
    assert mutual_knn(x, y, k=7, device=CPU) == mutual_knn(x, y, k=7)
    assert cycle_knn(x, y, k=7, device=CPU) == cycle_knn(x, y, k=7)
    assert cknna(x, y, k=7, device=CPU) == cknna(x, y, k=7)


def test_compare_device_cpu_is_the_default_path(small_store, capsys):
    x = str(small_store / "x.npy")
    capsys.readouterr()
    assert main(["compare", x, x, "--metric", "cka", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["compare", x, x, "--metric", "cka", "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == plain


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_compare_on_missing_cuda_stops_in_one_line_and_saves_nothing(small_store, capsys, device):
    store = small_store / "store"
    before, saved = snapshot(small_store), saved_results(store)
    capsys.readouterr()
    assert main(["compare", str(store), "--metric", "cka", "--device", device]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("error: ") and "CUDA is not available" in err
    assert snapshot(small_store) == before and saved_results(store) == saved
