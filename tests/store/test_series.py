"""Series in the store (catalog format 4): runs ordered by training step, found by name with a suggestion
for a misspelt one, left when their run is deleted; a format-3 store is migrated when opened writable and
served without series when opened read-only."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from neurometry import NeurometryError, open_store
from neurometry.store import catalog
from neurometry.store.writer import add_to_series, check_series_name, delete_run, import_array


def _runs(path, names):
    store = open_store(path, create=True)
    for i, name in enumerate(names):
        import_array(store, name, "x", [np.full((4, 3), i, dtype=np.float32)], 4)
    return store


def test_steps_come_in_step_order_whatever_the_order_they_were_added(tmp_path):
    store = _runs(tmp_path / "s", ["g-step300", "g-step0", "g-step1500", "other-step5", "loose"])
    try:
        for run, step in [("g-step300", 300), ("g-step1500", 1500), ("g-step0", 0)]:
            add_to_series(store, run, "grokking", step, f"/ckpt/{step}.safetensors", f"hash{step}")
        add_to_series(store, "other-step5", "other", 5, "live")
        assert store.series_names() == ["grokking", "other"]
        steps = store.series("grokking")
        assert [(s.step, s.run_id) for s in steps] == [(0, "g-step0"), (300, "g-step300"), (1500, "g-step1500")]
        assert steps[1].source == "/ckpt/300.safetensors" and steps[1].weights_hash == "hash300"
        assert store.series("other")[0].weights_hash is None and store.series("other")[0].source == "live"
        assert store.series_of("g-step300").step == 300
        assert store.series_of("g-step300").series == "grokking"
        assert store.series_of("loose") is None
        assert store.series_of("no-such-run") is None
    finally:
        store.close()


def test_a_step_recorded_again_replaces_what_it_held(tmp_path):
    store = _runs(tmp_path / "s", ["a", "b"])
    try:
        add_to_series(store, "a", "s", 10, "live", "h1")
        add_to_series(store, "b", "s", 10, "live", "h2")  # the same step from another run
        assert [(s.step, s.run_id, s.weights_hash) for s in store.series("s")] == [(10, "b", "h2")]
        assert store.series_of("a") is None
        add_to_series(store, "b", "s", 20, "live", "h2")  # a run is one checkpoint: it moves
        assert [(s.step, s.run_id) for s in store.series("s")] == [(20, "b")]
    finally:
        store.close()


def test_an_unknown_series_is_refused_with_the_known_ones(tmp_path):
    store = _runs(tmp_path / "s", ["a", "b"])
    try:
        with pytest.raises(NeurometryError, match="none \\(record checkpoints"):
            store.series("grokking")
        add_to_series(store, "a", "grokking", 0, "live")
        add_to_series(store, "b", "induction", 0, "live")
        with pytest.raises(NeurometryError, match="no series 'groking'.*did you mean grokking\\?.*series here: "
                                                  "grokking, induction"):
            store.series("groking")
    finally:
        store.close()


@pytest.mark.parametrize("name", ["", "-lead", ".hidden", "a b", "a/b", "step:1"])
def test_series_names_are_run_name_prefixes(name, tmp_path):
    with pytest.raises(NeurometryError, match="series name"):
        check_series_name(name)
    store = _runs(tmp_path / "s", ["a"])
    try:
        with pytest.raises(NeurometryError, match="series name"):
            add_to_series(store, "a", name, 0, "live")
        assert store.series_names() == []
    finally:
        store.close()


def test_deleted_runs_leave_their_series(tmp_path):
    store = _runs(tmp_path / "s", ["s-step0", "s-step1", "t-step0"])
    try:
        add_to_series(store, "s-step0", "s", 0, "live")
        add_to_series(store, "s-step1", "s", 1, "live")
        add_to_series(store, "t-step0", "t", 0, "live")
        delete_run(store, "s-step1")
        assert [s.run_id for s in store.series("s")] == ["s-step0"]
        delete_run(store, "t-step0")
        assert store.series_names() == ["s"]
        with pytest.raises(NeurometryError, match="no series 't'"):
            store.series("t")
    finally:
        store.close()
    reopened = open_store(tmp_path / "s", read_only=True)
    try:
        assert [s.run_id for s in reopened.series("s")] == ["s-step0"]
    finally:
        reopened.close()


def _make_format_3(path):
    store = _runs(path, ["old"])
    store.close()
    conn = sqlite3.connect(path / "catalog.sqlite")
    conn.execute("DROP TABLE series")
    conn.execute("UPDATE meta SET value = '3' WHERE key = 'version'")
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    stamps = [p for p in path.iterdir() if p.is_file() and p.suffix == ".json"]
    for stamp in stamps:
        stamp.write_text(json.dumps({"format": catalog.FORMAT_NAME, "version": 3}) + "\n")


def _tables(path):
    conn = sqlite3.connect(path / "catalog.sqlite")
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()[0]
    finally:
        conn.close()
    return tables, version


def test_a_format_3_store_read_only_serves_no_series(tmp_path):
    path = tmp_path / "s"
    _make_format_3(path)
    store = open_store(path, read_only=True)
    try:
        assert store.series_names() == []
        assert store.series_of("old") is None
        with pytest.raises(NeurometryError, match="no series 'x'"):
            store.series("x")
        assert [r.run_id for r in store.runs()] == ["old"]
    finally:
        store.close()
    tables, version = _tables(path)
    assert "series" not in tables and version == "3"  # nothing was written


def test_a_format_3_store_opened_writable_is_migrated(tmp_path):
    path = tmp_path / "s"
    _make_format_3(path)
    store = open_store(path)
    try:
        assert store.series_names() == []
        add_to_series(store, "old", "late", 7, "live")
        assert [(s.step, s.run_id) for s in store.series("late")] == [(7, "old")]
        assert store.activations("x", "old").tolist() == np.zeros((4, 3)).tolist()
    finally:
        store.close()
    tables, version = _tables(path)
    assert "series" in tables and version == str(catalog.FORMAT_VERSION) == "4"
