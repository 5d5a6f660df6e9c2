"""Any CSV of statements with a binary label works (issue 21): Marks & Tegmark's own cities.csv (columns
statement, label, city, ...) records with `--text-column statement` and `detect truth --label label --group city`
reads it; the stored rows equal those of the same statements under a `text` column; `dataset truth` writes all
six sets; a missing or clashing text column is one line and exit 2."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from neurometry.datasets import TRUTH_SETS
from neurometry.store import open_store
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "truth").is_dir(), reason="../shared/data/truth absent")


def test_a_statement_column_records_and_is_read_by_detect_truth(tmp_path, run_cli):
    raw = pd.read_csv(SHARED_DATA / "truth" / "cities.csv").iloc[:120]
    raw.to_csv(tmp_path / "cities.csv", index=False)
    raw.rename(columns={"statement": "text"}).to_csv(tmp_path / "as_text.csv", index=False)
    result = run_cli("record", "minilm", tmp_path / "cities.csv", "--text-column", "statement", "--points", "resid.3",
                     "--reduce", "mean", "--out", tmp_path / "s", "--quiet")
    assert result.returncode == 0, result.stderr
    assert run_cli("record", "minilm", tmp_path / "as_text.csv", "--points", "resid.3", "--reduce", "mean", "--out",
                   tmp_path / "t", "--quiet").returncode == 0
    ours, theirs = open_store(tmp_path / "s"), open_store(tmp_path / "t")
    try:
        np.testing.assert_array_equal(ours.activations("resid.3"), theirs.activations("resid.3"))
        meta = ours.metadata(ours.runs()[0].run_id)
        assert list(meta["text"]) == list(raw["statement"]) and "statement" not in meta.columns
        assert ours.runs()[0].settings["text_column"] == "statement"
        assert "text_column" not in theirs.runs()[0].settings
    finally:
        ours.close()
        theirs.close()
    detected = run_cli("detect", "truth", tmp_path / "s", "--label", "label", "--group", "city", "--methods",
                       "mass_mean", "--json")
    assert detected.returncode == 0, detected.stderr
    (record,) = json.loads(detected.stdout)["results"]
    assert record["point"] == "resid.3" and record["n"] == 120
    again = run_cli("record", "minilm", tmp_path / "cities.csv", "--text-column", "city", "--points", "resid.3",
                    "--reduce", "mean", "--out", tmp_path / "s", "--quiet")  # another column: other settings
    assert again.returncode == 2 and "other settings" in again.stderr


def test_bad_text_columns_are_one_line(tmp_path, run_cli):
    pd.DataFrame({"statement": ["a b.", "c d."], "text": ["x", "y"], "label": [1, 0]}).to_csv(tmp_path / "both.csv",
                                                                                           index=False)
    for column, message in [("sentence", "no 'sentence' column for --text-column"),
                            ("statement", "has a 'text' column besides --text-column statement")]:
        result = run_cli("record", "minilm", tmp_path / "both.csv", "--text-column", column, "--points", "resid.0",
                         "--out", tmp_path / "s")
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "s").exists()


def test_dataset_truth_writes_every_set(tmp_path, run_cli):
    result = run_cli("dataset", "truth", "--out", tmp_path / "truth", "--json")
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in (tmp_path / "truth").iterdir())
    assert written == sorted(f"truth-{name}.jsonl" for name in TRUTH_SETS)
    first = json.loads((tmp_path / "truth" / "truth-larger_than.jsonl").read_text().splitlines()[0])
    assert {"text", "truth", "group"} <= set(first)
