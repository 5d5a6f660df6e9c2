"""Built-in datasets that ship beside the project (``../shared/data``), written out in recordable form.

``kriegeskorte92``: the 92 object images of Kriegeskorte et al. 2008 (Neuron 60:1126) with their
category flags, and the monkey-IT and human-IT RDMs of that paper's Figure 1 in the same .mat file.

``truth-<set>``: the true/false statements of Marks & Tegmark 2023 ("The Geometry of Truth"), each with
a ``group`` column that keeps related statements on one side of every split (:func:`truth_statements`);
``truth``: all six sets.

``hallucination-cities``: recorded from a model's own answers, so it is written by
:func:`neurometry.workflows.detect.export_hallucination_cities` (see :data:`HALLUCINATION_CITIES`).

``naturalstories``: the words of the Natural Stories corpus (Futrell et al. 2018, LREC) with their mean
self-paced reading times, word length and unigram log frequency (:func:`export_naturalstories`).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from neurometry.errors import NeurometryError

if TYPE_CHECKING:
    import pandas as pd

KRIEGESKORTE_FILE = Path("kriegeskorte92") / "Kriegeskorte_Neuron2008_supplementalData.mat"
KRIEGESKORTE_RDM_KEY = "RDMs_mIT_hIT_fig1"
"""Variable of the .mat file holding the two reference RDMs (monkey IT, human IT), for ``--rdm-key``."""


def shared_data_dir() -> Path:
    """``$NEUROMETRY_DATA`` if set, else ``../shared/data`` beside the repository checkout."""
    if os.environ.get("NEUROMETRY_DATA"):
        return Path(os.environ["NEUROMETRY_DATA"])
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def kriegeskorte_mat() -> Path:
    """Path of the Kriegeskorte et al. 2008 .mat file; an error naming the fix when it is missing."""
    path = shared_data_dir() / KRIEGESKORTE_FILE
    if not path.is_file():
        raise NeurometryError(
            f"{path} not found; put the shared data folder beside the checkout or set NEUROMETRY_DATA to it"
        )
    return path


def export_kriegeskorte92(out: str | os.PathLike) -> Path:
    """Write the 92 stimuli as PNGs plus ``stimuli.jsonl`` (image, stimulus, category, human, face, animal,
    natural) into ``out``; returns the JSONL path, ready for ``neurometry record MODEL <it>``."""
    import scipy.io
    from PIL import Image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stimuli = scipy.io.loadmat(kriegeskorte_mat(), struct_as_record=False, squeeze_me=True)["stimuli_92objs"]
    rows = []
    for i, stim in enumerate(stimuli):
        name = f"stim{i:02d}.png"
        if not (out / name).exists():
            Image.fromarray(stim.image).save(out / name)
        rows.append(
            {
                "image": name,
                "stimulus": i,
                "category": str(stim.category),
                **{flag: int(getattr(stim, flag)) for flag in ("human", "face", "animal", "natural")},
            }
        )
    jsonl = out / "stimuli.jsonl"
    tmp = jsonl.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(jsonl)
    return jsonl


TRUTH_FOLDER = Path("truth")
TRUTH_SETS = ("cities", "neg_cities", "sp_en_trans", "neg_sp_en_trans", "larger_than", "smaller_than")
"""The true/false statement sets of Marks & Tegmark 2023 in ``../shared/data/truth``."""


def truth_statements(name: str) -> pd.DataFrame:
    """One of :data:`TRUTH_SETS` as a table: ``text`` (the statement), ``truth`` ("true" / "false"),
    ``group``, and the columns that generated it. Duplicate statements are kept once.

    Rows sharing a ``group`` must stay on one side of a train/test split (pass it as ``groups=`` to
    :func:`neurometry.probe.probe`), because they are near copies with opposite answers, and a probe that
    recognises the copy predicts the wrong answer (random splits score below chance at early layers):

    - ``cities``, ``neg_cities``: the city (its true and its false statement);
    - ``larger_than``, ``smaller_than``: the unordered pair of numbers ("x is larger than y" and "y is
      larger than x");
    - ``sp_en_trans``, ``neg_sp_en_trans``: the connected set of Spanish and English words (a false
      statement pairs a Spanish word with another word's meaning; the words of one set never straddle).
    """
    import pandas as pd

    if name not in TRUTH_SETS:
        raise NeurometryError(f"unknown truth set {name!r}; known: {', '.join(TRUTH_SETS)}")
    path = shared_data_dir() / TRUTH_FOLDER / f"{name}.csv"
    if not path.is_file():
        raise NeurometryError(
            f"{path} not found; put the shared data folder beside the checkout or set NEUROMETRY_DATA to it"
        )
    table = pd.read_csv(path).drop_duplicates("statement").reset_index(drop=True)
    if name in ("cities", "neg_cities"):
        group = table["city"].astype(str)
    elif name in ("larger_than", "smaller_than"):
        low, high = table[["n1", "n2"]].min(axis=1), table[["n1", "n2"]].max(axis=1)
        group = low.astype(str) + "-" + high.astype(str)
    else:
        group = _word_components(table["statement"])
    truth = table.pop("label").map({1: "true", 0: "false"})
    return pd.concat(
        [pd.DataFrame({"text": table.pop("statement"), "truth": truth, "group": group}), table], axis=1
    )


def _word_components(statements: pd.Series) -> pd.Series:
    """For "The Spanish word 'X' (does not) mean(s) 'Y'." statements: the connected component of X and Y
    over all statements (union-find), named by its first Spanish word."""
    words = statements.str.extract(r"word '([^']+)'.*means? '([^']+)'")
    if words.isna().any().any():
        raise NeurometryError("a translation statement does not read \"The Spanish word 'X' means 'Y'\"")
    parent: dict[str, str] = {}

    def root(node: str) -> str:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for spanish, english in zip(words[0], words[1], strict=True):
        parent[root("es:" + spanish)] = root("en:" + english)
    first: dict[str, str] = {}
    for spanish in words[0]:
        first.setdefault(root("es:" + spanish), spanish)
    return words[0].map(lambda spanish: first[root("es:" + spanish)])


def export_truth(name: str, out: str | os.PathLike) -> Path:
    """Write :func:`truth_statements` of ``name`` as ``<out>/truth-<name>.jsonl`` (text, truth, group, ...);
    returns the path, ready for ``neurometry record MODEL <it>``."""
    table = truth_statements(name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jsonl = out / f"truth-{name}.jsonl"
    tmp = jsonl.with_suffix(".tmp")
    table.to_json(tmp, orient="records", lines=True, force_ascii=False)
    tmp.replace(jsonl)
    return jsonl


def export_truth_sets(out: str | os.PathLike) -> Path:
    """Write every one of :data:`TRUTH_SETS` as ``<out>/truth-<name>.jsonl`` (:func:`export_truth`); returns
    ``out``."""
    for name in TRUTH_SETS:
        export_truth(name, out)
    return Path(out)


NATURALSTORIES_FOLDER = Path("naturalstories")
NATURALSTORIES_FILES = (
    "all_stories.tok", "processed_wordinfo.tsv", "freqs-1.tsv", "LICENSE.txt", "README.md",
)
NATURALSTORIES_RT_COLUMNS = ("nItem", "meanItemRT", "sdItemRT", "gmeanItemRT", "gsdItemRT")
"""Per-word self-paced reading times aggregated over subjects (``processed_wordinfo.tsv``): subjects, mean,
sd, geometric mean and geometric sd (ms)."""


def _read_tsv(path: Path, **kwargs) -> pd.DataFrame:
    """A tab-separated file with words kept verbatim: no quote handling, and no word ("NA", "null") read as
    missing."""
    import pandas as pd

    return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False, **kwargs)


def word_length(word: str) -> int:
    """Characters of ``word`` once the punctuation around it is stripped (``"'Come,"`` -> 4); inner
    apostrophes and hyphens count (``"boar's"`` -> 6)."""
    start, end = 0, len(word)
    while start < end and not word[start].isalnum():
        start += 1
    while end > start and not word[end - 1].isalnum():
        end -= 1
    return end - start


def naturalstories_words() -> pd.DataFrame:
    """The Natural Stories corpus as one table, one row per word of ``all_stories.tok`` in (item, zone)
    order: ``item``, ``zone``, ``word``, the reading times :data:`NATURALSTORIES_RT_COLUMNS` (missing
    where ``processed_wordinfo.tsv`` has no row for the word), ``length`` (:func:`word_length`) and
    ``log_frequency``.

    ``log_frequency`` is the natural log of the zone's ``whole``-part unigram count in ``freqs-1.tsv``
    (Google Books 1990 on, the word as displayed, punctuation included); it is missing (NaN) where that
    count is missing or zero (6 words of stories 1-5, e.g. ``"Correthers,"``), so a regression on it drops
    those words. Works with whichever stories the folder holds.
    """
    import numpy as np
    import pandas as pd

    folder = shared_data_dir() / NATURALSTORIES_FOLDER
    missing = [name for name in NATURALSTORIES_FILES if not (folder / name).is_file()]
    if missing:
        raise NeurometryError(
            f"{folder / missing[0]} not found; put the shared data folder (with naturalstories/) beside the "
            "checkout or set NEUROMETRY_DATA to it"
        )
    words = _read_tsv(folder / "all_stories.tok", dtype={"word": str})[["item", "zone", "word"]]
    if words.duplicated(["item", "zone"]).any():
        raise NeurometryError(
            f"{folder / 'all_stories.tok'} lists an (item, zone) twice; restore the original file"
        )
    times = _read_tsv(
        folder / "processed_wordinfo.tsv",
        dtype={"word": str},
        na_values={column: ["", "NA"] for column in NATURALSTORIES_RT_COLUMNS},
    )
    times = times[["item", "zone", *NATURALSTORIES_RT_COLUMNS]].drop_duplicates(["item", "zone"])
    freqs = _read_tsv(folder / "freqs-1.tsv", header=None, dtype=str)
    code = freqs[0].str.split(".", n=2, expand=True)
    whole = pd.DataFrame(
        {
            "item": pd.to_numeric(code[0], errors="coerce"),
            "zone": pd.to_numeric(code[1], errors="coerce"),
            "count": pd.to_numeric(freqs[3], errors="coerce"),
        }
    )[code[2] == "whole"].dropna(subset=["item", "zone"])
    whole = whole.astype({"item": np.int64, "zone": np.int64}).drop_duplicates(["item", "zone"])
    count = whole.pop("count").to_numpy(dtype=np.float64)
    # a zero count has no log; missing, not -inf, so that fits drop the word instead of failing on it
    whole["log_frequency"] = np.log(np.where(count > 0, count, np.nan))
    table = words.merge(times, on=["item", "zone"], how="left").merge(whole, on=["item", "zone"], how="left")
    table["nItem"] = table["nItem"].astype("Int64")  # a count stays whole when a word has no reading times
    table.insert(len(table.columns) - 1, "length", table["word"].map(word_length).astype(np.int64))
    return table.sort_values(["item", "zone"], kind="stable").reset_index(drop=True)


def _tsv_text(table: pd.DataFrame) -> str:
    """``table`` as tab-separated text with every value written as is: a word holding a quote stays that word
    (csv quoting would wrap or escape it); a missing value is an empty field. Words never hold a tab or a
    newline (they come from a tab-separated file)."""
    columns = [
        table[name].astype(object).where(table[name].notna(), "").map(str).to_numpy()
        for name in table.columns
    ]
    lines = ["\t".join(table.columns), *("\t".join(values) for values in zip(*columns, strict=True))]
    return "\n".join(lines) + "\n"


def export_naturalstories(out: str | os.PathLike) -> Path:
    """Write the Natural Stories corpus (Futrell et al. 2018, CC BY-NC-SA 4.0) into ``out``:

    - ``words.tsv``: ``item``, ``zone``, ``word`` in (item, zone) order, what a surprisal command reads;
    - ``reading_times.tsv``: :func:`naturalstories_words` (the same words with reading times, ``length``
      and ``log_frequency``; a missing value is an empty field);
    - ``LICENSE.txt`` and ``README.md`` of the corpus, which keep its attribution.

    Returns the path of ``words.tsv``.
    """
    table = naturalstories_words()
    folder = shared_data_dir() / NATURALSTORIES_FOLDER
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("LICENSE.txt", "README.md"):
        shutil.copyfile(folder / name, out / name)
    written = {}
    files = (("reading_times.tsv", list(table.columns)), ("words.tsv", ["item", "zone", "word"]))
    for name, columns in files:
        path = out / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(_tsv_text(table[columns]))
        tmp.replace(path)
        written[name] = path
    return written["words.tsv"]


DATASETS = {
    "kriegeskorte92": export_kriegeskorte92,
    "naturalstories": export_naturalstories,
    "truth": export_truth_sets,
    **{f"truth-{name}": partial(export_truth, name) for name in TRUTH_SETS},
}
"""The datasets that ship as they are: name -> function(out) that writes them and returns the data file."""

HALLUCINATION_CITIES = "hallucination-cities"
"""The dataset recorded from a model's own answers about cities
(:func:`neurometry.workflows.detect.export_hallucination_cities`; it needs the model)."""

DATASET_NAMES = (*DATASETS, HALLUCINATION_CITIES)
"""Every name ``neurometry dataset`` takes, in the order its messages list them."""
