"""The probing sets whose answer needs context (issue 15): subject-verb agreement across an attractor,
negation scope, and the true/false statements of Marks & Tegmark 2023 with their groups. Each set is
well-formed (every label follows from the sentence by a rule checked here), balanced in every cell, and its
minimal pairs stay together in grouped folds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from neurometry.datasets import TRUTH_SETS, export_truth, truth_statements
from neurometry.errors import NeurometryError
from neurometry.folds import fold_assignment
from tests.conftest import SHARED_DATA

DATA = Path(__file__).resolve().parents[1] / "src" / "neurometry" / "data"
SINGULAR_VERBS = {"is": "are", "was": "were", "seems": "seem", "looks": "look", "remains": "remain"}
POSITIVE = {"good", "great", "wonderful", "excellent", "lovely", "pleasant"}
NEGATIVE = {"bad", "awful", "terrible", "dull", "poor", "boring"}
needs_truth = pytest.mark.skipif(not (SHARED_DATA / "truth").is_dir(), reason="no ../shared/data/truth")


def _number(word: str) -> str:
    return "plural" if word.endswith("s") else "singular"  # every plural noun of the set ends in s, no singular


def _pairs_stay_in_one_fold(groups: pd.Series, labels: pd.Series) -> None:
    for seed in range(3):
        fold = fold_assignment(len(groups), 5, seed, groups=groups.to_numpy(), stratify=labels.to_numpy())
        assert (pd.Series(fold).groupby(groups.to_numpy()).nunique() == 1).all()
    # the check can fail: random folds split most groups of two or more rows
    fold = pd.Series(fold_assignment(len(groups), 5, 0)).groupby(groups.to_numpy())
    assert (fold.nunique() > 1)[fold.size() > 1].mean() > 0.5


def test_agreement_labels_follow_from_the_sentence_and_every_cell_is_balanced():
    table = pd.read_json(DATA / "probe_agreement.jsonl", lines=True)
    assert len(table) == 400 and table["text"].nunique() == 400 and table["id"].is_unique
    parts = table["text"].str.extract(
        r"^The (\w+) (near|behind|beside|next to|above|below|under|by) the (\w+) (\w+) (\w+)\.$"
    )
    assert parts.notna().all().all()
    verb_number = parts[3].map(lambda v: "singular" if v in SINGULAR_VERBS else
                               "plural" if v in SINGULAR_VERBS.values() else None)
    assert (parts[0].map(_number) == table["subject"]).all()
    assert (parts[2].map(_number) == table["attractor"]).all()
    assert (verb_number == table["verb"]).all()
    grammatical = table["subject"] == table["verb"]
    assert (table["agreement"] == grammatical.map({True: "grammatical", False: "ungrammatical"})).all()
    assert table["agreement"].value_counts().to_dict() == {"grammatical": 200, "ungrammatical": 200}
    cells = table.groupby(["subject", "attractor", "verb"]).size()
    assert len(cells) == 8 and (cells == 50).all()  # no word and no number alone predicts the label
    for _, pair in table.groupby("pair"):  # a minimal pair: the verb's number flipped, nothing else
        assert len(pair) == 2 and set(pair["agreement"]) == {"grammatical", "ungrammatical"}
        a, b = (text.split() for text in pair["text"])
        assert [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y] == [len(a) - 2]
    _pairs_stay_in_one_fold(table["pair"], table["agreement"])


def test_negation_labels_follow_from_the_place_of_not_and_every_cell_is_balanced():
    table = pd.read_json(DATA / "probe_negation.jsonl", lines=True)
    assert len(table) == 400 and table["text"].nunique() == 400 and table["id"].is_unique
    words = table["text"].str.rstrip(".").str.split()
    assert (words.map(lambda w: w.count("not")) == 1).all()
    assert (words.map(lambda w: w[w.index("not") - 1]) == table["negation"].map({"relative": "had",
                                                                                  "main": "was"})).all()
    adjective = words.map(lambda w: w[-1])
    assert adjective.isin(POSITIVE | NEGATIVE).all()
    assert (adjective.isin(NEGATIVE).map({True: "negative", False: "positive"}) == table["adjective"]).all()
    flipped = (table["adjective"] == "negative") ^ (table["negation"] == "main")
    assert (table["sentiment"] == flipped.map({True: "negative", False: "positive"})).all()
    assert table["sentiment"].value_counts().to_dict() == {"positive": 200, "negative": 200}
    cells = table.groupby(["adjective", "negation"]).size()
    assert len(cells) == 4 and (cells == 100).all()
    for _, pair in table.groupby("pair"):  # the same words; only where "not" stands differs
        assert len(pair) == 2 and set(pair["sentiment"]) == {"positive", "negative"}
        a, b = (sorted(text.split()) for text in pair["text"])
        assert a == b
    _pairs_stay_in_one_fold(table["pair"], table["sentiment"])


@needs_truth
@pytest.mark.parametrize("name", TRUTH_SETS)
def test_truth_sets_are_balanced_and_their_groups_hold_both_answers(name):
    table = truth_statements(name)
    raw = pd.read_csv(SHARED_DATA / "truth" / f"{name}.csv")
    assert list(table.columns[:3]) == ["text", "truth", "group"] and table["text"].is_unique
    assert len(table) == raw["statement"].nunique()  # duplicates kept once (sp_en_trans has 3)
    counts = table["truth"].value_counts()
    assert set(counts.index) == {"true", "false"} and abs(counts["true"] - counts["false"]) <= 3
    sizes = table.groupby("group").size()
    if name in ("cities", "neg_cities"):
        assert (table["group"] == table["city"]).all() and (sizes == 2).all() and len(sizes) == 748
    if name in ("larger_than", "smaller_than"):
        assert (sizes == 2).all() and len(sizes) == 990
        numbers = table.groupby("group").agg(n1=("n1", set), n2=("n2", set))
        assert (numbers["n1"] == numbers["n2"]).all() and (numbers["n1"].map(len) == 2).all()  # x/y and y/x
    if name in ("cities", "neg_cities", "larger_than", "smaller_than"):
        assert (table.groupby("group")["truth"].nunique() == 2).all()  # one true, one false statement
    if name.endswith("sp_en_trans"):
        words = table["text"].str.extract(r"word '([^']+)'.*means? '([^']+)'")
        for column in (0, 1):  # no Spanish and no English word in two groups
            assert (table.groupby(words[column])["group"].nunique() == 1).all()
        assert len(sizes) == 237 and sizes.max() == 6
    _pairs_stay_in_one_fold(table["group"], table["truth"])


@needs_truth
def test_a_truth_set_is_exported_for_record(tmp_path):
    path = export_truth("cities", tmp_path / "truth")
    assert path == tmp_path / "truth" / "truth-cities.jsonl"
    written = pd.read_json(path, lines=True)
    pd.testing.assert_frame_equal(written, truth_statements("cities"), check_dtype=False)
    assert written.loc[0, "text"] == "The city of Krasnodar is in Russia." and written.loc[0, "truth"] == "true"
    assert not list(tmp_path.glob("truth/*.tmp"))


def test_an_unknown_truth_set_names_the_known_ones():
    with pytest.raises(NeurometryError, match="known: cities, neg_cities"):
        truth_statements("towns")


def test_a_missing_truth_folder_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROMETRY_DATA", str(tmp_path))
    with pytest.raises(NeurometryError, match="set NEUROMETRY_DATA"):
        truth_statements("cities")
    assert not list(tmp_path.iterdir())
