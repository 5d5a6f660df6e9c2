"""`neurometry demo` skips what its store already holds: the skip helper on a tiny store, stages read back
from the store print (and draw) exactly what they computed without loading a model, and the progress
display counts the stages. The full demo takes minutes and is not run here (tiny seeded models stand in
for SmolLM2 and its finetune)."""

from __future__ import annotations

import pytest

from neurometry import demo
from neurometry.demo import FROM_STORE, bundled_data, demo_stages, measure_stage, probe_tasks, stored
from neurometry.record import record
from neurometry.store import open_store
from neurometry.store.results import DIFF, MEASURE, PROBE
from tests.conftest import KRIEGESKORTE_MAT

TINY_BERT = "neurometry.models.tiny:tiny_bert"


@pytest.fixture
def store(tmp_path):
    """The demo's 432 bundled sentences (with their topic labels) through a tiny BERT, mean over tokens."""
    record(TINY_BERT, bundled_data(), ["embed", "resid.*"], tmp_path / "store", reduce="mean", run="tiny",
           progress=False)
    return open_store(tmp_path / "store")


def test_stored_is_none_until_the_results_are_saved(store):
    from neurometry.workflows.measure import measure_store

    assert stored(store, MEASURE, "tiny") is None
    records = measure_store(store, run="tiny", measures=["effective_rank", "anisotropy"], progress=False)
    saved = stored(store, MEASURE, "tiny")
    assert len(records) == len(saved) == 6  # 3 points x 2 measures
    assert list(dict.fromkeys(saved["point"])) == ["embed", "resid.0", "resid.1"]  # depth order
    assert saved["extra"].map(type).eq(dict).all()  # decoded
    assert len(stored(store, MEASURE, "tiny", point="resid.1")) == 2
    assert len(stored(store, MEASURE, "tiny", point="resid.1", name="anisotropy")) == 1
    assert stored(store, MEASURE, "tiny", name="twonn") is None
    assert stored(store, MEASURE, "another-run") is None
    assert stored(store, PROBE, "tiny") is None


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


@pytest.fixture(scope="module")
def deep_llama():
    """A seeded tiny Llama with SmolLM2's 30 layers (the stages read resid.0-29), and a copy whose layer-1
    MLP gained a rank-1 term, standing in for the finetune."""
    import copy

    import torch

    from neurometry.models.tiny import tiny_llama

    base = tiny_llama(seed=0, layers=30)
    fine = copy.deepcopy(base)
    down = fine.module.model.layers[1].mlp.down_proj
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        down.weight += torch.outer(torch.randn(down.out_features, generator=generator),
                                   torch.randn(down.in_features, generator=generator))
    return base, fine


def _stage_twice(tmp_path, capsys, monkeypatch, run_stage, base):
    """Run a stage with ``base`` as SmolLM2, then again on a fresh demo over the same store where loading
    any model fails; returns both outputs."""
    open_store(tmp_path / "store", create=True)
    run_stage(demo._Demo(tmp_path, quick=False, models={"smollm2-135m": base}))
    first = capsys.readouterr().out

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded although its results are stored")

    monkeypatch.setattr(demo, "load_model", refuse)
    monkeypatch.setattr("neurometry.steer.finetune.load_or_finetune", refuse)
    run_stage(demo._Demo(tmp_path, quick=False))
    return first, capsys.readouterr().out


PAIR = {"clean": "the cat sat on the mat", "corrupted": "the dog sat on the mat", "correct": "cat", "wrong": "dog"}


def test_patch_stage_from_the_store_prints_and_draws_what_it_computed(deep_llama, tmp_path, capsys, monkeypatch):
    drawn = []

    def patch_stage(d):
        demo._run_patching(d, PAIR)
        drawn.append((tmp_path / "patching.png").read_bytes())

    first, second = _stage_twice(tmp_path, capsys, monkeypatch, patch_stage, deep_llama[0])
    assert FROM_STORE not in first and second == FROM_STORE + "\n" + first
    lines = first.splitlines()
    assert [line.split(":")[0].strip() for line in lines[:5]] == ["resid.0", "resid.10", "resid.20", "resid.23",
                                                                   "resid.29"]
    # exact: the last block's output at the last position alone restores the clean answer
    assert lines[4] == "  resid.29: strongest at '[SEP]' (1.00)"
    assert drawn[1] == drawn[0] and drawn[0].startswith(b"\x89PNG")  # redrawn from the store, the same image


def test_diff_stage_from_the_store_prints_what_it_computed(deep_llama, tmp_path, capsys, monkeypatch):
    base, fine = deep_llama
    weights = tmp_path / "fine.safetensors"  # never written: the stage only names it
    monkeypatch.setattr("neurometry.steer.finetune.finetuned_weights", lambda model: weights)
    monkeypatch.setattr("neurometry.steer.finetune.load_or_finetune", lambda model: (fine, weights))
    first, second = _stage_twice(tmp_path, capsys, monkeypatch, demo._run_diffing, base)
    assert FROM_STORE not in first and second == FROM_STORE + "\n" + first
    lines = first.splitlines()
    assert lines[0].startswith("  lens of the difference at resid.14 (first 5 tokens of 20 neutral texts): '")
    assert lines[1].startswith("  lens of the difference at resid.22 ") and lines[1].count(", ") == 2  # top 3
    assert lines[2] == "  base model steered with the difference (resid.15, alpha 2):"
    assert lines[-1] == f"  the finetuned weights: {weights} (try: neurometry diff smollm2-135m {weights})"
    saved = stored(open_store(tmp_path / "store"), DIFF, "smollm2-135m", name=str(weights))
    assert sorted(saved["point"]) == ["resid.14", "resid.15", "resid.22"]
    assert stored(open_store(tmp_path / "store"), DIFF, "smollm2-135m", params={"first_k": 5}) is None


# -- the demo after a user's own analysis (issue 15) ---------------------------------------------------------
def _write_rdm_mat(path, key, rdms):
    """A MATLAB file holding ``rdms`` (name -> condensed vector) as a struct array with ``RDM`` and ``name``
    fields under ``key``: the layout of Kriegeskorte et al. 2008's file."""
    import numpy as np
    import scipy.io

    table = np.zeros(len(rdms), dtype=[("RDM", object), ("name", object)])
    for i, (name, vector) in enumerate(rdms.items()):
        table[i] = (vector, name)
    scipy.io.savemat(path, {key: table})
    return path


def test_the_brain_stage_reruns_unchanged_after_a_users_own_rsa(tmp_path, capsys):
    """Issue 15: the demo's brain RSA, then the comparison its closing lines invite (RSA of the same run
    against the user's behaviour.mat, without permutations, saved in the same store), then the demo
    again: the rerun reads back only its own comparison and prints the same table, where it used to read
    the user's rows too and die on their missing p-values."""
    import numpy as np
    from scipy.spatial.distance import pdist
    from scipy.stats import spearmanr

    from neurometry.cli import main
    from neurometry.datasets import KRIEGESKORTE_RDM_KEY
    from neurometry.store.results import COMPARE
    from tests.conftest import write_tense_sentences

    stimuli = write_tense_sentences(tmp_path / "stimuli.jsonl")  # 40 stimuli
    record(TINY_BERT, stimuli, ["embed", "resid.*"], tmp_path / "store", reduce="mean", run="efficientnet-k92",
           progress=False)
    rng = np.random.default_rng(0)
    x = open_store(tmp_path / "store").activations("resid.1", run="efficientnet-k92").astype(np.float64)
    monkey = pdist(x, "correlation") + 0.05 * rng.random(780)  # related to the model, not equal to it
    human = monkey + 0.2 * rng.random(780)
    brain = _write_rdm_mat(tmp_path / "brain.mat", KRIEGESKORTE_RDM_KEY, {"mIT": monkey, "hIT": human})
    behaviour = tmp_path / "behaviour.mat"
    import scipy.io

    scipy.io.savemat(behaviour, {"rdms_behav_92": rng.random(780)})

    demo._run_brain(demo._Demo(tmp_path, quick=False), brain)
    first = capsys.readouterr().out
    lines = first.splitlines()
    assert lines[0].split() == ["rsa:", "A", "\\", "B", "mIT", "hIT"]
    assert [line.split()[0] for line in lines[2:5]] == ["embed", "resid.0", "resid.1"]
    assert lines[5] == "cells: value [bootstrap interval] p (permutation test); * p < 0.05"
    assert lines[6] == f"reference level: monkey IT vs human IT = {spearmanr(monkey, human)[0]:.4f}"

    assert main(["compare", str(tmp_path / "store"), str(behaviour), "--metric", "rsa", "--points-a", "resid.*",
                 "--run-a", "efficientnet-k92", "--rdm-key", "rdms_behav_92"]) == 0
    capsys.readouterr()
    saved = COMPARE.load(open_store(tmp_path / "store"), "efficientnet-k92")
    assert len(saved) == 3 * 2 + 2  # the demo's 3 points x 2 regions beside the user's 2 points
    assert saved["extra"].map(lambda e: e["p_value"] is None).sum() == 2  # the user's: no permutations

    demo._run_brain(demo._Demo(tmp_path, quick=False), brain)
    assert capsys.readouterr().out == FROM_STORE + "\n" + first


def test_the_comparison_table_prints_records_lacking_statistics(capsys):
    """A printer never assumes fields another producer did not write: a record without p-value, null mean
    or interval (absent or None) and a pair missing from a grid print as '-'."""
    from neurometry.tables.compare import print_comparison

    full = {"metric": "rsa", "value": 0.5, "p_value": 0.01, "null_mean": 0.001, "ci_low": 0.4, "ci_high": 0.6}
    print_comparison({"results": [
        {**full, "point_a": "embed", "point_b": "behaviour"},
        {"metric": "rsa", "value": 0.25, "point_a": "resid.0", "point_b": "behaviour"},  # no statistics at all
        {**full, "point_a": "resid.1", "point_b": "behaviour", "p_value": None, "null_mean": None},
    ]})
    assert capsys.readouterr().out.splitlines() == [
        "point A  point B    rsa     p     null mean  CI low  CI high",
        "-------  ---------  ------  ----  ---------  ------  -------",
        "embed    behaviour  0.5000  0.01  0.0010     0.4000  0.6000",
        "resid.0  behaviour  0.2500  -     -          -       -",
        "resid.1  behaviour  0.5000  -     -          0.4000  0.6000",
    ]
    print_comparison({"results": [
        {**full, "point_a": "embed", "point_b": "mIT"},
        {**full, "point_a": "embed", "point_b": "hIT", "ci_low": None, "ci_high": None},
        {"metric": "rsa", "value": 0.25, "point_a": "resid.0", "point_b": "mIT"},  # and no (resid.0, hIT)
    ]})
    assert capsys.readouterr().out.splitlines()[:4] == [
        "rsa: A \\ B  mIT                            hIT",
        "----------  -----------------------------  --------------",
        "embed       0.5000 [0.400, 0.600] p=0.01*  0.5000 p=0.01*",
        "resid.0     0.2500                         -",
    ]
    print_comparison({"results": [
        {"metric": "cka", "value": 1.0, "point_a": "embed", "point_b": "embed"},
        {"metric": "cka", "value": 0.5, "point_a": "embed", "point_b": "resid.0"},
        {"metric": "cka", "value": 0.5, "point_a": "resid.0", "point_b": "embed"},
    ]})
    assert capsys.readouterr().out.splitlines() == [
        "cka: A \\ B  embed   resid.0",
        "----------  ------  -------",
        "embed       1.0000  0.5000",
        "resid.0     0.5000  -",
    ]
