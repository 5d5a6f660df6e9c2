"""`neurometry measure`: the measures of `neurometry.measures`, point by point, over a store or a .npy file.

This is the I/O side: it picks points and rows, streams them from the store into
:func:`neurometry.measures.run_measures`, saves the results in the catalog and prints or plots them.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from neurometry.commands.table import emit_json, print_table
from neurometry.errors import NeurometryError
from neurometry.measures import MEASURES, MeasureResult, get_measure, run_measures
from neurometry.store import Store, open_store

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


def _store_sources(store: Store, run: str | None, patterns: list[str] | None) -> tuple[str, list[Source]]:
    runs = store.runs()
    if run is None:
        if len(runs) != 1:
            names = ", ".join(r.run_id for r in runs) or "none"
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


def _npy_source(path: Path) -> Source:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise NeurometryError(f"cannot read {path} as a .npy array ({exc}); save it with numpy.save") from None
    if array.ndim < 2:
        raise NeurometryError(f"{path} has shape {array.shape}; measures need rows x features (reshape to (n, d))")
    step = max(1, (64 << 20) // max(1, array[:1].nbytes))

    def chunks():
        for lo in range(0, len(array), step):
            yield np.asarray(array[lo : lo + step])

    kind = "attention" if array.ndim == 3 else "vector"
    return Source(path.stem, kind, tuple(array.shape[1:]), chunks)


def _labels_file(path: Path) -> np.ndarray:
    """One label per row from a .npy file (for a .npy SOURCE, which has no metadata columns)."""
    try:
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise NeurometryError(f"cannot read labels from {path} ({exc}); save one label per row with numpy.save") from None
    if labels.ndim != 1:
        raise NeurometryError(f"labels in {path} have shape {labels.shape}; give one label per row (a 1-D array)")
    return labels


def _labels(src: Source, label: str | None) -> np.ndarray | None:
    if label is None:
        return None
    if src.metadata is None:
        raise NeurometryError("--label names a metadata column of a store; for a .npy file give --labels FILE.npy")
    if label not in src.metadata.columns:
        columns = ", ".join(c for c in src.metadata.columns if c not in ("row",))
        raise NeurometryError(f"no column {label!r} in the row metadata; columns are: {columns}")
    return src.metadata[label].to_numpy()


def _classifier(path: Path | None) -> tuple[np.ndarray, np.ndarray] | None:
    if path is None:
        return None
    from safetensors.numpy import load_file

    if not path.is_file():
        raise NeurometryError(f"classifier file {path} does not exist; give a .safetensors with W (and b)")
    tensors = load_file(str(path))
    if "W" not in tensors:
        raise NeurometryError(f"{path} has no tensor 'W' (classes x features); save W and b with safetensors")
    weights = tensors["W"]
    return weights, tensors.get("b", np.zeros(len(weights), dtype=weights.dtype))


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
) -> list[dict]:
    """Run the measures over each source; returns one record per (point, measure)."""
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
        results = run_measures(
            src.chunks, chosen,
            labels=label_values if any(MEASURES[n].kind == "labels" for n in chosen) else None,
            input_ids=input_ids if "rank_collapse" in chosen else None,
            classifier=classifier if {"nc3", "nc4"} & set(chosen) else None,
            other=prior.chunks if (prior is not None and "layer_cosine" in chosen) else None,
            seed=seed, max_rows=max_rows,
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


def print_results(records: list[dict]) -> None:
    """Points x measures (transposed when there are more measures than points), then any notes."""
    points = list(dict.fromkeys(r["point"] for r in records))
    names = list(dict.fromkeys(r["measure"] for r in records))
    values = {(r["point"], r["measure"]): r["value"] for r in records}

    def fmt(v: float | None) -> str:
        if v is None:
            return "-"
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"

    transpose = len(names) > len(points)
    rows, cols = (names, points) if transpose else (points, names)
    head = "measure" if transpose else "point"
    print_table([head] + cols, [[r] + [fmt(values.get((c, r) if transpose else (r, c))) for c in cols] for r in rows])
    notes = {r["note"] for r in records if r.get("note")}
    for note in sorted(notes):
        print(f"note: {note}")


def plot_profiles(records: list[dict], path: Path, title: str) -> Path:
    """Each measure against depth (the order points were measured in), one panel per measure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = list(dict.fromkeys(r["point"] for r in records))
    names = list(dict.fromkeys(r["measure"] for r in records))
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.7 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        pts = [r["point"] for r in records if r["measure"] == name]
        vals = [np.nan if r["value"] is None else r["value"] for r in records if r["measure"] == name]
        xs = [points.index(p) for p in pts]
        ax.plot(xs, vals, marker="o", ms=3)
        ax.set_title(name, fontsize=9)
        ax.set_xticks(xs)
        ax.set_xticklabels(pts, rotation=60, fontsize=6, ha="right")
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    if not path.parent.resolve().is_dir():
        raise NeurometryError(f"folder {path.parent} does not exist; create it first or choose another --plot")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def measure_store(
    store: Store,
    run: str | None = None,
    points: list[str] | None = None,
    measures: list[str] | None = None,
    label: str | None = None,
    plot: Path | None = None,
    classifier: Path | None = None,
    seed: int = 0,
    max_rows: int = 20000,
    progress: bool = True,
) -> list[dict]:
    """Measure points of one run of a store; results are saved in the catalog (kind 'measure')."""
    run, sources = _store_sources(store, run, points)
    meta = sources[0].metadata if sources else None
    label_values = _labels(sources[0], label) if sources else None
    input_ids = meta["input_row"].to_numpy() if meta is not None and "position" in meta.columns else None
    records = measure_sources(sources, measures, label_values=label_values, classifier=_classifier(classifier),
                              input_ids=input_ids, seed=seed, max_rows=max_rows, progress=progress)
    store.save_results("measure", [
        {"point": r["point"], "name": r["measure"], "params": {**r["params"], "label": label, "seed": seed},
         "value": r["value"], "extra": {k: v for k, v in r.items() if k not in ("point", "measure", "value", "params")}}
        for r in records
    ], run=run)
    if plot is not None and records:
        plot_profiles(records, plot, f"{store.path.name} · run {run}")
    return records


def cmd_measure(args: argparse.Namespace) -> None:
    if args.list:
        for name, m in MEASURES.items():
            print(f"{name:22s} {m.kind:10s} {m.doc}")
        return
    measures = [m.strip() for m in args.measures.split(",") if m.strip()] if args.measures else None
    source = Path(args.source)
    if source.suffix == ".npy":
        if not source.is_file():
            raise NeurometryError(f"no file {source}; give a store folder or a .npy array (rows x features)")
        src = _npy_source(source)
        labels = _labels_file(Path(args.labels)) if args.labels else None
        if args.label:
            raise NeurometryError("--label names a store metadata column; for a .npy source give --labels FILE.npy")
        records = measure_sources([src], measures, label_values=labels, classifier=_classifier(Path(args.classifier) if args.classifier else None),
                                  seed=args.seed, max_rows=args.max_rows, progress=not args.json)
        if args.plot:
            plot_profiles(records, Path(args.plot), source.name)
    else:
        if args.labels:
            raise NeurometryError("--labels FILE.npy is for a .npy SOURCE; for a store, name a metadata column with --label")
        store = open_store(source)
        records = measure_store(store, args.run, args.points, measures, args.label,
                                Path(args.plot) if args.plot else None,
                                Path(args.classifier) if args.classifier else None, args.seed, args.max_rows,
                                progress=not args.json)
    if args.json:
        emit_json({"results": records})
        return
    if not records:
        print("no measure applies to the chosen points; see `neurometry measure --list`")
        return
    print_results(records)
    if args.plot:
        print(f"plot: {args.plot}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("measure", help="geometry and neuron statistics per point")
    p.add_argument("source", nargs="?", default=None, help="a store folder or a .npy file (rows x features)")
    p.add_argument("--run", default=None)
    p.add_argument("--points", nargs="+", default=None, help="point names or globs (default: all of the run)")
    p.add_argument("--measures", default=None, help="comma-separated names, or 'all' (default: a standard set)")
    p.add_argument("--label", default=None, help="metadata column with class labels (neural collapse)")
    p.add_argument("--labels", default=None, help="for a .npy source: a .npy of one label per row")
    p.add_argument("--classifier", default=None, help="safetensors with W (classes x features) and b, for nc3/nc4")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-rows", type=int, default=20000, help="subsample size for neighbour estimators")
    p.add_argument("--plot", default=None, help="draw each measure against depth into FILE.png")
    p.add_argument("--list", action="store_true", help="list the measures and exit")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_checked)


def _checked(args: argparse.Namespace) -> None:
    if args.source is None and not args.list:
        raise NeurometryError("give a SOURCE: a store folder or a .npy file")
    cmd_measure(args)
