"""Store-in, store-out pipelines of the language verbs: word surprisal (and word-level states) into a run of
one row per word, and reading-time fits of a behaviour table on a surprisal run."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neurometry.arrays import plain_value
from neurometry.datasets import word_length
from neurometry.errors import NeurometryError
from neurometry.files import read_delimited
from neurometry.language.reading_fit import ExclusionRules, fit_sources, ols, prepare_design
from neurometry.language.surprisal import WordScores, word_surprisal
from neurometry.language.words import POSITION, TEXT, WORD, read_words, words_table
from neurometry.models import LoadedModel
from neurometry.models.hooks import require_causal
from neurometry.probe import encode
from neurometry.store import Store, import_rows, open_store
from neurometry.store.results import ENCODE, READING_FIT, Result, set_name
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
    table = read_delimited(path, "give a TSV/CSV with one row per word (item, zone, and the measure)", sep=separator,
                           quoting=3, keep_default_na=False, na_values=[""])
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
    words = _word_view(frame, columns, target, baseline, spillover, rules)
    encoding = _encode_residuals(store, run, frame, fits[0].baseline_residuals, group, seed, target)
    result_set = f"{Path(behaviour_path).name}:{target}"
    READING_FIT.save(store, run, [
        Result(r["source"], "delta_loglik_per_word", r["delta_loglik_per_word"],
               params={k: settings[k] for k in ("target", "baseline", "spillover", "group")},
               extra={**r, "settings": settings, "notes": notes, **(words if r["source"] == "final" else {})},
               result_set=result_set)
        for r in records
    ])
    if encoding:
        ENCODE.save(store, run, [
            Result(e["point"], "encoding", e["r"], params={"targets": [f"{target}_residual"], "folds": e["folds"],
                                                           "seed": seed},
                   extra={"median_r": e["r"], "target_scores": [e["r"]], "alphas": e["alphas"]},
                   result_set=set_name(targets=[f"{target}_residual"], folds=e["folds"], seed=seed))
            for e in encoding
        ])
    store.close()
    return {"run": run, "store": str(store_path), **settings, "excluded": records[0]["excluded"], "notes": notes,
            "results": records, "encoding": encoding, "largest_residuals": words["largest_residuals"]}


RESIDUAL_WORDS = 20  # the words the fit explains worst, kept with the fit for the report and dashboard


def _word_view(frame: pd.DataFrame, columns: list[str], target: str, baseline: Sequence[str], spillover: int,
               rules: ExclusionRules) -> dict[str, Any]:
    """What the report and dashboard draw of the model's output fit: every kept word's surprisal and target
    (the scatter, with the fit's line through the means) and the RESIDUAL_WORDS words with the largest
    residuals of the full model (surprisal and spillover over the baseline)."""
    design = prepare_design(frame, target, columns, list(baseline), spillover, rules=rules)
    predictors = [*design.baseline_columns, *design.source_columns["surprisal"]]
    full = ols(design.values(predictors), design.target_values())
    rows = design.rows.assign(predicted=design.target_values() - full.residuals, residual=full.residuals)
    worst = rows.loc[rows["residual"].abs().sort_values(ascending=False).index[:RESIDUAL_WORDS]]
    return {
        "scatter": {"surprisal": np.round(rows["surprisal"].to_numpy(float), 3).tolist(),
                    "target": np.round(rows[target].to_numpy(float), 2).tolist()},
        "largest_residuals": [
            {"item": plain_value(r[TEXT]), "zone": int(r[POSITION]), "word": str(r[WORD]),
             "surprisal": round(float(r["surprisal"]), 3), "target": round(float(r[target]), 2),
             "predicted": round(float(r["predicted"]), 2), "residual": round(float(r["residual"]), 2)}
            for _, r in worst.iterrows()
        ],
    }


def _encode_residuals(store: Store, run: str, frame: pd.DataFrame, residuals: pd.Series, group: str, seed: int,
                      target: str) -> list[dict[str, Any]]:
    """Each stored point's word states encoding the baseline's residual reading times (ridge, nested
    cross-validation leaving one ``group`` out, the penalty chosen leaving out one of the others): Pearson r of
    the held-out predictions, per point, in depth order. Empty for a run without points or with fewer than three
    groups."""
    points = [p.point for p in store.points(run)]
    if not points:
        return []
    kept = frame.index.get_indexer(residuals.index)
    groups = frame[group].to_numpy()[kept]
    folds = len(pd.unique(groups))
    if folds < 3:  # the penalty is chosen by leaving out one of the other groups: two are needed besides
        return []
    records = []
    for point in points:
        states = np.asarray(store.activations(point, run=run), dtype=np.float64)[kept]
        result = encode(states, residuals.to_numpy()[:, None], folds=folds, inner_folds=folds - 1, seed=seed,
                        groups=groups)
        summary = result.to_dict()
        records.append({"point": point, "r": float(summary["mean_r"]), "alphas": summary["alpha"], "folds": folds,
                        "target": f"{target}_residual", "words": int(len(kept))})
    return records


def _depth(column: str) -> tuple[int, str]:
    """Lens columns in layer order (``surprisal_resid.2`` before ``surprisal_resid.10``)."""
    tail = column.rsplit(".", 1)[-1]
    return (int(tail) if tail.isdigit() else -1, column)


def fit_records(group: pd.DataFrame) -> list[dict[str, Any]]:
    """Saved ``reading_fit`` rows of one run and behaviour table as `neurometry fit` records, the model's output
    (``final``) first, then the lens layers in depth order (the catalog sorts points it has not stored by name)."""
    records = [{"source": point, **extra} for point, extra in zip(group["point"], group["extra"], strict=True)]
    return sorted(records, key=lambda r: (r["source"] != "final", _depth(r["source"])))
