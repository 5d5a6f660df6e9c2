"""``device=`` on the encoding models: :class:`RidgePath` on a device (a CPU device here, which takes the
torch path; CUDA too where the machine has it) gives the CPU path's coefficients, predictions, held-out
and leave-one-out errors, ``run_encode`` on a device gives the default's scores and penalties, and
``encode --device cuda`` on a machine without CUDA stops in one line with nothing saved or written.

Measured on the data below with the CPU device: every value equal (0 difference; both paths do the same
float64 torch arithmetic). The tolerance (1e-10 relative to the largest value) leaves room for another
device's eigendecomposition and reduction order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from neurometry.cli import main
from neurometry.ridge import DEFAULT_ALPHAS, RidgePath
from neurometry.workflows import probe as workflow
from neurometry.workflows.probe import run_encode
from tests.cli.test_bad_inputs import saved_results, snapshot

DEVICES = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
REL = 1e-10


def close(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal to :data:`REL` relative to the largest reference value (absolute below 1)."""
    bound = REL * max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=bound)


@pytest.fixture(scope="module")
def planted() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A known linear map (d, 5) of features with unequal scales and offsets, plus noise: more rows than
    features (the primal decomposition) and fewer (the dual)."""
    rng = np.random.default_rng(0)
    out = {}
    for name, (n, d) in {"tall": (160, 12), "wide": (40, 90)}.items():
        x = rng.normal(size=(n, d)) * rng.uniform(0.2, 5.0, size=d) + rng.normal(size=d)
        weights = rng.normal(size=(d, 5))
        out[name] = (x, x @ weights + 0.1 * rng.normal(size=(n, 5)) + 3.0, weights)
    return out


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize(("intercept", "standardize"), [(True, True), (False, False)])
@pytest.mark.parametrize("shape", ["tall", "wide"])
def test_ridge_path_on_the_device_equals_the_cpu_path(planted, shape, intercept, standardize, device):
    x, y, _ = planted[shape]
    n = len(x) * 3 // 4
    train, held_out = slice(0, n), slice(n, None)
    expected = RidgePath.fit(x[train], intercept=intercept, standardize=standardize)
    got = RidgePath.fit(x[train], intercept=intercept, standardize=standardize, device=device)
    assert expected.device is None and got.device == device and got.primal == expected.primal == (shape == "tall")
    close(got.eig, expected.eig)
    for alpha in (1e-3, 1.0, 1e3):
        (coef, bias), (coef0, bias0) = got.coef(y[train], alpha), expected.coef(y[train], alpha)
        close(coef * got.scale[:, None], coef0 * expected.scale[:, None])  # on the penalised scale
        close(bias, bias0)
        close(got.predict(y[train], x[held_out], alpha), expected.predict(y[train], x[held_out], alpha))
    per_target = np.array([1e-3, 10.0, 1e-3, 1e5, 1.0])
    close(got.predict(y[train], x[held_out], per_target), expected.predict(y[train], x[held_out], per_target))
    sse = got.held_out_sse(y[train], x[held_out], y[held_out], DEFAULT_ALPHAS)
    close(sse, expected.held_out_sse(y[train], x[held_out], y[held_out], DEFAULT_ALPHAS))
    close(got.loo_mse(y[train], DEFAULT_ALPHAS), expected.loo_mse(y[train], DEFAULT_ALPHAS))
    assert all(isinstance(a, np.ndarray) for a in (got.left, got.back, got.eig, sse))


def test_ridge_path_on_the_device_recovers_the_planted_map(planted):
    x, y, weights = planted["tall"]
    path = RidgePath.fit(x[:120], device=DEVICES[-1])
    coef, _ = path.coef(y[:120], 1e-3)
    # noise 0.1 over 120 rows: each standardised coefficient within a few standard errors (0.01)
    np.testing.assert_allclose((coef - weights) * path.scale[:, None], 0.0, atol=0.05)
    np.testing.assert_allclose(path.predict(y[:120], x[120:], 1e-3), x[120:] @ weights + 3.0, atol=0.1)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """120 rows of 10 features, and 6 numeric metadata columns: a linear map of them plus noise."""
    root = tmp_path_factory.mktemp("encode_devices")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 10))
    targets = x @ rng.normal(size=(10, 6)) + rng.normal(size=(120, 6)) * np.linspace(0.2, 5.0, 6)
    np.save(root / "x.npy", x)
    np.save(root / "targets.npy", targets)
    pd.DataFrame(targets, columns=[f"t{i}" for i in range(6)]).to_csv(root / "rows.csv", index=False)
    argv = ["import", str(root / "x.npy"), "--point", "p", "--out", str(root / "store"),
            "--metadata", str(root / "rows.csv")]
    assert main(argv) == 0
    return root


def test_run_encode_on_the_device_equals_the_default(small_store, monkeypatch):
    source, targets = str(small_store / "x.npy"), str(small_store / "targets.npy")
    default = run_encode(source, targets=targets, progress=False)
    (record,) = default["results"]
    assert record["target_scores"][0] > 0.9 > record["target_scores"][-1]  # the planted map, noisier to the right
    # a CPU spec keeps the CPU path itself
    assert run_encode(source, targets=targets, progress=False, device="cpu") == default
    # force the torch path on the CPU device, and see every fold's fit take it
    seen = []
    fit = RidgePath.fit.__func__

    def spy(cls, x, **options):
        seen.append(options.get("device"))
        return fit(cls, x, **options)

    monkeypatch.setattr(workflow, "stage_device", lambda spec: DEVICES[-1])
    monkeypatch.setattr(RidgePath, "fit", classmethod(spy))
    (got,) = run_encode(source, targets=targets, progress=False, device="forced")["results"]
    assert len(seen) == 5 * 5 + 5 and set(seen) == {DEVICES[-1]}  # inner folds of each outer fold, and its refit
    assert got["alphas"] == record["alphas"]
    close(np.array(got["target_scores"]), np.array(record["target_scores"]))
    assert got["score"] == pytest.approx(record["score"], rel=REL, abs=REL)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_encode_on_missing_cuda_stops_in_one_line_and_saves_nothing(small_store, capsys):
    store = small_store / "store"
    before, saved = snapshot(small_store), saved_results(store)
    capsys.readouterr()
    argv = ["encode", str(store), "--target-columns", "t0", "t1", "--plot", str(small_store / "enc.png"),
            "--device", "cuda"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("error: ") and "CUDA is not available" in err
    assert snapshot(small_store) == before and saved_results(store) == saved
