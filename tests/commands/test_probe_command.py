"""`neurometry probe` and `neurometry encode` over stores and .npy files: planted answers through the
CLI, one JSON document, results saved in the store, token runs kept whole per input, user errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neurometry import open_store, record
from neurometry.cli import main
from neurometry.models.tiny import tiny_bert


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def planted(tmp_path):
    rng = np.random.default_rng(0)
    n, d = 300, 20
    x = rng.normal(size=(n, d))
    labels = (x[:, 3] > 0).astype(int)  # a label carried by unit 3 alone
    weights = rng.normal(size=(d, 40))
    targets = x @ weights + rng.normal(size=(n, 40)) * np.linspace(0.5, 20, 40)  # noise grows with the column
    for name, value in (("x", x), ("labels", labels), ("targets", targets)):
        np.save(tmp_path / f"{name}.npy", value)
    return tmp_path


def test_probe_npy_finds_the_planted_unit_and_prints_one_json(planted, capsys):
    code, out, _ = run(
        capsys, "probe", str(planted / "x.npy"), "--labels", str(planted / "labels.npy"), "--json"
    )
    assert code == 0
    (r,) = json.loads(out)["results"]
    assert r["kind"] == "logistic" and r["score"] > 0.95 and r["ci_low"] <= r["score"] <= r["ci_high"]
    assert r["baseline"] == pytest.approx(0.5, abs=0.06)
    code, out, _ = run(
        capsys,
        "probe",
        str(planted / "x.npy"),
        "--labels",
        str(planted / "labels.npy"),
        "--kind",
        "sparse",
        "--k",
        "1,2,20",
        "--json",
    )
    by_k = {r["k"]: r for r in json.loads(out)["results"]}
    assert by_k[1]["units"] == [3] and by_k[1]["score"] > 0.95


def test_encode_npy_orders_targets_by_their_noise(planted, capsys, tmp_path):
    plot = tmp_path / "enc.png"
    code, out, _ = run(
        capsys,
        "encode",
        str(planted / "x.npy"),
        "--targets",
        str(planted / "targets.npy"),
        "--json",
        "--plot",
        str(plot),
    )
    assert code == 0 and plot.stat().st_size > 5_000
    doc = json.loads(out)
    (r,) = doc["results"]
    scores = np.array(r["target_scores"])
    assert len(scores) == 40 and scores[0] > 0.9 and scores[-1] < scores[0]
    assert np.corrcoef(scores, np.arange(40))[0, 1] < -0.9  # more noise, lower r
    assert doc["best_points"] == ["x"] * 40


def test_store_token_run_probe_saves_results_and_keeps_inputs_whole(sentences_file, tmp_path, capsys):
    out = tmp_path / "s"
    record(tiny_bert(), sentences_file, ["resid.*"], out, reduce="tokens", progress=False)
    plot = tmp_path / "probe.png"
    code, text, _ = run(
        capsys, "probe", str(out), "--label", "label", "--folds", "2", "--json", "--plot", str(plot)
    )
    assert code == 0 and plot.stat().st_size > 5_000
    doc = json.loads(text)
    store = open_store(out)
    assert [r["point"] for r in doc["results"]] == [p.point for p in store.points()]
    assert all(r["n_groups"] == store.metadata()["input_row"].nunique() for r in doc["results"])
    assert len(store.results("probe")) == len(doc["results"])


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["probe", "{x}"], "give the labels"),
        (["probe", "{x}", "--labels", "{short}"], "labels for"),
        (["probe", "missing.npy", "--labels", "{labels}"], "no file"),
        (["encode", "{x}", "--targets", "{short}"], "rows of targets"),
        (["encode", "{x}", "--targets", "{nan}"], "NaN"),
        (["encode", "{x}"], "give the targets"),
    ],
)
def test_user_errors_exit_2_in_one_line(planted, capsys, args, fragment):
    np.save(planted / "short.npy", np.zeros(10))
    bad = np.load(planted / "targets.npy")
    bad[5, 2] = np.nan
    np.save(planted / "nan.npy", bad)
    files = {k: str(planted / f"{k}.npy") for k in ("x", "labels", "short", "nan")}
    code, out, err = run(capsys, *[a.format(**files) for a in args])
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err
