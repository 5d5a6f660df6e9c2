"""`neurometry probe` and `neurometry encode` over stores and .npy files: planted answers through the
CLI, one JSON document, results saved in the store, token runs kept whole per input, user errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neurometry import open_store, record
from neurometry.cli import main
from neurometry.models.tiny import tiny_bert
from neurometry.store.results import PROBE

PACKAGE_SENTENCES = Path(__file__).resolve().parents[2] / "src" / "neurometry" / "data" / "sentences.jsonl"


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
    assert len(PROBE.load(store)) == len(doc["results"])


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


def test_control_task_and_directions_on_a_token_run(sentences_file, tmp_path, capsys):
    out = tmp_path / "s"
    record(tiny_bert(), sentences_file, ["resid.1"], out, reduce="tokens", progress=False)
    code, text, _ = run(
        capsys,
        "probe",
        str(out),
        "--label",
        "label",
        "--folds",
        "2",
        "--control",
        "--save-directions",
        str(tmp_path / "dirs"),
        "--json",
    )
    assert code == 0
    (r,) = json.loads(text)["results"]
    assert r["selectivity"] == pytest.approx(r["score"] - r["control_score"], abs=1e-12)
    from neurometry.probe import direction, load_direction

    vector, meta = load_direction(r["direction_file"])
    assert meta["point"] == "resid.1" and meta["method"] == "mean_difference" and meta["model"] == "tiny-bert"
    store = open_store(out)
    expected = direction(store.activations("resid.1"), store.metadata()["label"].to_numpy())
    np.testing.assert_allclose(vector, expected, atol=1e-6)  # stored as float32


def test_encode_aligns_a_table_by_id_and_normalises_by_reliability(tmp_path, capsys):
    import pandas as pd

    out = tmp_path / "s"
    record(tiny_bert(), PACKAGE_SENTENCES, ["resid.*"], out, reduce="mean", progress=False)
    store = open_store(out)
    ids = store.metadata()["id"].to_numpy()
    x = store.activations("resid.1")
    rng = np.random.default_rng(1)
    signal = x @ rng.normal(size=(x.shape[1], 3))
    table = pd.DataFrame({"id": ids[::-1], **{f"unit{i}": signal[::-1, i] for i in range(3)}})  # other order
    table.to_parquet(tmp_path / "targets.parquet")
    repeats = np.stack([signal + 0.1 * rng.normal(size=signal.shape) for _ in range(4)])
    np.save(tmp_path / "repeats.npy", repeats)
    code, text, err = run(
        capsys,
        "encode",
        str(out),
        "--targets",
        str(tmp_path / "targets.parquet"),
        "--id-column",
        "id",
        "--points",
        "resid.1",
        "--reliability",
        str(tmp_path / "repeats.npy"),
        "--json",
    )
    assert code == 0, err
    doc = json.loads(text)
    (r,) = doc["results"]
    assert doc["targets"] == ["unit0", "unit1", "unit2"]
    # targets that are an exact linear map of the point (aligned back by id) are predicted almost perfectly
    assert min(r["target_scores"]) > 0.9 and len(r["normalized_r"]) == 3
