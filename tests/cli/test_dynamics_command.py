"""`neurometry dynamics` on a recorded run: a tanh unit h' = tanh(2h + x) has fixed points at 0 (unstable)
and at the two roots of h = tanh(2h) (stable); its Lyapunov exponent along a trajectory that settles on one
is log of the slope there; results are saved in the store; bad input is one line, exit 2."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.optimize import brentq

from neurometry.store import open_store
from neurometry.store.results import FIXED_POINTS, LYAPUNOV

MODEL = "from tests.conftest import Bistable\n\nmodel = Bistable()\n"  # importable as bistable_model:model



@pytest.fixture()
def recorded(tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "bistable_model.py").write_text(MODEL)
    rng = np.random.default_rng(0)
    inputs = np.zeros((20, 30, 1), dtype=np.float32)
    inputs[:, :3, 0] = rng.choice([-1.0, 1.0], size=(20, 1))  # a push to one side, then zero input
    np.save(tmp_path / "trials.npy", inputs)
    result = run_cli("record", "bistable_model:model", tmp_path / "trials.npy", "--points", "rnn", "--reduce", "steps",
                     "--out", tmp_path / "store", "--plot", tmp_path / "trajectories.png")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "trajectories.png").stat().st_size > 10_000
    return tmp_path


def test_fixed_points_of_the_bistable_unit(recorded, run_cli):
    result = run_cli("dynamics", "fixed-points", "bistable_model:model", "--store", recorded / "store",
                     "--initial-states", 64, "--noise", 0.3, "--json", "--plot", recorded / "fp.png")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    root = brentq(lambda h: math.tanh(2 * h) - h, 0.5, 1.0)
    assert (document["fixed_points"], document["stable"], document["saddles"]) == (3, 2, 0)
    assert document["converged"] and document["best_q"] < 1e-20
    kinds = sorted((r["stability"], round(r["top_eigenvalue_abs"], 6)) for r in document["results"])
    assert kinds == [("stable", round(2 * (1 - root**2), 6))] * 2 + [("unstable", 2.0)]
    assert (recorded / "fp.png").stat().st_size > 10_000
    store = open_store(recorded / "store")
    saved = FIXED_POINTS.load(store)
    states = sorted(round(e["state"][0], 9) for e in saved["extra"])
    np.testing.assert_allclose(states, [-root, 0.0, root], atol=1e-9)
    store.close()


def test_lyapunov_along_trajectories_that_settle(recorded, run_cli):
    result = run_cli("dynamics", "lyapunov", "bistable_model:model", "--store", recorded / "store",
                     "--discard", 10, "--json")
    assert result.returncode == 0, result.stderr
    root = brentq(lambda h: math.tanh(2 * h) - h, 0.5, 1.0)
    # after the transient every trajectory rests on +-h*, where the map's slope is 2 (1 - h*^2)
    assert json.loads(result.stdout)["exponents"][0] == pytest.approx(math.log(2 * (1 - root**2)), abs=1e-6)
    store = open_store(recorded / "store")
    assert len(LYAPUNOV.load(store)) == 1
    store.close()


def test_bad_input_is_one_line(recorded, run_cli, tmp_path):
    for args, message in [
        (("fixed-points", "bistable_model:model", "--store", recorded / "missing"), "missing"),
        (("fixed-points", "bistable_model:model", "--store", recorded / "store", "--weights", recorded / "x.bin"),
         "not a .safetensors file"),
        (("fixed-points", "bistable_model:model", "--store", recorded / "store", "--input", recorded / "none.npy"),
         "none.npy"),
        (("lyapunov", "bistable_model:model", "--store", recorded / "store", "--discard", 30), "discard"),
    ]:
        result = run_cli("dynamics", *args)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_the_report_shows_the_fixed_points_over_the_recorded_trajectories_and_the_spectrum(recorded, run_cli):
    from neurometry.workflows.dynamics import saved_fixed_point_searches

    for analysis in ("fixed-points", "lyapunov"):
        assert run_cli("dynamics", analysis, "bistable_model:model", "--store", recorded / "store").returncode == 0
    store = open_store(recorded / "store")
    (search,) = saved_fixed_point_searches(store, FIXED_POINTS.load(store))
    assert search["trajectories"].shape == (20, 30, 1)  # the recorded rnn point is the whole state
    # every trial ends on one of the two stable points, +-h*, the largest in magnitude of the three found
    np.testing.assert_allclose(np.abs(search["trajectories"][:, -1, 0]), np.abs(search["states"]).max(), atol=1e-5)
    store.close()
    assert run_cli("report", recorded / "store", "-o", recorded / "report.html").returncode == 0
    page = (recorded / "report.html").read_text()
    assert 'id="s-fixed_point_search"' in page and 'id="s-lyapunov"' in page
    assert page.count("<img") == 1 and "Kaplan-Yorke dimension" in page  # the points' figure; the spectrum's table


def test_record_plot_needs_steps(recorded, run_cli):
    result = run_cli("record", "bistable_model:model", recorded / "trials.npy", "--points", "rnn", "--reduce", "last",
                     "--out", recorded / "other", "--plot", recorded / "t.png")
    assert result.returncode == 2 and "--plot draws the trajectories of a --reduce steps" in result.stderr
    assert not (recorded / "other").exists()


def _spiral(rotation: np.ndarray | None, seed: int, units: int = 3) -> np.ndarray:
    """(trials, time, units) of a damped rotation in the first two units (the third decays), from noisy starts;
    seen through ``rotation`` when given."""
    angle, radius = 0.3, 0.97
    step = np.zeros((units, units))
    step[:2, :2] = radius * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    step[2:, 2:] = 0.5 * np.eye(units - 2)
    rng = np.random.default_rng(seed)
    states = [rng.normal(size=(8, units))]
    for _ in range(59):
        states.append(states[-1] @ step.T)
    trajectories = np.stack(states, axis=1)
    return trajectories @ rotation.T if rotation is not None else trajectories


def test_compare_dsa_of_two_arrays_is_zero_for_a_rotated_copy(tmp_path, run_cli):
    rotation, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(3, 3)))
    np.save(tmp_path / "a.npy", _spiral(None, 0))
    np.save(tmp_path / "b.npy", _spiral(rotation, 0))
    result = run_cli("compare", tmp_path / "a.npy", tmp_path / "b.npy", "--metric", "dsa", "--n-delays", 2, "--json")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)["results"]
    assert (row["point_a"], row["point_b"], row["metric"]) == ("a.npy", "b.npy", "dsa")
    assert row["value"] < 1e-6
    bad = run_cli("compare", tmp_path / "a.npy", tmp_path / "b.npy", "--metric", "dsa", "--n-delays", 100)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_compare_dsa_reads_a_stores_trajectories(recorded, run_cli):
    result = run_cli("compare", recorded / "store", recorded / "store", "--metric", "dsa", "--n-delays", 2, "--json")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)["results"]
    assert (row["point_a"], row["point_b"]) == ("rnn", "rnn") and row["value"] < 1e-6
