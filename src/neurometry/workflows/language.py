"""Store-in, store-out pipelines of the language verbs: word surprisal (and word-level states) into a run of
one row per word, and reading-time fits of a behaviour table on a surprisal run."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neurometry.datasets import word_length
from neurometry.errors import NeurometryError
from neurometry.language.reading_fit import ExclusionRules, fit_sources
from neurometry.language.surprisal import WordScores, require_causal, word_surprisal
from neurometry.language.words import POSITION, TEXT, WORD, read_words, words_table
from neurometry.models import LoadedModel
from neurometry.store import Store, import_rows, open_store
from neurometry.store.results import READING_FIT, Result
from neurometry.store.writer import delete_run

SURPRISAL_SOURCE = "surprisal"  # settings["kind"] of a run written by surprisal_to_store


def surprisal_run_name(model: str) -> str:
    """The default run of ``model``'s word surprisal: ``surprisal-<model>`` (the model's name as a run id)."""
    return "surprisal-" + "".join(c if c.isalnum() or c in "-_." else "-" for c in model)


def surprisal_to_store(
    model: LoadedModel,
    words_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    points: list[str] | None = None,
    lens: bool = False,
    correction: str = "auto",
    window: int | None = None,
    overlap: int | None = None,
    word_state: str = "last",
    text_column: str = "item",
    position_column: str = "zone",
    word_column: str = "word",
    run: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[str, WordScores]:
    """Score every word of ``words_path`` with ``model`` (:func:`neurometry.language.surprisal.word_surprisal`)
    and store one row per word in ``out`` as run ``run`` (default :func:`surprisal_run_name`): the words table
    with ``surprisal``, ``entropy``, ``tokens`` and, with ``lens``, ``surprisal_resid.{i}``/``entropy_resid.{i}``
    for every residual point as metadata; the word-level states of ``points`` as its arrays. Nothing is written
    before every word is scored. Returns the run id and the scores."""
    require_causal(model)
    words = read_words(words_path, text_column, position_column, word_column)
    run = run or surprisal_run_name(model.name)
    if Path(out).exists():  # refused before the scoring, not after it
        existing_store = open_store(out, read_only=True)
        taken = existing_store.find_run(run) is not None
        existing_store.close()
        if taken and not overwrite:
            raise NeurometryError(f"{out} already holds run {run!r}; name another with --run or replace it "
                                  "with --overwrite")
    lens_points = [p.name for p in model.resolve("resid.*")] if lens else []
    scores = word_surprisal(model, words, points=points or [], lens=lens_points, correction=correction,
                            window=window, overlap=overlap, word_state=word_state, progress=progress)
    store = open_store(out, create=True)  # created only once there is something to write
    if store.find_run(run) is not None:
        delete_run(store, run)
    settings = {"kind": SURPRISAL_SOURCE, "words": str(Path(words_path).resolve()), **scores.settings}
    import_rows(store, run, scores.states, scores.words, model.name, settings)
    store.close()
    return run, scores


def surprisal_runs(store: Store) -> list[str]:
    """The runs of ``store`` that :func:`surprisal_to_store` wrote, in catalog order."""
    return [info.run_id for info in store.runs() if info.settings.get("kind") == SURPRISAL_SOURCE]


def read_behaviour(path: str | os.PathLike, text_column: str = "item", position_column: str = "zone") -> pd.DataFrame:
    """A per-word behaviour table (TSV, or CSV by its extension; e.g. Natural Stories' ``reading_times.tsv``)
    with its text and position columns named ``item`` and ``zone``. Words stay the strings given (``NA`` is a
    word); empty cells are missing values."""
    path = Path(path)
    if not path.is_file():
        raise NeurometryError(f"behaviour file {path} does not exist; give a TSV/CSV with one row per word "
                              "(item, zone, and the measure)")
    separator = "," if path.suffix.lower() == ".csv" else "\t"
    table = pd.read_csv(path, sep=separator, quoting=3, keep_default_na=False, na_values=[""])
    missing = [c for c in (text_column, position_column) if c not in table.columns]
    if missing:
        raise NeurometryError(f"{path} has no column {', '.join(map(repr, missing))}; name its text and position "
                              "columns with --text-column and --position-column")
    table = table.rename(columns={text_column: TEXT, position_column: POSITION})
    words = words_table(table.assign(word=table["word"].astype(str) if "word" in table else "?"), source=str(path))
    return words if "word" in table else words.drop(columns=["word"])


def joined_words(store: Store, run: str, behaviour: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The run's words (every one, so spillover reads the real previous word) with the behaviour table's columns
    joined on (item, zone); missing measures stay missing (the fit drops and counts them). ``length`` is filled
    from the word and ``log_frequency`` from wordfreq's English frequency (natural log) where the behaviour
    table has none; notes say what was filled and how many words had no behaviour row. A behaviour word that
    differs from the run's at the same place is refused: the two tables are not the same corpus."""
    words = store.metadata(run).drop(columns=["row", "input_row"], errors="ignore")
    notes: dict[str, Any] = {}
    joined = words.merge(behaviour, on=[TEXT, POSITION], how="left", suffixes=("", "_behaviour"),
                         indicator=True, validate="one_to_one")
    notes["words_without_behaviour"] = int((joined["_merge"] == "left_only").sum())
    joined = joined.drop(columns="_merge")
    if "word_behaviour" in joined:
        given = joined["word_behaviour"]
        differ = given.notna() & (given.astype(str) != joined[WORD])
        if differ.any():
            row = joined[differ].iloc[0]
            raise NeurometryError(
                f"at item {row[TEXT]} zone {row[POSITION]} the behaviour table has {row['word_behaviour']!r} and run "
                f"{run!r} has {row[WORD]!r} ({int(differ.sum())} words differ); they are not the same corpus"
            )
        joined = joined.drop(columns="word_behaviour")
    if "length" not in joined:
        joined["length"] = joined[WORD].map(word_length)
        notes["length"] = "characters of the word without surrounding punctuation"
    if "log_frequency" not in joined:
        from wordfreq import word_frequency

        frequency = joined[WORD].map(lambda w: word_frequency(w.strip(".,;:!?\"'()[]-"), "en"))
        joined["log_frequency"] = np.log(frequency.where(frequency > 0))
        notes["log_frequency"] = "natural log of wordfreq's English word frequency"
    return joined, notes


def reading_fit(
    store_path: str | os.PathLike,
    behaviour_path: str | os.PathLike,
    *,
    target: str = "meanItemRT",
    baseline: Sequence[str] = ("length", "log_frequency", "position"),
    spillover: int = 2,
    group: str = "item",
    run: str | None = None,
    rules: ExclusionRules | None = None,
    permutations: int = 1000,
    seed: int = 0,
    text_column: str = "item",
    position_column: str = "zone",
) -> dict[str, Any]:
    """Regress ``target`` of the behaviour table on the surprisal run ``run`` (default: the store's only one)
    and save the fits: one per source, the model's output (``final``) and each lens layer (``resid.{i}``), all
    on the same words and baseline (:func:`neurometry.language.reading_fit.fit_sources`). Returns the document
    the ``fit`` command prints: ``results`` (one record per source), ``excluded`` and ``notes``."""
    rules = rules or ExclusionRules()
    store = open_store(store_path)
    runs = surprisal_runs(store)
    if run is None:
        if len(runs) != 1:
            raise NeurometryError(f"{store_path} holds {len(runs)} surprisal runs ({', '.join(runs) or 'none'}); "
                                  "name one with --run" if runs else
                                  f"{store_path} holds no surprisal run; make one with `neurometry surprisal`")
        run = runs[0]
    elif run not in runs:
        raise NeurometryError(f"run {run!r} is not a surprisal run of {store_path}; its surprisal runs: "
                              f"{', '.join(runs) or 'none'}")
    frame, notes = joined_words(store, run, read_behaviour(behaviour_path, text_column, position_column))
    lens = sorted((c for c in frame.columns if c.startswith("surprisal_")), key=_depth)
    columns = ["surprisal", *lens]
    fits = fit_sources(frame, columns, target, list(baseline), spillover, group, rules=rules,
                       permutations=permutations, seed=seed)
    records = []
    for column, fit in zip(columns, fits, strict=True):
        record = fit.to_dict()
        record["source"] = "final" if column == "surprisal" else column.removeprefix("surprisal_")
        records.append(record)
    settings = {"target": target, "baseline": list(baseline), "spillover": spillover, "group": group,
                "rules": rules.to_dict(), "permutations": permutations, "seed": seed,
                "behaviour": str(Path(behaviour_path).resolve())}
    READING_FIT.save(store, run, [
        Result(r["source"], "delta_loglik_per_word", r["delta_loglik_per_word"],
               params={k: settings[k] for k in ("target", "baseline", "spillover", "group")},
               extra={**r, "settings": settings, "notes": notes}, result_set=f"{Path(behaviour_path).name}:{target}")
        for r in records
    ])
    store.close()
    return {"run": run, "store": str(store_path), **settings, "excluded": records[0]["excluded"], "notes": notes,
            "results": records}


def _depth(column: str) -> tuple[int, str]:
    """Lens columns in layer order (``surprisal_resid.2`` before ``surprisal_resid.10``)."""
    tail = column.rsplit(".", 1)[-1]
    return (int(tail) if tail.isdigit() else -1, column)
