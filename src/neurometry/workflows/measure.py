"""`measure` as a library: pick points and rows of a store (or a .npy array), stream them into
:func:`neurometry.measures.run_measures` and save the results in the store's catalog (kind
:data:`~neurometry.store.results.MEASURE`); :func:`measure_records` reads them back as the same records."""

from __future__ import annotations

import fnmatch
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from neurometry.errors import NeurometryError
from neurometry.files import read_npy, read_safetensors
from neurometry.measures import MEASURES, MeasureResult, get_measure, run_measures
from neurometry.models.devices import stage_device
from neurometry.store import Store
from neurometry.store.results import MEASURE, Result, set_name
from neurometry.threads import blas_threads

DEFAULT_MEASURES = [
    "effective_rank", "participation_ratio", "alpha_req", "n_components_90", "stable_rank", "twonn", "mle_id",
    "anisotropy", "mean_norm", "layer_cosine", "rank_collapse", "sparsity", "kurtosis", "outlier_dims",
    "massive_activations", "nc1", "nc2_equinorm", "nc2_equiangular", "nc4", "cdnv",
    "attention_entropy", "sink_mass",
]


@dataclass(frozen=True)
class Source:
    """Rows to measure: one point of a store run, or a whole .npy array."""

    name: str
    kind: str
    shape: tuple[int, ...]
    chunks: object  # () -> iterable of arrays
    metadata: object | None = None  # DataFrame aligned with rows, for stores


def _applicable(names: list[str], src: Source, has_labels: bool, has_inputs: bool, has_previous: bool,
                has_classifier: bool, explicit: bool) -> list[str]:
    """Measures that make sense for ``src``; with ``explicit`` the user's list is kept (errors speak then)."""
    keep = []
    for name in names:
        measure = MEASURES[name]
        is_attention = measure.kind == "attention"
        if is_attention != (src.kind == "attention"):
            if explicit and len(names) == 1:
                raise NeurometryError(f"{name} does not apply to point {src.name} ({src.kind}); choose another point")
            continue
        if name == "layer_cosine" and not has_previous:
            continue  # the first point of a depth profile has nothing before it
        if explicit:
            keep.append(name)
            continue
        if measure.kind == "labels" and not has_labels:
            continue
        if name == "nc3" and not has_classifier:
            continue
        if measure.kind == "tokens" and not has_inputs:
            continue
        keep.append(name)
    return keep


def store_sources(store: Store, run: str | None, patterns: list[str] | None) -> tuple[str, list[Source]]:
    runs = store.runs()
    if run is None:
        if not runs:
            raise NeurometryError(f"{store.path} holds no runs yet; record into it first")
        if len(runs) != 1:
            names = ", ".join(r.run_id for r in runs)
            raise NeurometryError(f"{store.path} holds runs {names}; choose one with --run")
        run = runs[0].run_id
    info = store.run_info(run)
    if info.committed_rows == 0:
        raise NeurometryError(f"run {run!r} has no committed rows yet; record (or resume) it first")
    points = store.points(run)
    if patterns:
        chosen = [p for p in points if any(fnmatch.fnmatchcase(p.point, pat) for pat in patterns)]
        for pat in patterns:
            if not any(fnmatch.fnmatchcase(p.point, pat) for p in points):
                store.point_info(pat, run)  # raises with suggestions
        points = chosen
    meta = store.metadata(run)
    sources = [
        Source(p.point, p.kind, p.shape, (lambda name=p.point: store.iter_chunks(name, run=run)), meta) for p in points
    ]
    return run, sources


def npy_source(path: Path) -> Source:
    array = read_npy(path, mmap=True)
    if array.ndim < 2:
        raise NeurometryError(f"{path} has shape {array.shape}; measures need rows x features (reshape to (n, d))")
    if len(array) == 0:
        raise NeurometryError(f"{path} has no rows (shape {array.shape}); save one row per stimulus")
    step = max(1, (64 << 20) // max(1, array[:1].nbytes))

    def chunks():
        for lo in range(0, len(array), step):
            yield np.asarray(array[lo : lo + step])

    kind = "attention" if array.ndim == 3 else "vector"
    return Source(path.stem, kind, tuple(array.shape[1:]), chunks)


def read_labels(path: Path) -> np.ndarray:
    """One label per row from a .npy file (for a .npy SOURCE, which has no metadata columns)."""
    if Path(path).suffix.lower() != ".npy":
        raise NeurometryError(f"labels file {path} is not a .npy; save one label per row with numpy.save")
    labels = read_npy(path, fix="save one label per row with numpy.save", what=f"labels from {path}")
    if labels.ndim != 1:
        raise NeurometryError(f"labels in {path} have shape {labels.shape}; give one label per row (a 1-D array)")
    return labels


def metadata_labels(src: Source, label: str | None) -> np.ndarray | None:
    if label is None:
        return None
    if src.metadata is None:
        raise NeurometryError("--label names a metadata column of a store; for a .npy file give --labels FILE.npy")
    if label not in src.metadata.columns:
        columns = ", ".join(c for c in src.metadata.columns if c not in ("row",))
        raise NeurometryError(f"no column {label!r} in the row metadata; columns are: {columns}")
    return src.metadata[label].to_numpy()


def classifier_file(path: Path | None, width: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """W (classes, features) and b (classes,) from a .safetensors (b defaults to zeros); with ``width``, W must
    read rows of that many features."""
    if path is None:
        return None
    if not path.is_file():
        raise NeurometryError(f"classifier file {path} does not exist; give a .safetensors with W (and b)")
    tensors = read_safetensors(path, "; save W and b with safetensors")
    if "W" not in tensors:
        raise NeurometryError(f"{path} has no tensor 'W' (classes x features); save W and b with safetensors")
    weights = tensors["W"]
    bias = tensors.get("b", np.zeros(len(weights), dtype=weights.dtype))
    if weights.ndim != 2 or (width is not None and weights.shape[1] != width) or bias.shape != (len(weights),):
        wanted = f"(classes, {width})" if width is not None else "(classes, features)"
        raise NeurometryError(f"{path}: W has shape {weights.shape} and b {bias.shape}; give W shaped {wanted} and b "
                              "one value per class")
    return weights, bias


def measure_sources(
    sources: list[Source],
    measures: list[str] | None,
    *,
    label_values: np.ndarray | None = None,
    classifier: tuple[np.ndarray, np.ndarray] | None = None,
    input_ids: np.ndarray | None = None,
    seed: int = 0,
    max_rows: int = 20000,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> list[dict]:
    """Run the measures over each source; returns one record per (point, measure). ``device``: where the
    covariance accumulation, its eigenvalues and the kNN search run (:func:`stage_device`)."""
    device = stage_device(device)
    explicit = measures is not None and measures != ["all"]
    names = list(MEASURES) if measures == ["all"] else (measures or DEFAULT_MEASURES)
    for name in names:
        get_measure(name)  # unknown names fail before any work
    records: list[dict] = []
    previous: dict[tuple, Source] = {}
    for src in tqdm(sources, desc="measure", unit="point", file=sys.stderr, disable=not progress):
        prior = previous.get(src.shape)
        chosen = _applicable(names, src, label_values is not None, input_ids is not None, prior is not None,
                             classifier is not None, explicit=explicit)
        previous[src.shape] = src
        if not chosen:
            continue
        # nc4 fits a logistic classifier (a small lbfgs fit): one BLAS thread (neurometry.threads)
        with blas_threads() if {"nc3", "nc4"} & set(chosen) else nullcontext():
            results = run_measures(
                src.chunks, chosen,
                labels=label_values if any(MEASURES[n].kind == "labels" for n in chosen) else None,
                input_ids=input_ids if "rank_collapse" in chosen else None,
                classifier=classifier if {"nc3", "nc4"} & set(chosen) else None,
                other=prior.chunks if (prior is not None and "layer_cosine" in chosen) else None,
                seed=seed, max_rows=max_rows, device=device,
            )
        records.extend(_record(src, res, prior) for res in results.values())
    return records


def _record(src: Source, res: MeasureResult, prior: Source | None) -> dict:
    doc = res.to_dict()
    extra = dict(doc["fields"])
    if res.name == "layer_cosine" and prior is not None:
        extra["previous_point"] = prior.name
    if res.name == "massive_activations" and src.metadata is not None and "row" in extra:
        row = src.metadata.iloc[int(extra["row"])]
        for column in ("input_row", "position", "token"):
            if column in row.index:
                extra[column] = row[column].item() if hasattr(row[column], "item") else row[column]
    if doc["note"]:
        extra["note"] = doc["note"]
    return {"point": src.name, "measure": res.name, "value": doc["value"], "params": doc["params"],
            "n_rows": doc["n_rows"], **extra}


def measure_store(
    store: Store,
    run: str | None = None,
    points: list[str] | None = None,
    measures: list[str] | None = None,
    label: str | None = None,
    classifier: Path | None = None,
    seed: int = 0,
    max_rows: int = 20000,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> list[dict]:
    """Measure points of one run of a store; returns one record per (point, measure) and saves them in the
    catalog, one result set per measure and setting (a point measured again replaces its own rows only).
    ``device`` as in :func:`measure_sources`; it is not part of the result set (the values agree)."""
    device = stage_device(device)
    store.check_writable()  # before the work, not after it
    run, sources = store_sources(store, run, points)
    meta = sources[0].metadata if sources else None
    label_values = metadata_labels(sources[0], label) if sources else None
    input_ids = meta["input_row"].to_numpy() if meta is not None and "position" in meta.columns else None
    records = measure_sources(sources, measures, label_values=label_values, classifier=classifier_file(classifier),
                              input_ids=input_ids, seed=seed, max_rows=max_rows, progress=progress,
                              device=device)
    MEASURE.save(store, run, [
        Result(r["point"], r["measure"], r["value"], params={**r["params"], "label": label, "seed": seed},
               extra={k: v for k, v in r.items() if k not in ("point", "measure", "value", "params")},
               result_set=set_name(measure=r["measure"], label=label, seed=seed))
        for r in records
    ])
    return records


# -- catalog rows back into the records the commands print and plot ------------------------------
def measure_records(results: pd.DataFrame) -> list[dict]:
    """`neurometry measure` records (point, measure, value, fields) from decoded ``measure`` rows, in the
    order the command produces them: points by depth, then measures in the command's default order."""
    order = {name: i for i, name in enumerate(dict.fromkeys([*DEFAULT_MEASURES, *MEASURES]))}
    rows = sorted(
        results.itertuples(), key=lambda r: (r.run_id, r.depth_rank, r.name_rank, order.get(r.name, len(order)))
    )
    return [{"point": r.point, "measure": r.name, "value": r.value, **r.extra} for r in rows]
