"""`measure --series`, `compare --series` and `phases` on a planted series: a linear map whose rank steps
from 2 to 6 at step 10, over inputs with centred orthonormal columns, so every figure has a closed form."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from neurometry.record.live import Recorder
from neurometry.store import open_store
from neurometry.workflows.series import save_training_metrics

ROWS, WIDTH = 60, 8
LOW_RANK, HIGH_RANK, CHANGE_STEP = 2, 6, 10
STEPS = list(range(0, 20, 2))  # 10 checkpoints: 5 at rank 2, 5 at rank 6
# linear CKA of X[:, :2] with X[:, :6] when X's columns are centred, orthonormal: 2 / sqrt(2 * 6)
CKA_LOW_HIGH = LOW_RANK / np.sqrt(LOW_RANK * HIGH_RANK)


def planted_inputs() -> np.ndarray:
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(ROWS, WIDTH))
    q, _ = np.linalg.qr(raw - raw.mean(axis=0))
    return (q * np.sqrt(ROWS)).astype(np.float32)


@pytest.fixture(scope="module")
def series_store(tmp_path_factory):
    store_path = tmp_path_factory.mktemp("series") / "store"
    model = nn.Sequential()
    model.add_module("proj", nn.Linear(WIDTH, WIDTH, bias=False))
    model.add_module("act", nn.ReLU())
    with Recorder(model, {"proj": "proj", "act": "act"}, torch.from_numpy(planted_inputs()), store_path, every=1,
                  series="planted") as recorder:
        for step in STEPS:
            rank = LOW_RANK if step < CHANGE_STEP else HIGH_RANK
            with torch.no_grad():
                model.proj.weight.copy_(torch.diag(torch.tensor([1.0] * rank + [0.0] * (WIDTH - rank))))
            recorder.record(step)
    store = open_store(store_path)
    for step in store.series("planted"):
        loss = 2.0 if step.step < CHANGE_STEP else 0.02
        save_training_metrics(store, "planted", step, {"train_loss": loss, "test_loss": loss * 1.5})
    store.close()
    return store_path


def run_json(run_cli, *args) -> dict:
    result = run_cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_measure_series_gives_each_steps_rank(run_cli, series_store):
    document = run_json(run_cli, "measure", series_store, "--series", "planted", "--measures", "effective_rank",
                        "--points", "proj")
    ranks = {r["step"]: r["value"] for r in document["results"]}
    assert sorted(ranks) == STEPS
    for step, value in ranks.items():
        assert value == pytest.approx(LOW_RANK if step < CHANGE_STEP else HIGH_RANK, rel=1e-5)


def test_compare_series_with_the_final_and_a_chosen_reference(run_cli, series_store):
    final = run_json(run_cli, "compare", series_store, "--series", "planted", "--metric", "cka", "--points-a", "proj")
    assert final["reference_step"] == STEPS[-1]
    for record in final["results"]:
        expected = CKA_LOW_HIGH if record["step"] < CHANGE_STEP else 1.0
        assert record["value"] == pytest.approx(expected, abs=1e-5)
    first = run_json(run_cli, "compare", series_store, "--series", "planted", "--metric", "cka", "--reference", "0",
                     "--points-a", "proj")
    assert [r["value"] > 0.99 for r in first["results"]] == [s < CHANGE_STEP for s in STEPS]


def test_pairwise_step_matrix_is_two_blocks(run_cli, series_store):
    document = run_json(run_cli, "compare", series_store, "--series", "planted", "--metric", "cka", "--pairwise",
                        "--points-a", "proj")
    matrix = np.array(document["matrix"])
    low = np.array(STEPS) < CHANGE_STEP
    expected = np.where(low[:, None] == low[None, :], 1.0, CKA_LOW_HIGH)
    np.testing.assert_allclose(matrix, expected, atol=1e-5)


def test_phases_find_the_planted_change_in_a_measure_and_a_loss(run_cli, series_store, tmp_path):
    measured = run_json(run_cli, "phases", series_store, "--series", "planted", "--measure", "effective_rank",
                        "--point", "proj")
    assert measured["boundaries"] == [CHANGE_STEP]
    assert [p["n_points"] for p in measured["phases"]] == [5, 5]
    loss = run_json(run_cli, "phases", series_store, "--series", "planted", "--measure", "test_loss")
    assert loss["transform"] == "log" and loss["boundaries"] == [CHANGE_STEP]
    binseg = run_json(run_cli, "phases", series_store, "--series", "planted", "--measure", "train_loss",
                      "--method", "binseg", "--n-changes", "1")
    assert binseg["boundaries"] == [CHANGE_STEP] and binseg["penalty"] is None
    plotted = run_cli("phases", series_store, "--series", "planted", "--measure", "test_loss", "--plot",
                      tmp_path / "phases.png")
    assert plotted.returncode == 0 and (tmp_path / "phases.png").stat().st_size > 10_000


def test_ls_shows_the_series_as_one_line(run_cli, series_store):
    listed = run_cli("ls", series_store)
    assert listed.returncode == 0
    assert "planted" in listed.stdout and f"{STEPS[0]}..{STEPS[-1]}" in listed.stdout
    assert "planted-step2 " not in listed.stdout  # the runs of the series are not listed one by one
    document = json.loads(run_cli("ls", series_store, "--json").stdout)
    assert [s["step"] for s in document["series"]["planted"]] == STEPS


@pytest.mark.parametrize("args, message", [
    (("measure", "{store}", "--series", "plantd"), "did you mean planted"),
    (("compare", "{store}", "--series", "planted", "--metric", "cka", "--reference", "7"), "has no step 7"),
    (("compare", "{store}", "--series", "planted", "--metric", "cka", "--pairwise", "--points-a", "*"), "one point"),
    (("compare", "{store}", "{store}", "--series", "planted", "--metric", "cka"), "leave out B"),
    (("phases", "{store}", "--series", "planted", "--measure", "val_loss"), "no training metric"),
    (("phases", "{store}", "--series", "planted", "--measure", "test_loss", "--method", "binseg"), "n_changes"),
    (("record", "minilm", "{probes}", "--points", "resid.0", "--out", "{store}", "--steps", "s.txt"),
     "go with --checkpoints"),
])
def test_bad_series_requests_are_one_line(run_cli, series_store, args, message):
    probes = next((series_store / "probes").glob("*.npz"))  # an existing data file
    result = run_cli(*(a.format(store=series_store, probes=probes) for a in args))
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
