"""The result kinds of `neurometry.store.results`: saving replaces a result set (its points, or all of it) in
one transaction, loading decodes and orders by depth, layouts are versioned, and a format-1 catalog is
upgraded in place with every result kept."""

from __future__ import annotations

import json
import math
import sqlite3

import numpy as np
import pytest

from neurometry.errors import NeurometryError
from neurometry.store import open_store
from neurometry.store.catalog import FORMAT_VERSION
from neurometry.store.results import COMPARE, KINDS, MEASURE, PATCH, Result, listing, set_name
from neurometry.store.writer import import_array


@pytest.fixture
def store(tmp_path):
    """A store with one run 'r' of points block.2 and block.10 (depth order differs from name order)."""
    store = open_store(tmp_path / "s.nmstore", create=True)
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    import_array(store, "r", "block.2", [rows], 4)
    import_array(store, "r2", "x", [rows], 4)
    return store


def measure(point, name, value, label="topic", **extra):
    settings = dict(label=label, seed=0)
    return Result(point, name, value, params=settings, extra={"n_rows": 4, **extra},
                  result_set=set_name(measure=name, **settings))


def test_round_trip_decodes_and_orders_by_depth(store):
    MEASURE.save(store, "r", [measure("x.10", "effective_rank", 2.5), measure("x.2", "effective_rank", 1.5, note="n")])
    loaded = MEASURE.load(store, "r")
    # x.2 before x.10: not recorded points of the run, so natural order, not the catalog's name order
    assert list(loaded["point"]) == ["x.2", "x.10"]
    assert list(loaded["value"]) == [1.5, 2.5]
    assert loaded["params"].iloc[0] == {"label": "topic", "seed": 0}
    assert loaded["extra"].iloc[0] == {"n_rows": 4, "note": "n"}
    assert set(loaded["result_set"]) == {"label=topic measure=effective_rank seed=0"}
    assert MEASURE.load(store, "r", point="x.10")["value"].tolist() == [2.5]
    assert MEASURE.load(store, "other").empty and COMPARE.load(store).empty


def test_points_policy_replaces_the_saved_points_of_the_set_only(store):
    MEASURE.save(store, "r", [measure("a", "twonn", 1.0), measure("b", "twonn", 2.0), measure("a", "twonn", 9.0, "tense")])
    MEASURE.save(store, "r", [measure("a", "twonn", 3.0)])
    loaded = MEASURE.load(store, "r")
    by = {(r.point, r.params["label"]): r.value for r in loaded.itertuples()}
    assert by == {("a", "topic"): 3.0, ("b", "topic"): 2.0, ("a", "tense"): 9.0}


def test_set_policy_replaces_the_whole_set_and_leaves_other_sets(store):
    def trace(points, name):
        return [Result(p, name, float(i), extra={"scores": [float(i)], "order": i}, result_set=name)
                for i, p in enumerate(points)]

    PATCH.save(store, "m", trace(["resid.0", "resid.1", "resid.2"], "pair A") + trace(["resid.0"], "pair B"))
    PATCH.save(store, "m", trace(["resid.1"], "pair A"))  # fewer points: none of the old ones stays
    loaded = PATCH.load(store)
    assert sorted(zip(loaded["result_set"], loaded["point"], strict=True)) == [("pair A", "resid.1"), ("pair B", "resid.0")]


def test_a_failed_save_changes_nothing(store):
    class Unwritable:
        def __str__(self) -> str:
            raise OSError("disk full")

    MEASURE.save(store, "r", [measure("a", "twonn", 1.0), measure("b", "twonn", 2.0)])
    # the old rows of the set are deleted first; the insert then fails on the second record
    with pytest.raises(OSError, match="disk full"):
        MEASURE.save(store, "r", [measure("a", "twonn", 5.0), measure("b", "twonn", 6.0, bad=Unwritable())])
    assert MEASURE.load(store, "r")["value"].tolist() == [1.0, 2.0]


def test_required_keys_are_checked_on_save_and_non_finite_values_read_back_as_none(store):
    with pytest.raises(TypeError, match="lacks seed, n_rows"):
        MEASURE.save(store, "r", [Result("a", "twonn", 1.0, params={"label": None})])
    MEASURE.save(store, "r", [measure("a", "twonn", math.nan), measure("b", "twonn", math.inf)])
    assert MEASURE.load(store, "r")["value"].isna().all()


def test_a_newer_layout_is_refused_with_a_clear_message(store):
    MEASURE.save(store, "r", [measure("a", "twonn", 1.0)])
    with store.transaction() as conn:
        conn.execute("UPDATE results SET schema = ?", (MEASURE.version + 1,))
    with pytest.raises(NeurometryError, match="newer than this neurometry reads"):
        MEASURE.load(store)


def test_listing_and_delete(store):
    MEASURE.save(store, "r", [measure("a", "twonn", 1.0), measure("b", "twonn", 2.0), measure("a", "mle_id", 3.0)])
    MEASURE.save(store, "r2", [measure("x", "twonn", 1.0)])
    sets = listing(store)
    assert list(sets.columns) == ["run_id", "kind", "result_set", "points", "records", "created"]
    assert [(r.run_id, r.result_set, r.points, r.records) for r in sets.itertuples()] == [
        ("r", "label=topic measure=mle_id seed=0", 1, 1),
        ("r", "label=topic measure=twonn seed=0", 2, 2),
        ("r2", "label=topic measure=twonn seed=0", 1, 1),
    ]
    assert MEASURE.delete(store, "r", "label=topic measure=twonn seed=0") == 2
    assert MEASURE.load(store)["name"].tolist() == ["mle_id", "twonn"]
    assert MEASURE.delete(store) == 2 and listing(store).empty


def test_set_names_read_as_settings():
    assert set_name(metric="rsa", seed=0, run_b=None, points_b=["a", "b"]) == 'metric=rsa points_b=["a", "b"] seed=0'
    assert set(KINDS) == {"measure", "compare", "probe", "encode", "steer_sweep", "patch", "diff", "sae_eval",
                          "sae_features", "training", "phases", "lab", "fixed_point_search", "lyapunov", "reading_fit",
                          "truth_probe", "truth_transfer", "truth_causal", "truth_baseline", "ood", "ood_series"}


def test_a_format_1_store_is_upgraded_in_place_with_its_results(tmp_path):
    path = tmp_path / "old.nmstore"
    store = open_store(path, create=True)
    store.close()
    # rebuild the catalog as format 1 wrote it: no result sets, no layout version
    conn = sqlite3.connect(path / "catalog.sqlite")
    conn.executescript(
        """DROP TABLE results;
        CREATE TABLE results (run_id TEXT NOT NULL, point TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
            params TEXT NOT NULL, value REAL, extra TEXT NOT NULL, created TEXT NOT NULL,
            PRIMARY KEY (run_id, point, kind, name, params));
        INSERT INTO results VALUES ('r', 'resid.1', 'measure', 'twonn', '{"seed": 0}', 7.5, '{"n_rows": 3}', 'then');
        UPDATE meta SET value = '1' WHERE key = 'version';"""
    )
    conn.commit()
    conn.close()
    (path / "neurometry.json").write_text(json.dumps({"format": "neurometry-store", "version": 1}))
    with pytest.raises(NeurometryError, match="open it once with a command that may write"):
        open_store(path, read_only=True)
    upgraded = open_store(path)
    loaded = MEASURE.load(upgraded)
    assert loaded[["point", "name", "value", "result_set"]].values.tolist() == [["resid.1", "twonn", 7.5, ""]]
    assert loaded["extra"].iloc[0] == {"n_rows": 3}
    assert json.loads((path / "neurometry.json").read_text())["version"] == FORMAT_VERSION
    assert open_store(path, read_only=True).result_rows()["schema"].tolist() == [1]
