"""BLAS thread limits around the small-fit paths (neurometry.threads): the context manager really sets
the counts threadpoolctl reports and restores them, NEUROMETRY_BLAS_THREADS overrides the default, every
small-fit path runs under the limit, and the limit changes no result."""

from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd
import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from neurometry.errors import NeurometryError
from neurometry.threads import DEFAULT_THREADS, ENV_VAR, blas_thread_count, blas_threads


def blas_counts() -> list[int]:
    """num_threads of every BLAS library threadpoolctl finds (NumPy's and SciPy's OpenBLAS here)."""
    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


@pytest.fixture
def two_threads(monkeypatch):
    """Start every test from 2 BLAS and 2 torch threads (the unlimited state of a 2-core machine), with
    no override in the environment; restore both after."""
    import scipy.linalg  # noqa: F401  (load SciPy's own OpenBLAS so that it is checked too)

    monkeypatch.delenv(ENV_VAR, raising=False)
    torch_before = torch.get_num_threads()
    torch.set_num_threads(2)
    with threadpool_limits(limits=2, user_api="blas"):
        assert blas_counts() and set(blas_counts()) == {2}
        yield
    torch.set_num_threads(torch_before)


def test_blas_threads_limits_every_blas_library_and_restores(two_threads):
    assert DEFAULT_THREADS == 1
    with blas_threads() as count:
        assert count == 1
        assert set(blas_counts()) == {1}
        assert torch.get_num_threads() == 2  # torch is left alone unless asked
    assert set(blas_counts()) == {2}


def test_blas_threads_restores_after_an_exception(two_threads):
    with pytest.raises(RuntimeError, match="boom"), blas_threads():
        assert set(blas_counts()) == {1}
        raise RuntimeError("boom")
    assert set(blas_counts()) == {2}


def test_nested_blas_threads_restore_the_outer_count(two_threads):
    with blas_threads(1):
        with blas_threads(2):
            assert set(blas_counts()) == {2}
        assert set(blas_counts()) == {1}
        with blas_threads(1):
            assert set(blas_counts()) == {1}
        assert set(blas_counts()) == {1}
    assert set(blas_counts()) == {2}


def test_torch_threads_are_limited_and_restored_on_request(two_threads):
    with blas_threads(torch_threads=True):
        assert torch.get_num_threads() == 1
        assert set(blas_counts()) == {1}
        with blas_threads():  # an inner block that does not ask for torch keeps the outer torch limit
            assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    assert set(blas_counts()) == {2}


def test_overlapping_blocks_in_threads_restore_only_when_the_last_exits(two_threads):
    """The dashboard computes neuron tables in several threads: one thread leaving its block must not
    lift the limit under another thread's running block."""
    entered, release_first, first_done, release_second = (threading.Event() for _ in range(4))
    seen = {}

    def first():
        with blas_threads():
            entered.set()
            release_first.wait(10)
        first_done.set()

    def second():
        entered.wait(10)
        with blas_threads():
            release_first.set()
            first_done.wait(10)
            seen["after the first left"] = set(blas_counts())
            release_second.wait(10)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    first_done.wait(10)
    release_second.set()
    for t in threads:
        t.join(10)
    assert seen["after the first left"] == {1}
    assert set(blas_counts()) == {2}


def test_environment_variable_overrides_the_default(two_threads, monkeypatch):
    with threadpool_limits(limits=1, user_api="blas"):  # start from 1 so that 3 shows it was applied
        monkeypatch.setenv(ENV_VAR, "3")
        assert blas_thread_count() == 3
        with blas_threads() as count:
            assert count == 3
            assert set(blas_counts()) == {3}
        assert set(blas_counts()) == {1}
        assert blas_thread_count(2) == 2  # an explicit count in code wins over the environment
        monkeypatch.setenv(ENV_VAR, " ")
        assert blas_thread_count() == DEFAULT_THREADS


@pytest.mark.parametrize("raw", ["0", "-1", "two", "1.5"])
def test_a_bad_environment_value_is_one_line_naming_the_fix(two_threads, monkeypatch, raw):
    monkeypatch.setenv(ENV_VAR, raw)
    with pytest.raises(NeurometryError, match=f"{ENV_VAR}=.* set it to a whole number >= 1") as error:
        with blas_threads():
            pass
    assert "\n" not in str(error.value)
    assert set(blas_counts()) == {2}


@pytest.mark.parametrize("n", [0, -2, 1.5, True, "2"])
def test_a_bad_explicit_count_is_refused(n):
    with pytest.raises(NeurometryError, match="BLAS threads must be a whole number >= 1"):
        blas_thread_count(n)


# ------------------------------------------------------------------ every small-fit path runs limited


def planted(n: int = 240, d: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows with binary labels along one planted direction plus noise (accuracy well above chance)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = (x @ rng.standard_normal(d) + 0.5 * rng.standard_normal(n) > 0).astype(np.int64)
    return x, y


@pytest.fixture
def fits_seen(monkeypatch):
    """The BLAS counts seen by every logistic or ridge fit scikit-learn runs, recorded at the fit."""
    from sklearn.linear_model import LogisticRegression, Ridge

    seen: list[set[int]] = []
    for cls in (LogisticRegression, Ridge):
        original = cls.fit

        def fit(self, *args, _original=original, **kwargs):
            seen.append(set(blas_counts()))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "fit", fit)
    return seen


def test_probes_sparse_probes_and_control_tasks_fit_with_one_thread(two_threads, fits_seen):
    from neurometry.probe import probe, selectivity, sparse_probe

    x, y = planted()
    probe(x, y)
    probe(x, x[:, 0] + 0.1 * x[:, 1], kind="ridge")
    sparse_probe(x, y, [1, 4])
    selectivity(x, y, np.arange(len(x)) % 30)
    assert len(fits_seen) == 5 + 5 + 2 * 5 + 2 * 5
    assert all(counts == {1} for counts in fits_seen)
    assert set(blas_counts()) == {2}


def test_nc4_classifier_fits_with_one_thread_from_the_measure_workflow(two_threads, fits_seen):
    from neurometry.workflows.measure import Source, measure_sources

    x, y = planted()
    src = Source("p", "vector", (x.shape[1],), lambda: [x.astype(np.float32)])
    records = measure_sources([src], ["nc4"], label_values=y, progress=False)
    assert [r["measure"] for r in records] == ["nc4"]
    assert fits_seen == [{1}]
    assert set(blas_counts()) == {2}


def test_encoding_folds_run_with_one_blas_and_one_torch_thread(two_threads, monkeypatch):
    from neurometry.probe import encode, select_alphas
    from neurometry.ridge import RidgePath

    seen = []
    original = RidgePath.fit.__func__

    def fit(cls, *args, **kwargs):
        seen.append((set(blas_counts()), torch.get_num_threads()))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(RidgePath, "fit", classmethod(fit))
    x, _ = planted(n=60, d=8)
    targets = x[:, :3] + np.random.default_rng(1).standard_normal((60, 3))
    encode(x, targets, folds=3, inner_folds=3)
    assert len(seen) == 3 * 3 + 3  # inner folds of every outer fold, then each outer refit
    select_alphas(x, targets, folds=4)
    assert len(seen) == 3 * 3 + 3 + 4
    assert all(s == ({1}, 1) for s in seen)
    assert torch.get_num_threads() == 2 and set(blas_counts()) == {2}


def labelled_store(tmp_path, x, y):
    from neurometry.store import import_array, open_store

    store = open_store(tmp_path / "store", create=True)
    import_array(store, "r", "p", [x.astype(np.float32)], len(x), pd.DataFrame({"label": y}))
    return store


def test_run_probe_and_the_neuron_page_run_with_one_thread(two_threads, fits_seen, monkeypatch, tmp_path):
    import neurometry.app.neurons as neurons
    from neurometry.workflows.probe import run_probe

    x, y = planted()
    store = labelled_store(tmp_path, x, y)
    run_probe(str(store.path), label="label", progress=False, directions=str(tmp_path / "directions"),
              direction_method="probe")
    # 5 folds, then the direction's own logistic fit outside the probe
    assert len(fits_seen) == 5 + 1 and all(counts == {1} for counts in fits_seen)
    assert (tmp_path / "directions" / "p.safetensors").is_file()

    seen = []
    original = neurons._merge_top

    def merge_top(*args):
        seen.append(set(blas_counts()))
        return original(*args)

    monkeypatch.setattr(neurons, "_merge_top", merge_top)
    table = neurons.neuron_table(store, "r", "p")
    assert seen and all(counts == {1} for counts in seen)
    np.testing.assert_allclose(table.mean, x.astype(np.float32).mean(0), rtol=1e-5, atol=1e-6)
    assert set(blas_counts()) == {2}


# ------------------------------------------------------------------ the limit changes no result


def test_results_are_the_same_with_and_without_the_limit(two_threads, monkeypatch):
    """Every limited path gives the same numbers with 1 thread (the default) as with 2 (the override):
    thread counts change only the order of a few floating-point sums."""
    from neurometry.probe import encode, probe, selectivity, sparse_probe

    x, y = planted(n=300, d=40)
    target = x[:, 0] - 0.5 * x[:, 1] + 0.3 * np.random.default_rng(2).standard_normal(len(x))
    targets = np.column_stack([target, x[:, 2] + np.random.default_rng(3).standard_normal(len(x))])

    def run():
        return {
            "logistic": probe(x, y).to_dict(),
            "ridge": probe(x, target, kind="ridge").to_dict(),
            "sparse": [r.to_dict() for r in sparse_probe(x, y, [1, 8])],
            "selectivity": selectivity(x, y, np.arange(len(x)) % 40).to_dict(),
            "encode": encode(x, targets).r,
        }

    limited = run()
    monkeypatch.setenv(ENV_VAR, "2")
    with blas_threads():
        assert set(blas_counts()) == {2}
        unlimited = run()
    np.testing.assert_allclose(limited["encode"], unlimited["encode"], rtol=0, atol=1e-10)
    for key in ("logistic", "ridge"):
        assert limited[key]["fold_scores"] == pytest.approx(unlimited[key]["fold_scores"], abs=1e-10)
        assert limited[key]["score"] == pytest.approx(unlimited[key]["score"], abs=1e-10)
    assert limited["logistic"]["score"] > 0.8  # the planted direction is found
    assert limited["ridge"]["score"] > 0.5
    for a, b in zip(limited["sparse"], unlimited["sparse"], strict=True):
        assert a["units"] == b["units"]
        assert a["fold_scores"] == pytest.approx(b["fold_scores"], abs=1e-10)
    assert limited["selectivity"]["selectivity"] == pytest.approx(unlimited["selectivity"]["selectivity"], abs=1e-10)


def test_the_cli_reports_a_bad_override_in_one_line_and_exits_2(two_threads, monkeypatch, tmp_path, capsys):
    from neurometry.cli import main

    x, y = planted()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    monkeypatch.setenv(ENV_VAR, "many")
    code = main(["probe", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy")])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: {ENV_VAR}='many' is not a thread count; set it to a whole number >= 1 (e.g. 2) or unset it "
        "for the default (1)"
    ]
    assert "Traceback" not in out + err
    monkeypatch.setenv(ENV_VAR, "2")  # a valid override runs
    assert main(["probe", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["score"] > 0.8
