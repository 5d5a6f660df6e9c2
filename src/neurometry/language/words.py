"""Words of a corpus, one row each: read from a table, rebuilt into texts, and lined up with tokens.

The layout is the Natural Stories one (Futrell et al. 2018): ``item`` (text id), ``zone`` (position in the
text, from 1) and ``word``. A text is its words joined with single spaces in position order, so every word
owns a known span of characters, and a tokenizer's offsets say which word each token belongs to: alignment by
characters, never by matching token strings (which breaks on punctuation, quotes and byte-level tokens).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from neurometry.arrays import plain_value
from neurometry.errors import NeurometryError
from neurometry.files import read_delimited

TEXT, POSITION, WORD = "item", "zone", "word"


@dataclass(frozen=True)
class Text:
    """One text: its id, its words in order with their positions, the joined string and each word's
    character span ``[starts[i], ends[i])`` in it."""

    text_id: object
    positions: np.ndarray  # (words,) int
    words: list[str]
    string: str
    starts: np.ndarray  # (words,) int
    ends: np.ndarray  # (words,) int

    @classmethod
    def from_words(cls, text_id: object, positions: np.ndarray, words: list[str]) -> Text:
        lengths = np.array([len(word) for word in words], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]).astype(np.int64)
        return cls(text_id, np.asarray(positions, dtype=np.int64), list(words), " ".join(words), starts,
                   starts + lengths)

    def __len__(self) -> int:
        return len(self.words)


def read_words(
    path: str | os.PathLike,
    text_column: str = TEXT,
    position_column: str = POSITION,
    word_column: str = WORD,
) -> pd.DataFrame:
    """A words table (TSV, or CSV by its extension) as ``item``, ``zone``, ``word`` columns (renamed from the
    given ones; other columns kept), sorted by text and position. Refused with one line: a missing file or
    column, a missing or blank word (a word holds no whitespace: the text is rebuilt by joining words with
    spaces), a position that is not a whole number, or a (text, position) given twice."""
    path = Path(path)
    if not path.is_file():
        raise NeurometryError(f"words file {path} does not exist; give a TSV/CSV with one row per word "
                              f"({TEXT}, {POSITION}, {WORD})")
    separator = "," if path.suffix.lower() == ".csv" else "\t"
    # every column as text, so a word such as "NA", "null" or "1e5" stays the word it is
    table = read_delimited(path, f"give a TSV/CSV with one row per word ({TEXT}, {POSITION}, {WORD})", sep=separator,
                           dtype=str, keep_default_na=False, quoting=3)
    return words_table(table, text_column, position_column, word_column, source=str(path))


def words_table(
    table: pd.DataFrame,
    text_column: str = TEXT,
    position_column: str = POSITION,
    word_column: str = WORD,
    source: str = "the words table",
) -> pd.DataFrame:
    """:func:`read_words` for a table already in memory."""
    wanted = {text_column: TEXT, position_column: POSITION, word_column: WORD}
    missing = [column for column in wanted if column not in table.columns]
    if missing:
        raise NeurometryError(
            f"{source} has no column {', '.join(map(repr, missing))} (it has {', '.join(map(str, table.columns))}); "
            "name the columns with --text-column, --position-column and --word-column"
        )
    others = [c for c in table.columns if c not in wanted and c in (TEXT, POSITION, WORD)]
    frame = table.drop(columns=others).rename(columns=wanted)
    words = frame[WORD].astype(str)
    bad = words.str.strip().eq("") | words.str.contains(r"\s", regex=True) | frame[WORD].isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise NeurometryError(f"{source} row {row + 1} has a blank word or one holding whitespace ({words.iloc[row]!r}); "
                              "give one word per row")
    positions = pd.to_numeric(frame[POSITION], errors="coerce")
    if positions.isna().any() or not np.all(positions == np.round(positions)):
        row = int(np.flatnonzero((positions.isna() | (positions != np.round(positions))).to_numpy())[0])
        raise NeurometryError(
            f"{source} row {row + 1}: position {plain_value(frame[POSITION].iloc[row])!r} is not a whole number"
        )
    frame = frame.assign(**{POSITION: positions.astype(np.int64), WORD: words})
    frame[TEXT] = _natural_ids(frame[TEXT])
    if frame.duplicated([TEXT, POSITION]).any():
        first = frame[frame.duplicated([TEXT, POSITION], keep=False)].iloc[0]
        raise NeurometryError(f"{source} gives text {plain_value(first[TEXT])!r} position {plain_value(first[POSITION])} twice; "
                              "each (text, position) is one word")
    if frame.empty:
        raise NeurometryError(f"{source} has no words")
    return frame.sort_values([TEXT, POSITION], kind="stable").reset_index(drop=True)


def _natural_ids(ids: pd.Series) -> pd.Series:
    """Text ids as integers when every one is a whole number (Natural Stories' items), so they sort and join
    as numbers; else as the strings given."""
    as_numbers = pd.to_numeric(ids, errors="coerce")
    if as_numbers.notna().all() and np.all(as_numbers == np.round(as_numbers)):
        return as_numbers.astype(np.int64)
    return ids.astype(str)


def build_texts(words: pd.DataFrame) -> list[Text]:
    """The texts of a :func:`read_words` table, in its order (rows of one text are consecutive)."""
    texts = []
    for text_id, rows in words.groupby(TEXT, sort=False):
        texts.append(Text.from_words(text_id, rows[POSITION].to_numpy(), rows[WORD].tolist()))
    return texts


def token_words(text: Text, offsets: np.ndarray) -> np.ndarray:
    """Which word each token belongs to: ``offsets`` (tokens, 2) character spans of the tokens of
    ``text.string`` (a fast tokenizer's ``offset_mapping``) -> (tokens,) word indices. A token goes to the word
    holding its last non-space character; a token of spaces only goes to the next word (a tokenizer that
    attaches the space to the next word's first token puts it there). A token spanning two words is refused:
    the tokenizer then cannot score words separately."""
    offsets = np.asarray(offsets, dtype=np.int64)
    owner = np.full(len(text.string) + 1, -1, dtype=np.int64)
    for index, (start, end) in enumerate(zip(text.starts, text.ends, strict=True)):
        owner[start:end] = index
    next_word = np.searchsorted(text.starts, np.arange(len(text.string) + 1), side="left")
    result = np.empty(len(offsets), dtype=np.int64)
    for index, (start, end) in enumerate(offsets):
        covered = owner[start:end]
        inside = covered[covered >= 0]
        if len(inside) == 0:
            result[index] = min(int(next_word[start]), len(text) - 1)
        elif inside[0] != inside[-1]:
            raise NeurometryError(f"a token of text {text.text_id!r} spans two words "
                                  f"({text.string[start:end]!r}); this tokenizer cannot score words apart")
        else:
            result[index] = inside[-1]
    return result
