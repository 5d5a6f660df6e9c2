"""Built-in datasets that ship beside the project (``../shared/data``), written out in recordable form.

``kriegeskorte92``: the 92 object images of Kriegeskorte et al. 2008 (Neuron 60:1126) with their
category flags, and the monkey-IT and human-IT RDMs of that paper's Figure 1 in the same .mat file.

``truth-<set>``: the true/false statements of Marks & Tegmark 2023 ("The Geometry of Truth"), each with
a ``group`` column that keeps related statements on one side of every split (:func:`truth_statements`).
"""

from __future__ import annotations

import json
import os
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


DATASETS = {
    "kriegeskorte92": export_kriegeskorte92,
    **{f"truth-{name}": partial(export_truth, name) for name in TRUTH_SETS},
}
