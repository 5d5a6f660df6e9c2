"""`neurometry dataset naturalstories`: the shipped Natural Stories files written as words and reading times,
checked against values read straight from the source files."""

from __future__ import annotations

import csv
import math

import numpy as np
import pandas as pd
import pytest

from neurometry.datasets import DATASETS, export_naturalstories, shared_data_dir, word_length
from neurometry.errors import NeurometryError

SOURCE = shared_data_dir() / "naturalstories"
RT_COLUMNS = ["nItem", "meanItemRT", "sdItemRT", "gmeanItemRT", "gsdItemRT"]


def source_rows(name: str) -> list[list[str]]:
    with open(SOURCE / name, newline="") as handle:
        return list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def read_tsv(path) -> pd.DataFrame:
    return pd.read_csv(
        path, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False, na_values={"log_frequency": [""]}
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    if not (SOURCE / "all_stories.tok").is_file():
        pytest.skip("../shared/data/naturalstories is not beside this checkout")
    out = tmp_path_factory.mktemp("naturalstories")
    words_path = DATASETS["naturalstories"](out)
    return out, words_path


def test_row_counts_order_and_attribution(exported):
    out, words_path = exported
    assert words_path == out / "words.tsv"
    tok = source_rows("all_stories.tok")[1:]
    assert len(tok) == 5201
    words, times = read_tsv(words_path), read_tsv(out / "reading_times.tsv")
    assert list(words.columns) == ["item", "zone", "word"]
    assert list(times.columns) == ["item", "zone", "word", *RT_COLUMNS, "length", "log_frequency"]
    assert len(words) == len(times) == len(tok)
    assert not times.duplicated(["item", "zone"]).any()
    keys = list(zip(times["item"], times["zone"], strict=True))
    assert keys == sorted(keys)
    assert words.equals(times[["item", "zone", "word"]])
    # every source word appears verbatim under its (item, zone)
    by_key = {(int(item), int(zone)): word for word, zone, item in tok}
    assert all(by_key[key] == word for key, word in zip(keys, times["word"], strict=True))
    for name in ("LICENSE.txt", "README.md"):
        assert (out / name).read_bytes() == (SOURCE / name).read_bytes()


def test_reading_times_join_matches_the_source_rows(exported):
    out, _ = exported
    times = read_tsv(out / "reading_times.tsv").set_index(["item", "zone"])
    info = source_rows("processed_wordinfo.tsv")
    header = info[0]
    assert len(info) - 1 == len(times)  # every word of the shipped stories has reading times
    for row in (info[1], info[len(info) // 2], info[-1], next(r for r in info[1:] if r[0] == "'Come,")):
        record = dict(zip(header, row, strict=True))
        got = times.loc[(int(record["item"]), int(record["zone"]))]
        assert got["word"] == record["word"]
        assert int(got["nItem"]) == int(record["nItem"])
        for column in RT_COLUMNS[1:]:
            assert got[column] == float(record[column])  # written at full precision


def test_log_frequency_is_the_log_of_the_whole_zone_count(exported):
    out, _ = exported
    times = read_tsv(out / "reading_times.tsv").set_index(["item", "zone"])
    counts = {row[0]: row[3] for row in source_rows("freqs-1.tsv")}
    for code in ("1.1.whole", "1.10.whole", "3.200.whole", "5.95.whole", "4.1083.whole"):
        item, zone, _ = code.split(".")
        count = float(counts[code])
        got = times.loc[(int(item), int(zone)), "log_frequency"]
        if count > 0:
            assert got == pytest.approx(math.log(count), rel=1e-12)
        else:  # "Correthers ," and "hedge - king ," have a zero count: missing, not -inf
            assert np.isnan(got)
    # "England," is counted as the whole zone "England ,", not as the bare word
    assert times.loc[(1, 10), "log_frequency"] == pytest.approx(math.log(4975314), rel=1e-12)
    assert int(np.isnan(times["log_frequency"]).sum()) == sum(
        1 for code, count in counts.items() if code.endswith(".whole") and float(count) == 0
    )


def test_word_length_strips_surrounding_punctuation(exported):
    out, _ = exported
    times = read_tsv(out / "reading_times.tsv").set_index(["item", "zone"])
    assert times.loc[(1, 10), "length"] == len("England")
    assert word_length("'Come,") == 4
    assert word_length("boar's") == 6
    assert word_length("hedge-king!'") == 10
    assert word_length("...") == 0


def test_missing_data_folder_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setenv("NEUROMETRY_DATA", str(tmp_path))
    with pytest.raises(NeurometryError, match="set NEUROMETRY_DATA") as caught:
        export_naturalstories(tmp_path / "out")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out" / "words.tsv").exists()
