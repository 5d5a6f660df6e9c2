"""`neurometry measure` over stores and .npy files: values equal the in-memory functions, results are
saved in the catalog, --json prints one document, and user errors exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neurometry import measures, open_store, record
from neurometry.cli import main
from neurometry.models.tiny import tiny_bert
from neurometry.store.results import MEASURE


@pytest.fixture
def store_path(sentences_file, tmp_path):
    model = tiny_bert()
    out = tmp_path / "s"
    # small chunks, so that streaming over several chunks is what is tested
    record(model, sentences_file, ["embed", "resid.*", "attn_pattern.1"], out, reduce="tokens", chunk_rows=7,
           progress=False)
    return out


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_results_equal_in_memory_measures_and_are_saved(store_path, capsys):
    code, out, _ = run(capsys, "measure", str(store_path), "--points", "resid.*",
                       "--measures", "effective_rank,participation_ratio,anisotropy,rank_collapse,nc1,layer_cosine",
                       "--label", "label", "--json")
    assert code == 0
    doc = json.loads(out)
    store = open_store(store_path)
    by_key = {(r["point"], r["measure"]): r for r in doc["results"]}
    meta = store.metadata()
    for point in ("resid.0", "resid.1"):
        x = store.activations(point)
        assert by_key[(point, "effective_rank")]["value"] == pytest.approx(measures.effective_rank(x).value, rel=1e-9)
        assert by_key[(point, "anisotropy")]["value"] == pytest.approx(measures.anisotropy(x).value, rel=1e-9)
        assert by_key[(point, "nc1")]["value"] == pytest.approx(measures.nc1(x, meta["label"].to_numpy()).value, rel=1e-9)
        expected = measures.rank_collapse(x, meta["input_row"].to_numpy()).value
        assert by_key[(point, "rank_collapse")]["value"] == pytest.approx(expected, rel=1e-9)
    cosine = measures.layer_cosine(store.activations("resid.0"), store.activations("resid.1")).value
    assert by_key[("resid.1", "layer_cosine")]["value"] == pytest.approx(cosine, rel=1e-9)
    assert by_key[("resid.1", "layer_cosine")]["previous_point"] == "resid.0"
    saved = MEASURE.load(store)
    assert len(saved) == len(doc["results"])


def test_default_measures_pick_what_applies_and_plot(store_path, tmp_path, capsys):
    plot = tmp_path / "profile.png"
    code, out, _ = run(capsys, "measure", str(store_path), "--plot", str(plot))
    assert code == 0 and plot.stat().st_size > 10_000
    assert "attention_entropy" in out and "effective_rank" in out
    code, out, _ = run(capsys, "measure", str(store_path), "--points", "attn_pattern.1", "--json")
    names = {r["measure"] for r in json.loads(out)["results"]}
    assert names == {"attention_entropy", "sink_mass"}


def test_massive_activation_names_its_token(store_path, capsys):
    code, out, _ = run(capsys, "measure", str(store_path), "--points", "resid.1", "--measures", "massive_activations",
                       "--json")
    rec = json.loads(out)["results"][0]
    store = open_store(store_path)
    x = store.activations("resid.1")
    row, dim = np.unravel_index(np.abs(x).argmax(), x.shape)
    assert (rec["row"], rec["dim"]) == (row, dim)
    assert rec["token"] == store.metadata().iloc[row]["token"]


def test_npy_source(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3)) @ rng.normal(size=(3, 20))
    np.save(tmp_path / "x.npy", x)
    code, out, _ = run(capsys, "measure", str(tmp_path / "x.npy"), "--measures", "participation_ratio", "--json")
    assert code == 0
    value = json.loads(out)["results"][0]["value"]
    assert value == pytest.approx(measures.participation_ratio(x).value, rel=1e-12)


@pytest.mark.parametrize("args, fragment", [
    (["--measures", "effective_rnk"], "effective_rank"),
    (["--label", "nope"], "no column"),
    (["--points", "resid.7"], "resid.0"),
])
def test_user_errors(store_path, capsys, args, fragment):
    code, _, err = run(capsys, "measure", str(store_path), *args)
    assert code == 2 and fragment in err and "Traceback" not in err


def test_nan_in_npy_is_refused(tmp_path, capsys):
    x = np.ones((10, 4))
    x[3, 2] = np.nan
    np.save(tmp_path / "bad.npy", x)
    code, _, err = run(capsys, "measure", str(tmp_path / "bad.npy"), "--measures", "mean_norm")
    assert code == 2 and "row 3" in err


def test_bad_label_and_classifier_files_are_user_errors(tmp_path, store_path, capsys):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(50, 4)))
    np.save(tmp_path / "labels2d.npy", np.zeros((50, 2)))
    cases = [
        ([str(tmp_path / "x.npy"), "--measures", "nc1", "--labels", str(tmp_path / "missing.npy")], "cannot read labels"),
        ([str(tmp_path / "x.npy"), "--measures", "nc1", "--labels", str(tmp_path / "labels2d.npy")], "1-D"),
        ([str(tmp_path / "x.npy"), "--measures", "nc3", "--classifier", str(tmp_path / "nope.safetensors")],
         "does not exist"),
        ([str(store_path), "--labels", str(tmp_path / "labels2d.npy")], "--label"),
    ]
    for args, fragment in cases:
        code, _, err = run(capsys, "measure", *args)
        assert code == 2 and fragment in err and "Traceback" not in err, (args, err)
