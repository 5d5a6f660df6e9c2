"""`neurometry steer build|eval|generate`, `lens`, `patch` and `diff` through the CLI on a tiny seeded
Llama: files written and read back, one JSON document, results saved with --store equal to what is printed,
alpha 0 changes nothing, user errors exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neurometry.cli import main
from neurometry.steer import load_vector
from neurometry.store.results import DIFF, PATCH, STEER_SWEEP

TINY = "neurometry.models.tiny:tiny_llama"


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def pairs(tmp_path):
    words = ["cat", "dog", "house", "tree", "car", "bird", "river", "book"]
    rows = [
        {"positive": f"the {w} is good", "negative": f"the {w} is bad", "target": " good", "opposite": " bad"}
        for w in words
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_build_eval_generate_round_trip(pairs, tmp_path, capsys):
    out = tmp_path / "v.safetensors"
    code, text, err = run(
        capsys,
        "steer",
        "build",
        TINY,
        str(pairs),
        "--point",
        "resid.1",
        "--train",
        "5",
        "--out",
        str(out),
        "--json",
    )
    assert code == 0, err
    doc = json.loads(text)
    vector, meta = load_vector(out)
    assert meta["point"] == "resid.1" and meta["train_pairs"] == 5 and doc["held_out_pairs"] == 3
    assert float(np.linalg.norm(vector)) == pytest.approx(doc["norm"], rel=1e-6)
    code, text, err = run(capsys, "steer", "eval", TINY, str(out), "--alphas", "0,2", "--json")
    assert code == 0, err
    rows = json.loads(text)["results"]
    assert [r["alpha"] for r in rows] == [0.0, 2.0]
    assert rows[0]["target_logprob_shift"] == 0.0 and rows[0]["kl"] == 0.0 and rows[1]["kl"] > 0
    code, text, err = run(
        capsys,
        "steer",
        "generate",
        TINY,
        str(out),
        "--alpha",
        "0",
        "--prompt",
        "the cat",
        "--max-new-tokens",
        "4",
        "--json",
    )
    assert code == 0, err
    (row,) = json.loads(text)["generations"]
    assert row["steered"] == row["unsteered"]  # alpha 0 is the unsteered model


def test_eval_store_saves_the_sweep_it_prints(pairs, tmp_path, capsys):
    from neurometry import open_store
    from neurometry.steer import SweepRow, sweep_rows

    vector = tmp_path / "v.safetensors"
    code, _, err = run(
        capsys, "steer", "build", TINY, str(pairs), "--point", "resid.1", "--train", "5", "--out", str(vector)
    )
    assert code == 0, err
    store = tmp_path / "sweeps.nmstore"  # created by eval: it need hold no recorded run
    code, text, err = run(
        capsys, "steer", "eval", TINY, str(vector), "--alphas=-1,0,2", "--json", "--store", str(store)
    )
    assert code == 0, err
    printed = json.loads(text)["results"]
    saved = STEER_SWEEP.load(open_store(store))
    assert len(saved) == 3
    assert set(saved["run_id"]) == {TINY} and set(saved["point"]) == {"resid.1"} and set(saved["name"]) == {"v"}
    by_alpha = {r.params["alpha"]: r for r in saved.itertuples()}
    for row in printed:
        record = by_alpha[row["alpha"]]
        extra, params = record.extra, record.params
        assert record.value == row["target_logprob_shift"]  # exact: the same floats, not recomputed
        assert (extra["kl"], extra["perplexity"]) == (row["kl"], row["perplexity"])
        assert params["pairs"] == str(pairs.resolve())
        assert extra["n_pairs"] == 3 and extra["vector"]["method"] == "mean_diff"
        assert extra["vector"]["train_pairs"] == 5 and "point" not in extra["vector"]
    rows, generated = sweep_rows(STEER_SWEEP.load(open_store(store)))
    assert rows == [SweepRow(**r) for r in printed] and generated is None
    # without --json the table is printed and the store named; a rerun replaces the rows, not adds to them
    code, text, err = run(capsys, "steer", "eval", TINY, str(vector), "--alphas=-1,0,2", "--store", str(store))
    assert code == 0, err
    assert f"saved in {store}" in text and len(STEER_SWEEP.load(open_store(store))) == 3


def test_lens_and_patch_json(capsys, tmp_path):
    code, text, err = run(capsys, "lens", TINY, "--prompt", "the cat sat on", "--json", "--top-k", "3")
    assert code == 0, err
    doc = json.loads(text)
    assert doc["points"][0]["point"] == "embed" and len(doc["points"][0]["top_tokens"]) == 3
    plot = tmp_path / "patch.png"
    code, text, err = run(
        capsys,
        "patch",
        TINY,
        "--clean",
        "the cat sat on",
        "--corrupted",
        "the dog sat on",
        "--correct",
        " mat",
        "--wrong",
        " rug",
        "--json",
        "--plot",
        str(plot),
        "--no-heads",
    )
    if code == 2 and "almost the same logit difference" in err:
        pytest.skip("the random tiny model does not separate the two answers for this pair")
    assert code == 0, err and plot.stat().st_size > 5_000
    result = json.loads(text)
    scores = np.array(result["scores"])
    assert scores[-1, -1] == pytest.approx(1.0)  # the last block at the last position restores the clean run


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["steer", "build", TINY, "nosuchset", "--point", "resid.1", "--out", "{tmp}/v.safetensors"],
            "built-in set",
        ),
        (
            [
                "steer",
                "build",
                TINY,
                "{pairs}",
                "--point",
                "resid.1",
                "--train",
                "99",
                "--out",
                "{tmp}/v.safetensors",
            ],
            "--train must be",
        ),
        (["steer", "eval", TINY, "{tmp}/missing.safetensors"], "missing"),
        (["steer", "eval", TINY, "{tmp}/missing.safetensors", "--store", "{pairs}"], "not a neurometry store"),
        (["steer", "eval", TINY, "{tmp}/missing.safetensors", "--store", "{tmp}/no/s"], "does not exist"),
        (["patch", TINY, "--example", "0", "--store", "{pairs}"], "not a neurometry store"),
        (["diff", TINY, "{tmp}/fine.safetensors", "--store", "{tmp}/no/s"], "does not exist"),
        (["patch", TINY, "--clean", "the cat"], "give --clean"),
        (["patch", TINY, "--example", "999"], "--example must be"),
    ],
)
def test_user_errors_exit_2_in_one_line(pairs, tmp_path, capsys, args, fragment):
    code, out, err = run(capsys, *[a.format(tmp=tmp_path, pairs=pairs) for a in args])
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err


@pytest.fixture
def planted(tmp_path):
    from tests.conftest import write_planted_finetune

    return write_planted_finetune(tmp_path)


def test_diff_reads_a_planted_finetune_from_safetensors(planted, tmp_path, capsys):
    weights, texts = planted
    code, text, err = run(capsys, "diff", TINY, str(weights), "--texts", str(texts), "--json", "--top-k", "3")
    assert code == 0, err
    norms = {r["point"]: r["norm"] for r in json.loads(text)["points"]}
    assert norms["resid.0"] == 0.0 and norms["resid.1"] > 0  # nothing before the planted layer moves
    code, _, err = run(capsys, "diff", TINY, str(tmp_path / "missing.safetensors"))
    assert code == 2 and "no file" in err


def test_diff_store_saves_what_it_prints(planted, tmp_path, capsys, monkeypatch):
    from neurometry import open_store
    from neurometry.steer import diff_document

    weights, texts = planted
    store = tmp_path / "diffs.nmstore"
    args = ["diff", TINY, str(weights), "--texts", str(texts), "--top-k", "3", "--store", str(store)]
    code, text, err = run(capsys, *args, "--json")
    assert code == 0, err
    printed = json.loads(text)
    saved = DIFF.load(open_store(store))
    assert set(saved["run_id"]) == {TINY} and set(saved["name"]) == {str(weights.resolve())}
    assert saved["params"].iloc[0] == {"first_k": 5, "skip_first": 0, "texts": str(texts.resolve())}
    document, generated = diff_document(saved)
    assert document == printed and generated is None  # the same floats and tokens, not recomputed
    assert "lens" not in printed["points"][0] and len(printed["points"][1]["lens"]) == 3  # resid.0: no change
    # the table names the store; a relative weights path is saved under its absolute one, replacing the rows
    monkeypatch.chdir(tmp_path)
    code, text, err = run(capsys, "diff", TINY, weights.name, "--texts", str(texts), "--store", str(store))
    assert code == 0, err
    assert f"saved in {store} (kind diff, run {TINY}, name {weights.resolve()})" in text
    assert len(DIFF.load(open_store(store))) == len(printed["points"])


def test_patch_store_saves_what_it_prints(tmp_path, capsys):
    from neurometry import open_store
    from neurometry.steer import patch_result
    from neurometry.steer.patching import pair_id

    store = tmp_path / "patches.nmstore"
    pair = ["--clean", "the cat sat on the mat", "--corrupted", "the dog sat on the mat", "--correct", "cat",
            "--wrong", "dog"]
    code, text, err = run(capsys, "patch", TINY, *pair, "--json", "--store", str(store))
    assert code == 0, err
    printed = json.loads(text)
    saved = PATCH.load(open_store(store))
    name = pair_id("the cat sat on the mat", "the dog sat on the mat", "cat", "dog")
    assert set(saved["run_id"]) == {TINY} and set(saved["name"]) == {name}
    assert list(saved["point"]) == printed["points"] == ["resid.0", "resid.1"]
    assert list(saved["value"]) == [max(row) for row in printed["scores"]]
    assert patch_result(saved).to_dict() == printed  # scores, heads, tokens and prompts: the same floats
    assert np.array(printed["head_scores"]).shape == (2, 4)
    code, text, err = run(capsys, "patch", TINY, *pair, "--no-heads", "--store", str(store))
    assert code == 0, err
    assert f"saved in {store} (kind patch, run {TINY}, name {name!r})" in text
    assert patch_result(PATCH.load(open_store(store))).head_scores is None  # replaced, not mixed


def test_build_from_two_groups_of_a_store(tmp_path, capsys):
    from neurometry import open_store, record
    from neurometry.models.tiny import tiny_llama
    from tests.conftest import SENTENCES, write_jsonl

    data = write_jsonl(tmp_path / "s.jsonl", [{"text": t, "label": i % 2} for i, t in enumerate(SENTENCES)])
    record(tiny_llama(), data, ["resid.1"], tmp_path / "store", reduce="mean", run="r", progress=False)
    out = tmp_path / "v.safetensors"
    code, _, err = run(
        capsys,
        "steer",
        "build",
        TINY,
        str(tmp_path / "store"),
        "--point",
        "resid.1",
        "--label",
        "label",
        "--positive",
        "1",
        "--out",
        str(out),
    )
    assert code == 2 and "recorded from" in err  # the run records the model's own name, not the spec
    store = open_store(tmp_path / "store")
    model_name = store.run_info("r").model
    code, _, err = run(
        capsys,
        "steer",
        "build",
        model_name,
        str(tmp_path / "store"),
        "--point",
        "resid.1",
        "--label",
        "label",
        "--positive",
        "1",
        "--out",
        str(out),
    )
    assert code == 0, err
    vector, meta = load_vector(out)
    x = store.activations("resid.1", run="r")
    labels = store.metadata("r")["label"].to_numpy()
    np.testing.assert_allclose(vector, x[labels == 1].mean(0) - x[labels != 1].mean(0), atol=1e-5)
    assert meta["label"] == "label" and meta["run"] == "r"
