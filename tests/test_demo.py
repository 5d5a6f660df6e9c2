"""`neurometry demo` skips what its store already holds: the skip helper on a tiny store, stages read back
from the store print (and draw) exactly what they computed, and the progress display counts the stages.
The full demo takes minutes and is not run here."""

from __future__ import annotations

import pytest

from neurometry import demo
from neurometry.demo import FROM_STORE, bundled_data, demo_stages, measure_stage, probe_tasks, stored
from neurometry.record import record
from neurometry.store import open_store
from tests.conftest import KRIEGESKORTE_MAT

TINY_BERT = "neurometry.models.tiny:tiny_bert"


@pytest.fixture
def store(tmp_path):
    """The demo's 432 bundled sentences (with their topic labels) through a tiny BERT, mean over tokens."""
    record(TINY_BERT, bundled_data(), ["embed", "resid.*"], tmp_path / "store", reduce="mean", run="tiny",
           progress=False)
    return open_store(tmp_path / "store")


def test_stored_is_none_until_the_results_are_saved(store):
    from neurometry.commands.measure import measure_store

    assert stored(store, "measure", "tiny") is None
    records = measure_store(store, run="tiny", measures=["effective_rank", "anisotropy"], progress=False)
    saved = stored(store, "measure", "tiny")
    assert len(records) == len(saved) == 6  # 3 points x 2 measures
    assert list(dict.fromkeys(saved["point"])) == ["embed", "resid.0", "resid.1"]  # depth order
    assert saved["extra"].map(type).eq(dict).all()  # decoded
    assert len(stored(store, "measure", "tiny", point="resid.1")) == 2
    assert len(stored(store, "measure", "tiny", point="resid.1", name="anisotropy")) == 1
    assert stored(store, "measure", "tiny", name="twonn") is None
    assert stored(store, "measure", "another-run") is None
    assert stored(store, "probe", "tiny") is None


def test_measure_stage_from_the_store_prints_and_draws_what_it_computed(store, tmp_path, capsys):
    computed = measure_stage(store, "tiny", tmp_path / "computed.png")
    first = capsys.readouterr().out
    again = measure_stage(store, "tiny", tmp_path / "again.png")
    second = capsys.readouterr().out
    assert FROM_STORE not in first and second.startswith(FROM_STORE + "\n")
    assert second.removeprefix(FROM_STORE + "\n").replace("again.png", "computed.png") == first
    assert "nc1" in first  # neural collapse by topic: the labels were used
    assert [(r["point"], r["measure"], r["value"]) for r in again] == [
        (r["point"], r["measure"], r["value"]) for r in computed
    ]
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / "computed.png").read_bytes()


def test_probe_tasks_are_read_back_without_loading_the_model(tmp_path, capsys):
    from neurometry.demo import PROBE_TASKS, print_probe_tasks
    from neurometry.models.tiny import tiny_bert

    loads = []

    def load(name):
        loads.append(name)
        return tiny_bert()

    first = probe_tasks(["tiny"], tmp_path / "store", load=load)
    print_probe_tasks(first)
    printed = capsys.readouterr().out
    assert loads == ["tiny"]  # once for its four tasks
    assert len(first) == len(PROBE_TASKS) * 3  # embed, resid.0, resid.1
    again = probe_tasks(["tiny"], tmp_path / "store", load=load)
    print_probe_tasks(again)
    assert loads == ["tiny"]  # not loaded again
    assert again == first  # every field, to the last bit
    assert capsys.readouterr().out == FROM_STORE + "\n" + printed


def test_stages_are_counted_for_quick_and_full_runs(tmp_path):
    assert [s.name for s in demo_stages(tmp_path, quick=True)] == ["record MiniLM", "measure", "CKA", "report"]
    brain = ["record EfficientNet", "brain RSA"] if KRIEGESKORTE_MAT.is_file() else []
    assert [s.name for s in demo_stages(tmp_path)] == [
        "record MiniLM", "measure", "CKA", *brain, "probes", "steer", "patch", "diff", "SAE", "report",
    ]


def test_progress_headers_and_the_timing_table(tmp_path, capsys, monkeypatch):
    ran = []
    stages = [demo.Stage(name, f"{name}: doing it", lambda name=name: ran.append(name)) for name in "abc"]
    monkeypatch.setattr(demo, "demo_stages", lambda out, quick: stages)
    demo.run_demo(tmp_path / "out", quick=True)
    err = capsys.readouterr().err
    assert ran == ["a", "b", "c"]
    for i, name in enumerate("abc", 1):
        assert f"== [{i}/3] {name}: doing it  (0:00 elapsed)" in err
    table = err[err.index("stage"):].splitlines()
    assert [line.split()[:2] for line in table[2:5]] == [["1/3", "a"], ["2/3", "b"], ["3/3", "c"]]
    assert table[5].startswith("total") and len(table) == 6
