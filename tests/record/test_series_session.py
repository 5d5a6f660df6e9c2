"""The series session (record/series_session.py): runs equal to record()'s, byte for byte and catalog row for
catalog row; a failed write loses only its own run; NaN weights leave no store; runs it does not suit go to
record()."""

from __future__ import annotations

import errno

import numpy as np
import pytest
import torch
from torch import nn

from neurometry import NeurometryError, open_store, record
from neurometry.models.load import wrap_module
from neurometry.record import series_session
from neurometry.record.series_session import SeriesSession
from neurometry.store.store import SeriesStep
from neurometry.store.verify import verify_store

POINTS = ["embed", "mix", "head"]


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(11, 24)
        self.mix = nn.Linear(24, 24)
        self.head = nn.Linear(24, 3)
        self.example_input = torch.zeros(1, 5, dtype=torch.long)

    def forward(self, ids):
        return self.head(torch.tanh(self.mix(self.embed(ids))).mean(1))


def weights(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return Toy().state_dict()


@pytest.fixture
def data(tmp_path):
    np.save(tmp_path / "ids.npy", np.random.default_rng(0).integers(0, 11, size=(37, 5)))
    return tmp_path / "ids.npy"


def session_store(data, out, seeds, **options):
    loaded = wrap_module(Toy(), "toy")
    with SeriesSession(loaded, data, POINTS, out, **options) as session:
        for seed in seeds:
            loaded.module.load_state_dict(weights(seed))
            session.record(f"toy-step{seed}", SeriesStep("toy", seed, f"toy-step{seed}", f"seed {seed}", None))


def record_store(data, out, seeds, **options):
    loaded = wrap_module(Toy(), "toy")
    for seed in seeds:
        loaded.module.load_state_dict(weights(seed))
        record(loaded, data, POINTS, out, run=f"toy-step{seed}", progress=False,
               series_step=SeriesStep("toy", seed, f"toy-step{seed}", f"seed {seed}", None), **options)


def catalog_rows(out) -> dict:
    """Every run's catalog rows but its timestamps, and its arrays."""
    store = open_store(out)
    try:
        found = {}
        for run in store.runs():
            conn = store.connection
            found[run.run_id] = {
                "run": (run.model, run.dataset_id, run.reduce, run.dtype, run.settings, run.n_inputs, run.n_rows,
                        run.chunk_rows, run.complete),
                "points": conn.execute("SELECT * FROM points WHERE run_id = ?", (run.run_id,)).fetchall(),
                "commits": conn.execute("SELECT * FROM commits WHERE run_id = ?", (run.run_id,)).fetchall(),
                "chunks": conn.execute("SELECT * FROM chunks WHERE run_id = ? ORDER BY point, chunk",
                                       (run.run_id,)).fetchall(),
                "arrays": {p: store.activations(p, run=run.run_id) for p in POINTS},
            }
        series = [(s.step, s.run_id, s.source) for s in store.series("toy")]
        check = verify_store(store)
        assert check.clean and check.chunks > 0
        return {"runs": found, "series": series}
    finally:
        store.close()


@pytest.mark.parametrize("options", [{"reduce": "none", "batch_size": 8},
                                     {"reduce": "mean", "batch_size": 5, "chunk_rows": 16},
                                     {"reduce": "last", "dtype": "float16", "batch_size": 64}])
def test_runs_equal_those_record_makes(data, tmp_path, options):
    session_store(data, tmp_path / "session", [3, 1, 2, 5], **options)
    record_store(data, tmp_path / "plain", [3, 1, 2, 5], **options)
    ours, theirs = catalog_rows(tmp_path / "session"), catalog_rows(tmp_path / "plain")
    assert ours["series"] == theirs["series"] == [(s, f"toy-step{s}", f"seed {s}") for s in (1, 2, 3, 5)]
    assert ours["runs"].keys() == theirs["runs"].keys()
    for run, rows in ours["runs"].items():
        for key in ("run", "points", "commits", "chunks"):
            assert rows[key] == theirs["runs"][run][key], (run, key)
        for point in POINTS:
            np.testing.assert_array_equal(rows["arrays"][point], theirs["runs"][run]["arrays"][point])
    # the steps differ: each run holds its own weights' rows
    first, second = ours["runs"]["toy-step1"]["arrays"]["mix"], ours["runs"]["toy-step2"]["arrays"]["mix"]
    assert not np.array_equal(first, second)


def test_a_full_disk_loses_only_the_run_being_written(data, tmp_path, monkeypatch):
    original = series_session.write_chunk_range
    written = []

    def fill_up(root, *args):
        if root.name == "toy-step2":
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(root.name)
        return original(root, *args)

    monkeypatch.setattr(series_session, "write_chunk_range", fill_up)
    with pytest.raises(NeurometryError, match="is full \\(run toy-step2 was not stored; the runs before it are\\)"):
        session_store(data, tmp_path / "s", [1, 2, 3, 4])
    store = open_store(tmp_path / "s")
    try:
        complete = [r.run_id for r in store.runs() if r.complete]
        assert "toy-step1" in complete and "toy-step2" not in {r.run_id for r in store.runs()}
        assert not (tmp_path / "s" / "arrays" / "toy-step2").exists()
        assert verify_store(store).clean
    finally:
        store.close()


def test_nan_weights_first_leave_no_store(data, tmp_path):
    loaded = wrap_module(Toy(), "toy")
    broken = weights(1)
    broken["mix.weight"][0, 0] = float("nan")
    loaded.module.load_state_dict(broken)
    with pytest.raises(NeurometryError, match="point mix is NaN or Inf"), \
            SeriesSession(loaded, data, POINTS, tmp_path / "s", reduce="none") as session:
        session.record("toy-step1", SeriesStep("toy", 1, "toy-step1", "x", None))
    assert not (tmp_path / "s").exists()


def test_nan_weights_later_keep_the_runs_before(data, tmp_path):
    loaded = wrap_module(Toy(), "toy")
    with pytest.raises(NeurometryError, match="NaN or Inf"), \
            SeriesSession(loaded, data, POINTS, tmp_path / "s", reduce="none") as session:
        for seed in (1, 2):
            state = weights(seed)
            if seed == 2:
                state["mix.bias"][0] = float("inf")
            loaded.module.load_state_dict(state)
            session.record(f"toy-step{seed}", SeriesStep("toy", seed, f"toy-step{seed}", "x", None))
    store = open_store(tmp_path / "s")
    try:
        assert [(r.run_id, r.complete) for r in store.runs()] == [("toy-step1", True)]
    finally:
        store.close()


def test_runs_too_big_to_hold_go_to_record(data, tmp_path, monkeypatch):
    calls = []
    original = series_session.record
    monkeypatch.setattr(series_session, "MAX_RUN_BYTES", 1000)
    monkeypatch.setattr(series_session, "record", lambda *a, **k: calls.append(k["run"]) or original(*a, **k))
    session_store(data, tmp_path / "session", [1, 2], reduce="none")
    record_store(data, tmp_path / "plain", [1, 2], reduce="none")
    assert calls == ["toy-step1", "toy-step2"]
    ours, theirs = catalog_rows(tmp_path / "session"), catalog_rows(tmp_path / "plain")
    assert ours["series"] == theirs["series"]
    for point in POINTS:
        np.testing.assert_array_equal(ours["runs"]["toy-step2"]["arrays"][point],
                                      theirs["runs"]["toy-step2"]["arrays"][point])


def test_options_of_record_it_does_not_take_are_refused(data, tmp_path):
    with pytest.raises(TypeError, match="does not take max_batch_tokens"):
        SeriesSession(wrap_module(Toy(), "toy"), data, POINTS, tmp_path / "s", max_batch_tokens=10)
