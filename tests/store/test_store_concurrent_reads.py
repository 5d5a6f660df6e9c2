"""Reading a store while a `record` registers a new run: the reader's queries are separate reads, so a
run's points can be visible before the run itself; they must be left out, not raise."""

from __future__ import annotations

import json

from neurometry.record import record
from neurometry.store import open_store
from neurometry.store.catalog import connect, transaction

TINY = "neurometry.models.tiny:tiny_llama"


def test_points_of_a_run_not_yet_visible_are_left_out(sentences_file, tmp_path):
    path = tmp_path / "s.nmstore"
    record(TINY, sentences_file, ["resid.0", "resid.1"], path, reduce="mean", run="done", progress=False)
    reader = open_store(path, read_only=True)
    before = [(p.run_id, p.point, p.n_rows) for p in reader.points()]
    assert before == [("done", "resid.0", 8), ("done", "resid.1", 8)]
    # what the reader's second query can see of a run whose registration landed after its first query
    writer = connect(path / "catalog.sqlite")
    with transaction(writer):
        writer.execute("INSERT INTO points VALUES ('arriving', 'resid.0', 0, 'model.layers.0', 'resid', ?, 'float32')",
                       (json.dumps([64]),))
    assert [(p.run_id, p.point, p.n_rows) for p in reader.points()] == before
    assert [p.point for p in reader.points("done")] == ["resid.0", "resid.1"]
