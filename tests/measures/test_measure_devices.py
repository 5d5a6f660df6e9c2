"""``device=`` on the measures: the covariance accumulation, its eigenvalues and the kNN search on a device
(a CPU device here, which takes the torch path) agree with the CPU path, and ``measure --device cuda`` on a
machine without CUDA stops in one line with nothing saved.

Measured on the data below (float64 on both paths), relative: alpha_req 2.8e-13 (its fit reaches the
smallest eigenvalues), effective_rank and coding_rate 5e-14, the rest within 2e-16; kNN indices equal and
distances within 5.5e-16. The tolerance (1e-10) leaves a margin of several hundred."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurometry.cli import main
from neurometry.errors import NeurometryError
from neurometry.measures import knn, mle_id, run_measures, twonn
from neurometry.measures.intrinsic_dimension import KNN_STATS
from neurometry.models import devices
from neurometry.models.devices import stage_device
from tests.cli.test_bad_inputs import saved_results, snapshot

CPU = torch.device("cpu")
REL = 1e-10


@pytest.fixture(scope="module")
def planted() -> tuple[np.ndarray, np.ndarray]:
    """2,000 rows on a 12-dimensional subspace of 40 features (so the CPU kNN screens), four classes."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 12)) @ rng.normal(size=(12, 40)) + 0.01 * rng.normal(size=(2000, 40))
    return x, rng.integers(0, 4, size=2000)


def test_streamed_measures_agree_on_the_device(planted):
    x, labels = planted
    names = ["effective_rank", "participation_ratio", "stable_rank", "alpha_req", "coding_rate", "nc1",
             "twonn", "mle_id"]

    def chunks():  # uneven chunks: the sums must not depend on them
        return [x[:700], x[700:1500], x[1500:]]

    expected = run_measures(chunks, names, labels=labels)
    got = run_measures(chunks, names, labels=labels, device=CPU)
    for name in names:
        assert got[name].value == pytest.approx(expected[name].value, rel=REL), name


def test_knn_on_the_device_is_the_exact_search(planted):
    x, _ = planted
    dist, idx = knn(x, 20)
    assert "screened_bf16" in KNN_STATS or "screened_f32" in KNN_STATS  # the CPU path screens here
    dist_device, idx_device = knn(x, 20, device=CPU)
    assert KNN_STATS["brute"] == len(x) and KNN_STATS["device"] == "cpu"
    np.testing.assert_array_equal(idx_device, idx)
    np.testing.assert_allclose(dist_device, dist, rtol=REL, atol=0)


def test_the_neighbour_estimators_take_a_device(planted):
    x, _ = planted
    assert twonn(x, device=CPU).value == pytest.approx(twonn(x).value, rel=REL)
    expected = mle_id(x, n_neighbors=10).value
    assert mle_id(x, n_neighbors=10, device=CPU).value == pytest.approx(expected, rel=REL)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("source", ["store", "x.npy"])
def test_measure_on_missing_cuda_stops_in_one_line_and_saves_nothing(small_store, capsys, source):
    before, saved = snapshot(small_store), saved_results(small_store / "store")
    capsys.readouterr()
    assert main(["measure", str(small_store / source), "--device", "cuda"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("error: ") and "CUDA is not available" in err
    assert snapshot(small_store) == before and saved_results(small_store / "store") == saved


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_measure_device_auto_says_it_chose_the_cpu(small_store, capsys):
    capsys.readouterr()
    argv = ["measure", str(small_store / "x.npy"), "--measures", "effective_rank", "--device", "auto"]
    assert main(argv) == 0
    assert "device: cpu (no CUDA)" in capsys.readouterr().err


def test_the_workflows_keep_the_cpu_on_its_numpy_path_and_refuse_mps(monkeypatch):
    assert stage_device("cpu") is None and stage_device(CPU) is None
    assert stage_device(None) is None
    monkeypatch.setattr(devices, "resolve_device", lambda spec: torch.device("mps"))
    with pytest.raises(NeurometryError, match="MPS does not support"):
        stage_device("mps")
