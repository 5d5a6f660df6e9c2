"""`neurometry detect truth` on a store of planted statements: the JSON contract, a planted truth direction read
at the point that holds it and not at the one that does not, the transfer matrix with another store, the
results saved, and bad input refused in one line with exit 2."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from neurometry.store import import_rows, open_store
from neurometry.store.results import OOD, TRUTH_PROBE, TRUTH_TRANSFER


def planted_store(path, seed: int, n: int = 400, d: int = 16):
    rng = np.random.default_rng(seed)
    truth = np.repeat([1, 0], n // 2)
    group = np.tile(np.arange(n // 2), 2)
    signal = rng.normal(size=(n, d)).astype(np.float32)
    signal[:, 0] += np.where(truth == 1, 1.5, -1.5)
    store = open_store(path, create=True)
    import_rows(store, "statements", {"early": rng.normal(size=(n, d)).astype(np.float32), "late": signal},
                pd.DataFrame({"label": truth, "group": group}), "planted")
    store.close()


def test_detect_truth_reads_the_planted_point_and_transfers(tmp_path, run_cli):
    planted_store(tmp_path / "a", seed=0)
    planted_store(tmp_path / "b", seed=1)
    result = run_cli("detect", "truth", tmp_path / "a", "--label", "label", "--group", "group", "--transfer",
                     tmp_path / "b", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    scores = {(r["point"], r["method"]): r for r in document["results"]}
    assert set(scores) == {(p, m) for p in ("early", "late") for m in ("mass_mean", "mass_mean_iid", "logistic")}
    for method in ("mass_mean", "mass_mean_iid", "logistic"):
        assert abs(scores["early", method]["accuracy"] - 0.5) < 0.1
        assert scores["late", method]["accuracy"] > 0.85 and scores["late", method]["auroc"] > 0.9  # Phi(1.5)=0.93
    late = next(m for m in document["transfer"] if m["point"] == "late" and m["method"] == "mass_mean")
    assert late["accuracy"][0][1] > 0.85 and late["accuracy"][1][0] > 0.85
    store = open_store(tmp_path / "a")
    assert len(TRUTH_PROBE.load(store)) == 6 and len(TRUTH_TRANSFER.load(store)) == 6
    table = run_cli("detect", "truth", tmp_path / "a", "--label", "label", "--methods", "mass_mean")
    assert table.returncode == 0 and "accuracy (AUROC)" in table.stdout
    report = run_cli("report", tmp_path / "a", "-o", tmp_path / "report.html")
    assert report.returncode == 0, report.stderr
    section = (tmp_path / "report.html").read_text().split('id="s-truth_probe"')[1]
    assert "data:image/png;base64," in section and section.count("transfer at") == 6


def test_bad_input_is_one_line_and_exit_2(tmp_path, run_cli):
    from safetensors.numpy import save_file

    planted_store(tmp_path / "a", seed=0)
    planted_store(tmp_path / "wide", seed=1, d=24)  # the same points, 24 features instead of 16
    (tmp_path / "other").mkdir()
    planted_store(tmp_path / "other" / "a", seed=2)  # another store of the same folder name
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(60, 6)))
    np.save(tmp_path / "y.npy", np.repeat([0.0, 1.0, 2.0], 20))
    np.save(tmp_path / "y_nan.npy", np.r_[np.repeat([0.0, 1.0, 2.0], 20)[:-1], np.nan])
    save_file({"W": np.ones((3, 5), dtype=np.float32), "b": np.zeros(3, dtype=np.float32)}, str(tmp_path / "w.safetensors"))
    for args, message in [
        (("detect", "truth", tmp_path / "a", "--label", "label", "--transfer", tmp_path / "a"), "is the store itself"),
        (("detect", "truth", tmp_path / "a", "--label", "label", "--transfer", tmp_path / "wide"),
         "early has 24 features here and 16 in"),
        (("detect", "ood", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--in", "0.0", "1.0", "--classifier",
          tmp_path / "w.safetensors"), "W has shape (3, 5) and b (3,); give W shaped (classes, 6)"),
        (("detect", "ood", tmp_path / "x.npy", "--labels", tmp_path / "y_nan.npy", "--in", "0.0", "1.0"),
         "1 rows have no label (NaN or empty; first: row 59)"),
        (("detect", "ood", tmp_path / "x.npy", "--labels", tmp_path / "w.safetensors", "--in", "0.0"),
         "is not a .npy; save one label per row"),
        (("detect", "ood", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--in", "0.0", "--scores", "knn"),
         "need at least 50 training rows, got 10; lower k (--k)"),
        (("detect", "ood", tmp_path / "w.safetensors", "--in", "0.0"), "is a file, not a store folder or .npy"),
        (("detect", "ood", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--in", "0.0", "--scores", "msp"),
         "hold one class, and a classifier's logits need two or more; give two or more --in values, or --classifier"),
        (("detect", "truth", tmp_path / "a", "--label", "label", "--shots", "2"), "--shots goes with --baselines"),
        (("detect", "truth", tmp_path / "a", "--label", "label", "--model", "m", "--baseline-statements", "9"),
         "--model, --baseline-statements go with --baselines"),
        (("detect", "truth", tmp_path / "a", "--label", "label", "--control", "label"),
         "--control label is the label itself"),

        (("detect", "truth", tmp_path / "missing"), "does not exist"),
        (("detect", "truth", tmp_path / "a", "--label", "nope"), "no column 'nope'"),
        (("detect", "truth", tmp_path / "a", "--label", "group"), "exactly two"),
        (("detect", "truth", tmp_path / "a", "--label", "label", "--dynamics"), "three or more points"),
        (("detect", "truth", tmp_path / "a", "--label", "label", "--baselines"), "no 'text' column"),
        (("detect", "causal", tmp_path / "a", "--label", "label", "--points", "late"), "no 'text' column"),
        (("detect", "causal", tmp_path / "a", "--label", "label", "--points", "late", "--alphas", "3"),
         "two or more different values"),
        (("detect", "causal", tmp_path / "a", "--label", "label", "--points", "late", "--alphas", "3", "3"),
         "two or more different values"),
        (("detect", "causal", tmp_path / "a", "--label", "nope", "--points", "late"), "no column 'nope'"),
        (("detect", "causal", tmp_path / "a", "--label", "label", "--points", "nowhere"), "nowhere"),
    ]:
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    with pytest.raises(SystemExit) as stopped:  # a usage error, before any model loads
        run_cli("detect", "causal", tmp_path / "a", "--points", "late", "--alphas", "0", "nan")
    assert stopped.value.code == 2
    # one class in-distribution: the scores that read features alone need no classifier
    one_class = run_cli("detect", "ood", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--in", "0.0", "--scores",
                        "knn", "--k", "3", "--bootstrap", "0", "--json")
    assert one_class.returncode == 0, one_class.stderr
    assert [r["score"] for r in json.loads(one_class.stdout)["results"]] == ["knn"]
    # two stores of the same folder name: both sets kept (the second named by its path), no empty matrix
    result = run_cli("detect", "truth", tmp_path / "a", "--label", "label", "--transfer", tmp_path / "other" / "a",
                     "--methods", "mass_mean", "--json")
    assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr
    late = next(m for m in json.loads(result.stdout)["transfer"] if m["point"] == "late")
    assert late["names"] == ["a", str(tmp_path / "other" / "a")] and late["accuracy"][0][1] > 0.85


def test_detect_ood_separates_a_planted_far_cluster_from_a_store_and_from_npy(tmp_path, run_cli):
    """Three in-distribution classes as Gaussian clusters and a fourth class far from them: every score that
    reads features (mahalanobis, knn, vim, neco) puts the far class above the held-out in-distribution rows."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, size=(4, 12))
    centres[3] += 12.0
    labels = np.repeat(np.arange(4), 150)
    features = (centres[labels] + rng.normal(size=(600, 12))).astype(np.float32)
    store = open_store(tmp_path / "s", create=True)
    import_rows(store, "r", {"features": features}, pd.DataFrame({"cls": labels}), "planted")
    store.close()
    result = run_cli("detect", "ood", tmp_path / "s", "--label", "cls", "--in", "0", "1", "2", "--bootstrap", 100,
                     "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    by_score = {r["score"]: r for r in document["results"]}
    assert set(by_score) == {"msp", "energy", "mahalanobis", "knn", "vim", "neco"}
    assert document["fit_rows"] == 225 and document["in_rows"] == 225 and document["out_rows"] == 150
    for name in ("mahalanobis", "knn", "vim"):
        assert by_score[name]["auroc"] > 0.95 and by_score[name]["fpr95"] < 0.2, (name, by_score[name])
    for record in by_score.values():  # the saved curve: TPR at FPR 0, 0.01, ..., 1; its area is the AUROC
        fpr, tpr = np.array(record["roc"]["fpr"]), np.array(record["roc"]["tpr"])
        assert len(fpr) == 101 and fpr[0] == 0 and tpr[-1] == 1 and (np.diff(tpr) >= 0).all()
        assert abs(np.trapezoid(tpr, fpr) - record["auroc"]) < 0.02, record["score"]
    report = run_cli("report", tmp_path / "s", "-o", tmp_path / "report.html")
    assert report.returncode == 0, report.stderr
    section = (tmp_path / "report.html").read_text().split('id="s-ood"')[1]
    assert section.count("data:image/png;base64,") == 1 and "FPR at 95% TPR" in section
    assert all(f'<td class="l">{name}</td>' in section for name in by_score)
    np.save(tmp_path / "x.npy", features)
    np.save(tmp_path / "y.npy", labels)
    from_npy = run_cli("detect", "ood", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--in", "0", "1", "2",
                       "--scores", "mahalanobis", "--bootstrap", 0, "--json")
    assert from_npy.returncode == 0, from_npy.stderr
    assert json.loads(from_npy.stdout)["results"][0]["auroc"] == by_score["mahalanobis"]["auroc"]
    bad = run_cli("detect", "ood", tmp_path / "s", "--label", "cls", "--in", "7")
    assert bad.returncode == 2 and "both sides need rows" in bad.stderr
    on_cpu = run_cli("detect", "ood", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--in", "0", "1", "2",
                     "--scores", "knn", "--bootstrap", 0, "--device", "cpu", "--json")
    assert on_cpu.returncode == 0, on_cpu.stderr
    assert json.loads(on_cpu.stdout)["results"][0]["auroc"] == by_score["knn"]["auroc"]
    if not torch.cuda.is_available():  # a device this machine lacks: refused before any work, nothing saved
        saved = len(OOD.load(open_store(tmp_path / "s")))
        bad = run_cli("detect", "ood", tmp_path / "s", "--label", "cls", "--in", "0", "1", "2", "--device", "cuda")
        assert bad.returncode == 2 and "cuda" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
        assert len(OOD.load(open_store(tmp_path / "s"))) == saved
    features[5, 3] = np.nan
    np.save(tmp_path / "x.npy", features)
    bad = run_cli("detect", "ood", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--in", "0", "1", "2")
    assert bad.returncode == 2 and "row 5 contains NaN" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_statement_detectors_refuse_a_model_that_is_not_causal(tmp_path, run_cli):
    """`detect causal`, `detect truth --baselines` and the hallucination set need a model that predicts the next
    token: MiniLM (an encoder) is refused in one line, before any work."""
    statements = pd.DataFrame({"text": [f"The number {i} is {'even' if i % 2 == 0 else 'odd'}." for i in range(24)],
                               "truth": ["true"] * 24})
    statements.loc[::3, "truth"] = "false"
    statements.to_csv(tmp_path / "s.csv", index=False)
    assert run_cli("record", "minilm", tmp_path / "s.csv", "--points", "resid.2", "--reduce", "last", "--out",
                   tmp_path / "store", "--quiet").returncode == 0
    for args in [("detect", "causal", tmp_path / "store", "--points", "resid.2", "--statements", 4),
                 ("detect", "truth", tmp_path / "store", "--baselines", "--baseline-statements", 4),
                 ("dataset", "hallucination-cities", "--model", "minilm", "--out", tmp_path / "h")]:
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "minilm is not a causal language model" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_controls_read_a_column_on_the_probes_folds(tmp_path, run_cli):
    """`detect truth --control COLUMN`: a column that agrees with the label 80% of the time is read at about 0.8
    held out, a per-statement id (never seen in training) at chance; saved and shown in the report."""
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, 400)
    topic = np.where(rng.random(400) < 0.8, label, 1 - label)
    store = open_store(tmp_path / "s", create=True)
    import_rows(store, "statements", {"late": rng.normal(size=(400, 8)).astype(np.float32)},
                pd.DataFrame({"label": label, "topic": [f"t{t}" for t in topic], "id": np.arange(400)}), "planted")
    store.close()
    result = run_cli("detect", "truth", tmp_path / "s", "--label", "label", "--control", "topic", "id", "--methods",
                     "mass_mean", "--json")
    assert result.returncode == 0, result.stderr
    controls = {r["method"]: r for r in json.loads(result.stdout)["baselines"] if r["point"] == "control"}
    assert abs(controls["topic"]["accuracy"] - 0.8) < 0.05 and controls["topic"]["n"] == 400
    assert abs(controls["id"]["auroc"] - 0.5) < 0.05  # every id is unseen in training: its fold's base rate
    table = run_cli("detect", "truth", tmp_path / "s", "--label", "label", "--control", "topic")
    assert table.returncode == 0 and "control: topic" in table.stdout
    report = run_cli("report", tmp_path / "s", "-o", tmp_path / "r.html")
    assert report.returncode == 0 and "control: topic" in (tmp_path / "r.html").read_text()
    bad = run_cli("detect", "truth", tmp_path / "s", "--label", "label", "--control", "nope")
    assert bad.returncode == 2 and "no column 'nope'" in bad.stderr


def test_detect_truth_reads_a_npy_with_label_and_group_files(tmp_path, run_cli):
    """The contract's ".npy of features with a labels file works where a store does": the same rows, labels and
    groups as a store give the same held-out scores; store-only options and missing labels are one line."""
    planted_store(tmp_path / "a", seed=0)
    store = open_store(tmp_path / "a")
    try:
        np.save(tmp_path / "late.npy", store.activations("late"))
        meta = store.metadata(store.runs()[0].run_id)
        np.save(tmp_path / "labels.npy", meta["label"].to_numpy())
        np.save(tmp_path / "groups.npy", meta["group"].to_numpy())
    finally:
        store.close()
    from_store = run_cli("detect", "truth", tmp_path / "a", "--label", "label", "--group", "group", "--points", "late",
                         "--json")
    from_npy = run_cli("detect", "truth", tmp_path / "late.npy", "--labels", tmp_path / "labels.npy", "--groups",
                       tmp_path / "groups.npy", "--json")
    assert from_npy.returncode == 0, from_npy.stderr
    ours = {r["method"]: r for r in json.loads(from_npy.stdout)["results"]}
    theirs = {r["method"]: r for r in json.loads(from_store.stdout)["results"]}
    for method, record in theirs.items():
        assert ours[method]["accuracy"] == record["accuracy"] and ours[method]["auroc"] == record["auroc"], method
    causal = run_cli("detect", "causal", tmp_path / "late.npy", "--points", "late")
    assert causal.returncode == 2 and "is an array; this reads a store of statements" in causal.stderr
    for args, message in [((), "give its labels with --labels"),
                          (("--labels", tmp_path / "labels.npy", "--group", "group"), "--groups FILE.npy"),
                          (("--labels", tmp_path / "labels.npy", "--dynamics"), "read a store"),
                          (("--labels", tmp_path / "groups.npy"), "exactly two")]:
        bad = run_cli("detect", "truth", tmp_path / "late.npy", *args)
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)
        assert len(bad.stderr.strip().splitlines()) == 1
