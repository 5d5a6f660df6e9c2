"""`probe` and `encode` as a library: pick points of a store (or a .npy array), labels or targets from the
store's row metadata or from files, keep the rows of one input in one fold (token runs), fit and save the
results in the catalog (kinds :data:`~neurometry.store.results.PROBE` and
:data:`~neurometry.store.results.ENCODE`); :func:`scored_records` reads them back."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from neurometry.errors import NeurometryError
from neurometry.files import read_delimited, read_npy
from neurometry.models.devices import stage_device
from neurometry.store import open_store
from neurometry.store.results import ENCODE, PROBE, Result, set_name
from neurometry.threads import blas_threads
from neurometry.workflows.measure import (
    Source,
    metadata_labels,
    npy_source,
    read_labels,
    store_sources,
)


def point_sources(source: str, run: str | None, points: list[str] | None) -> tuple[list[Source], Any, str | None]:
    """(sources, store or None, run) for a store folder or a .npy array."""
    path = Path(source)
    if path.suffix == ".npy":
        if not path.is_file():
            raise NeurometryError(f"no file {path}; give a store folder or a .npy array (rows x features)")
        return [npy_source(path)], None, None
    if not path.is_dir():
        what = "is a file, not a store folder or .npy" if path.exists() else "does not exist"
        raise NeurometryError(f"{source} {what}; give a store folder or a .npy array (rows x features)")
    store = open_store(path)
    run, sources = store_sources(store, run, points)
    return sources, store, run


def read_rows(src: Source) -> np.ndarray:
    """All rows of one point as (rows, features)."""
    x = np.concatenate([np.asarray(c) for c in src.chunks()])
    return x.reshape(len(x), -1)


def _groups(src: Source) -> np.ndarray | None:
    """Token runs: the input each row came from, so an input's rows never straddle folds."""
    meta = src.metadata
    if meta is not None and "position" in meta.columns:
        return meta["input_row"].to_numpy()
    return None


def _label_values(sources: list[Source], label: str | None, labels_file: str | None) -> np.ndarray:
    if label is None and labels_file is None:
        raise NeurometryError("give the labels: --label COLUMN (store metadata) or --labels FILE.npy")
    if labels_file is not None:
        if label is not None:
            raise NeurometryError("give either --label (a metadata column) or --labels (a file), not both")
        return read_labels(Path(labels_file))
    return metadata_labels(sources[0], label)


def run_probe(
    source: str,
    *,
    label: str | None = None,
    labels_file: str | None = None,
    points: list[str] | None = None,
    run: str | None = None,
    kind: str = "auto",
    ks: list[int] | None = None,
    rank_by: str = "f_statistic",
    folds: int = 5,
    seed: int = 0,
    control: bool = False,
    directions: str | None = None,
    direction_method: str = "mean_difference",
    progress: bool = True,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Probe every chosen point; returns ``{"results": [...]}`` and saves them in the store. ``device``:
    where the linear algebra of an ``lda`` direction runs (:func:`stage_device`); the probes themselves
    are scikit-learn fits on the CPU."""
    from neurometry.probe import probe, selectivity, sparse_probe

    device = stage_device(device)
    sources, store, run = point_sources(source, run, points)
    y = _label_values(sources, label, labels_file)
    records = []
    with blas_threads():  # every point's many small fits: one BLAS thread each (neurometry.threads)
        for src in tqdm(sources, desc="probe", unit="point", file=sys.stderr, disable=not progress, delay=1.0):
            x = read_rows(src)
            if len(x) != len(y):
                raise NeurometryError(f"{len(y)} labels for {len(x)} rows of {src.name}; give one label per row")
            groups = _groups(src)
            if kind == "sparse":
                for result in sparse_probe(x, y, ks, rank_by=rank_by, groups=groups, folds=folds, seed=seed):
                    records.append({"point": src.name, **result.to_dict()})
                continue
            if control:
                if src.metadata is None or "token_id" not in src.metadata.columns:
                    raise NeurometryError(
                        "--control needs a token run (record with --reduce tokens): it labels token types"
                    )
                result = selectivity(
                    x, y, src.metadata["token_id"].to_numpy(), groups=groups, folds=folds, seed=seed
                )
                record = {
                    "point": src.name,
                    **result.task.to_dict(),
                    "control_score": result.control.score,
                    "selectivity": result.selectivity,
                }
            else:
                record = {"point": src.name, **probe(x, y, kind, groups=groups, folds=folds, seed=seed).to_dict()}
            if directions is not None:
                record["direction_file"] = str(
                    _save_direction(x, y, src, directions, direction_method, store, run, device)
                )
            records.append(record)
    if store is not None:
        PROBE.save(store, run, [
            Result(
                r["point"], f"{r['kind']}" + (f"@k={r['k']}" if r.get("k") else ""), r["score"],
                params={"label": label, "folds": folds, "seed": seed, "kind": kind},
                extra={k: v for k, v in r.items() if k not in ("point", "score")},
                result_set=set_name(label=label, kind=kind, folds=folds, seed=seed, control=control or None),
            )
            for r in records
        ])
    return {"results": records}


def _save_direction(
    x: np.ndarray,
    y: np.ndarray,
    src: Source,
    folder: str,
    method: str,
    store: Any,
    run: str | None,
    device: torch.device | None,
) -> Path:
    from neurometry.probe import direction, save_direction

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    vector = direction(x, y, method, device=device)
    model = store.run_info(run).model if store is not None else None
    return save_direction(
        out / f"{src.name}.safetensors",
        vector,
        model=model,
        point=src.name,
        method=method,
        classes=[str(c) for c in np.unique(y)],
    )


def _targets(
    sources: list[Source], targets: str | None, columns: list[str] | None, id_column: str | None, n_rows: int
) -> tuple[np.ndarray, list[str]]:
    """(n, t) targets aligned with the rows, and their names."""
    if (targets is None) == (columns is None):
        raise NeurometryError(
            "give the targets: --targets FILE (.npy, .csv, .parquet) or --target-columns COL ..."
        )
    meta = sources[0].metadata
    if columns is not None:
        if meta is None:
            raise NeurometryError(
                "--target-columns names store metadata columns; for a .npy source give --targets"
            )
        missing = [c for c in columns if c not in meta.columns]
        if missing:
            raise NeurometryError(
                f"no column {missing[0]!r} in the row metadata; columns are: {', '.join(meta.columns)}"
            )
        return _numeric(meta[columns], "--target-columns"), list(columns)
    path = Path(targets)
    if not path.is_file():
        raise NeurometryError(f"no file {path}; give targets as .npy (rows x targets), .csv or .parquet")
    if path.suffix == ".npy":
        values = read_npy(path)
        values = values.reshape(len(values), -1)
        if len(values) != n_rows:
            raise NeurometryError(
                f"{path} has {len(values)} rows of targets for {n_rows} rows of activations; "
                "give one row per stimulus, in the same order (or a table with --id-column)"
            )
        return _numeric(pd.DataFrame(values), str(path)), [f"t{i}" for i in range(values.shape[1])]
    fix = "give targets as .npy (rows x targets), .csv or .parquet"
    if path.suffix == ".csv":
        table = read_delimited(path, fix)
    elif path.suffix == ".parquet":
        try:
            table = pd.read_parquet(path)
        except (ValueError, OSError) as error:  # pyarrow's ArrowInvalid is a ValueError
            raise NeurometryError(f"cannot read {path} as parquet ({str(error).splitlines()[0]}); {fix}") from None
    else:
        raise NeurometryError(f"{path} is neither .npy, .csv nor .parquet; {fix}")
    if id_column is None:
        if len(table) != n_rows:
            raise NeurometryError(
                f"{path} has {len(table)} rows for {n_rows} rows of activations; align them "
                "with --id-column COLUMN (present in the table and the store metadata)"
            )
        return _numeric(table, str(path)), list(table.columns)
    if meta is None or id_column not in meta.columns or id_column not in table.columns:
        raise NeurometryError(
            f"--id-column {id_column!r} must be a column of both {path} and the store metadata"
        )
    indexed = table.set_index(id_column)
    missing = ~meta[id_column].isin(indexed.index)
    if missing.any():
        raise NeurometryError(
            f"{int(missing.sum())} rows of the store have no {id_column} in {path}; give targets for every row"
        )
    aligned = indexed.loc[meta[id_column]]
    return _numeric(aligned, str(path)), list(aligned.columns)


def _numeric(frame: pd.DataFrame, where: str) -> np.ndarray:
    numeric = frame.select_dtypes("number")
    if numeric.shape[1] == 0:
        raise NeurometryError(f"{where} has no numeric target columns")
    values = numeric.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        cols = np.flatnonzero(bad.any(axis=0))
        raise NeurometryError(
            f"{int(bad.sum())} target values in {where} are NaN or Inf ({len(cols)} targets); "
            "drop or fill them first"
        )
    return values


def run_encode(
    source: str,
    *,
    targets: str | None = None,
    target_columns: list[str] | None = None,
    id_column: str | None = None,
    points: list[str] | None = None,
    run: str | None = None,
    folds: int = 5,
    seed: int = 0,
    reliability: str | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Encoding model of the targets from every chosen point; ``{"results": [...], "best_points": [...]}``.
    ``device``: where the ridge fits run (:func:`stage_device`); the scores equal the CPU path's to rounding."""
    from neurometry.probe import best_points, encode, split_half_reliability

    device = stage_device(device)
    sources, store, run = point_sources(source, run, points)
    y, names = None, []
    ceiling = None
    if reliability is not None:
        repeats = read_npy(reliability, fix="save the repeats (repeats x rows x targets) with numpy.save")
        try:
            ceiling = split_half_reliability(repeats, seed=seed)
        except NeurometryError as exc:
            raise NeurometryError(f"--reliability {reliability}: {exc}") from None
        repeats_shape = tuple(int(n) for n in np.shape(repeats))
    results, records = {}, []
    for src in tqdm(sources, desc="encode", unit="point", file=sys.stderr, disable=not progress, delay=1.0):
        x = read_rows(src)
        if y is None:  # aligned with the rows of the first point read (every point has the same rows)
            y, names = _targets(sources, targets, target_columns, id_column, len(x))
            if ceiling is not None and ceiling.size != y.shape[1]:
                raise NeurometryError(
                    f"--reliability {reliability} has shape {repeats_shape}: repeats of {ceiling.size} target"
                    f"{'s' if ceiling.size != 1 else ''}, but there are {y.shape[1]} targets; give repeats x rows "
                    f"x targets, shape (n_repeats, {y.shape[0]}, {y.shape[1]}), saved with numpy.save"
                )
        result = encode(
            x, y, folds=folds, inner_folds=folds, seed=seed, groups=_groups(src), ceiling=ceiling, device=device
        )
        results[src.name] = result
        doc = result.to_dict()
        records.append(
            {
                "point": src.name,
                "kind": "encoding",
                "score": doc["mean_r"],
                "median_r": doc["median_r"],
                "target_scores": doc["r"],
                "alphas": doc["alpha"],
                **({"normalized_r": doc["normalized_r"]} if ceiling is not None else {}),
            }
        )
    best = best_points(results)
    if store is not None:
        ENCODE.save(store, run, [
            Result(
                r["point"], "encoding", r["score"],
                params={"targets": targets or target_columns, "folds": folds, "seed": seed},
                extra={k: v for k, v in r.items() if k not in ("point", "score")},
                result_set=set_name(targets=targets or target_columns, folds=folds, seed=seed),
            )
            for r in records
        ])
    return {"results": records, "targets": names, "best_points": best}


def scored_records(results: pd.DataFrame) -> list[dict]:
    """`neurometry probe` or `encode` records (point, score, fields) from decoded ``probe``/``encode`` rows."""
    return [{"point": r.point, "score": r.value, **r.extra} for r in results.itertuples()]
