"""The shipped probing sets: 400 distinct sentences each, balanced labels, and magnitude texts that
spell exactly their value."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

DATA = Path(__file__).resolve().parents[1] / "src" / "neurometry" / "data"
SMALL = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen".split()
    )
}
TENS = {
    w: 10 * i
    for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split())
    if i >= 2
}


def words_to_number(text: str) -> int:
    total = current = 0
    for word in re.split(r"[ -]", text):
        if word == "and":
            continue
        if word in SMALL:
            current += SMALL[word]
        elif word in TENS:
            current += TENS[word]
        elif word == "hundred":
            current *= 100
        elif word == "thousand":
            total, current = (total + current) * 1000, 0
        else:
            raise ValueError(word)
    return total + current


@pytest.mark.parametrize(
    ("task", "column", "classes"),
    [
        ("sentiment", "sentiment", {"positive", "negative"}),
        ("tense", "tense", {"past", "present"}),
        ("number", "number", {"singular", "plural"}),
    ],
)
def test_labelled_sets_are_distinct_and_balanced(task, column, classes):
    table = pd.read_json(DATA / f"probe_{task}.jsonl", lines=True)
    assert len(table) == 400 and table["text"].nunique() == 400
    assert table[column].value_counts().to_dict() == {c: 200 for c in classes}


def test_magnitude_texts_spell_their_values():
    table = pd.read_json(DATA / "probe_magnitude.jsonl", lines=True)
    assert len(table) == 400 and table["text"].nunique() == 400
    pattern = re.compile(
        r"(?:There were|She counted|The report listed|About) ([a-z -]+?) (?:people|books|cars|birds|"
        r"chairs|coins|trees|tickets|boxes|letters)"
    )
    for text, value in zip(table["text"], table["value"], strict=True):
        words = pattern.match(text).group(1)
        assert words_to_number(words.lower()) == value, text
    assert table["log10_value"].min() < 1 and table["log10_value"].max() > 5  # every order of magnitude
