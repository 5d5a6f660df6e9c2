"""`neurometry probe` and `neurometry encode`: probes and encoding models, point by point.

The I/O side of :mod:`neurometry.probe`: picks points of a store (or a .npy array), labels or targets
from the store's row metadata or from files, keeps the rows of one input in one fold (token runs),
saves results in the catalog and prints, plots or writes one JSON document.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from neurometry.commands.measure import Source, _labels, _labels_file, _npy_source, _store_sources
from neurometry.commands.table import emit_json, print_table
from neurometry.errors import NeurometryError
from neurometry.store import open_store


def _sources(source: str, run: str | None, points: list[str] | None) -> tuple[list[Source], Any, str | None]:
    """(sources, store or None, run) for a store folder or a .npy array."""
    path = Path(source)
    if path.suffix == ".npy":
        if not path.is_file():
            raise NeurometryError(f"no file {path}; give a store folder or a .npy array (rows x features)")
        return [_npy_source(path)], None, None
    if not path.is_dir():
        raise NeurometryError(
            f"{source} does not exist; give a store folder or a .npy array (rows x features)"
        )
    store = open_store(path)
    run, sources = _store_sources(store, run, points)
    return sources, store, run


def _read_rows(src: Source) -> np.ndarray:
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
        return _labels_file(Path(labels_file))
    return _labels(sources[0], label)


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
) -> dict[str, Any]:
    """Probe every chosen point; returns ``{"results": [...]}`` and saves them in the store."""
    from neurometry.probe import probe, selectivity, sparse_probe

    sources, store, run = _sources(source, run, points)
    y = _label_values(sources, label, labels_file)
    records = []
    for src in tqdm(sources, desc="probe", unit="point", file=sys.stderr, disable=not progress, delay=1.0):
        x = _read_rows(src)
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
                _save_direction(x, y, src, directions, direction_method, store, run)
            )
        records.append(record)
    if store is not None:
        store.save_results(
            "probe",
            [
                {
                    "point": r["point"],
                    "name": f"{r['kind']}" + (f"@k={r['k']}" if r.get("k") else ""),
                    "value": r["score"],
                    "params": {"label": label, "folds": folds, "seed": seed, "kind": kind},
                    "extra": {k: v for k, v in r.items() if k not in ("point", "score")},
                }
                for r in records
            ],
            run=run,
        )
    return {"results": records}


def _save_direction(
    x: np.ndarray, y: np.ndarray, src: Source, folder: str, method: str, store: Any, run: str | None
) -> Path:
    from neurometry.probe import direction, save_direction

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    vector = direction(x, y, method)
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
        try:
            values = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise NeurometryError(
                f"cannot read {path} as a .npy array ({exc}); save it with numpy.save"
            ) from None
        values = values.reshape(len(values), -1)
        if len(values) != n_rows:
            raise NeurometryError(
                f"{path} has {len(values)} rows of targets for {n_rows} rows of activations; "
                "give one row per stimulus, in the same order (or a table with --id-column)"
            )
        return _numeric(pd.DataFrame(values), str(path)), [f"t{i}" for i in range(values.shape[1])]
    table = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
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
) -> dict[str, Any]:
    """Encoding model of the targets from every chosen point; ``{"results": [...], "best_points": [...]}``."""
    from neurometry.probe import best_points, encode, split_half_reliability

    sources, store, run = _sources(source, run, points)
    y, names = None, []
    ceiling = None
    if reliability is not None:
        repeats = np.load(reliability, allow_pickle=False)
        ceiling = split_half_reliability(repeats, seed=seed)
    results, records = {}, []
    for src in tqdm(sources, desc="encode", unit="point", file=sys.stderr, disable=not progress, delay=1.0):
        x = _read_rows(src)
        if y is None:  # aligned with the rows of the first point read (every point has the same rows)
            y, names = _targets(sources, targets, target_columns, id_column, len(x))
        result = encode(x, y, folds=folds, inner_folds=folds, seed=seed, groups=_groups(src), ceiling=ceiling)
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
        store.save_results(
            "encode",
            [
                {
                    "point": r["point"],
                    "name": "encoding",
                    "value": r["score"],
                    "params": {"targets": targets or target_columns, "folds": folds, "seed": seed},
                    "extra": {k: v for k, v in r.items() if k not in ("point", "score")},
                }
                for r in records
            ],
            run=run,
        )
    return {"results": records, "targets": names, "best_points": best}


def print_probe(document: dict[str, Any]) -> None:
    records = document["results"]
    if records and records[0]["kind"] == "sparse":
        ks = sorted({r["k"] for r in records})
        points = list(dict.fromkeys(r["point"] for r in records))
        score = {(r["point"], r["k"]): r["score"] for r in records}
        print_table(
            ["point", *[f"k={k}" for k in ks]],
            [[p, *(f"{score[p, k]:.3f}" if (p, k) in score else "-" for k in ks)] for p in points],
        )
        top = {r["point"]: r["units"] for r in records if r["k"] == 1}
        print("best single units: " + ", ".join(f"{p}: {u[0]}" for p, u in top.items() if u))
        return
    headers = ["point", "kind", "score", "95% CI", "baseline"]
    control = any("selectivity" in r for r in records)
    if control:
        headers += ["control", "selectivity"]
    rows = []
    for r in records:
        row = [
            r["point"],
            r["kind"],
            f"{r['score']:.4f}",
            f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
            f"{r['baseline']:.4f}",
        ]
        if control:
            row += [f"{r['control_score']:.4f}", f"{r['selectivity']:.4f}"]
        rows.append(row)
    print_table(headers, rows)


def print_encode(document: dict[str, Any]) -> None:
    rows = [
        [r["point"], f"{r['score']:.4f}", f"{r['median_r']:.4f}", f"{np.max(r['target_scores']):.4f}"]
        for r in document["results"]
    ]
    print_table(["point", "mean r", "median r", "max r"], rows)
    counts = pd.Series(document["best_points"]).value_counts()
    print("best point per target: " + ", ".join(f"{p} ({n})" for p, n in counts.items()))


def plot_probe(document: dict[str, Any], path: Path, title: str) -> None:
    """Score against depth with its interval and the baseline; sparse probes: score against k per point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = document["results"]
    fig, ax = plt.subplots(figsize=(7, 4))
    if records and records[0]["kind"] == "sparse":
        for point in dict.fromkeys(r["point"] for r in records):
            sel = [r for r in records if r["point"] == point]
            ax.plot([r["k"] for r in sel], [r["score"] for r in sel], marker="o", ms=3, label=point)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("units kept (k)")
        ax.legend(fontsize=7, ncol=2)
    else:
        x = np.arange(len(records))
        ax.plot(x, [r["score"] for r in records], marker="o", label="probe")
        ax.fill_between(x, [r["ci_low"] for r in records], [r["ci_high"] for r in records], alpha=0.2)
        ax.plot(x, [r["baseline"] for r in records], linestyle="--", color="grey", label="baseline")
        if any("control_score" in r for r in records):
            ax.plot(x, [r["control_score"] for r in records], linestyle=":", label="control task")
        ax.set_xticks(x, [r["point"] for r in records], rotation=60, fontsize=7, ha="right")
        ax.legend(fontsize=8)
    ax.set_ylabel("held-out accuracy" if records and records[0]["kind"] != "ridge" else "held-out R^2")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_encode(document: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = document["results"]
    x = np.arange(len(records))
    fig, ax = plt.subplots(figsize=(7, 4))
    scores = [np.asarray(r["target_scores"]) for r in records]
    ax.plot(x, [s.mean() for s in scores], marker="o", label="mean r")
    ax.fill_between(
        x,
        [np.percentile(s, 25) for s in scores],
        [np.percentile(s, 75) for s in scores],
        alpha=0.2,
        label="targets' interquartile range",
    )
    ax.set_xticks(x, [r["point"] for r in records], rotation=60, fontsize=7, ha="right")
    ax.set_ylabel("held-out Pearson r")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def cmd_probe(args: argparse.Namespace) -> None:
    ks = [int(k) for k in args.k.split(",")] if args.k else None
    document = run_probe(
        args.source,
        label=args.label,
        labels_file=args.labels,
        points=args.points,
        run=args.run,
        kind=args.kind,
        ks=ks,
        rank_by=args.rank_by,
        folds=args.folds,
        seed=args.seed,
        control=args.control,
        directions=args.save_directions,
        direction_method=args.direction_method,
        progress=not args.json,
    )
    if args.plot:
        plot_probe(document, Path(args.plot), f"{Path(args.source).name}: {args.label or args.labels}")
    if args.json:
        emit_json(document)
        return
    print_probe(document)
    if args.plot:
        print(f"wrote {args.plot}")


def cmd_encode(args: argparse.Namespace) -> None:
    document = run_encode(
        args.source,
        targets=args.targets,
        target_columns=args.target_columns,
        id_column=args.id_column,
        points=args.points,
        run=args.run,
        folds=args.folds,
        seed=args.seed,
        reliability=args.reliability,
        progress=not args.json,
    )
    if args.plot:
        plot_encode(
            document,
            Path(args.plot),
            f"{Path(args.source).name}: encoding {len(document['targets'])} targets",
        )
    if args.json:
        emit_json(document)
        return
    print_encode(document)
    if args.plot:
        print(f"wrote {args.plot}")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="linear, sparse and control-task probes of a label, point by point")
    p.add_argument("source", help="store folder or .npy array (rows x features)")
    p.add_argument("--label", help="metadata column of the store holding the label")
    p.add_argument("--labels", help=".npy file with one label per row (for a .npy source)")
    p.add_argument("--points", nargs="+", metavar="GLOB", help="points (default: all of the run)")
    p.add_argument("--run", help="run of the store when it holds several")
    p.add_argument(
        "--kind",
        default="auto",
        choices=["auto", "logistic", "ridge", "sparse"],
        help="auto: logistic for categories, ridge for numbers",
    )
    p.add_argument("--k", help="sparse probes: units kept, e.g. 1,2,4,8 (default powers of two)")
    p.add_argument("--rank-by", default="f_statistic", choices=["f_statistic", "mean_difference"])
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--control", action="store_true", help="control task per token type (Hewitt & Liang 2019)")
    p.add_argument(
        "--save-directions", metavar="DIR", help="write each point's direction as safetensors + JSON"
    )
    p.add_argument(
        "--direction-method", default="mean_difference", choices=["mean_difference", "lda", "probe"]
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", metavar="FILE.png")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("encode", help="ridge encoding models from each point to many targets (e.g. neurons)")
    p.add_argument("source", help="store folder or .npy array (rows x features)")
    p.add_argument(
        "--targets", help=".npy (rows x targets), or .csv/.parquet (numeric columns; align with --id-column)"
    )
    p.add_argument("--target-columns", nargs="+", metavar="COL", help="numeric metadata columns of the store")
    p.add_argument(
        "--id-column", help="column present in the targets table and the store metadata, to align rows"
    )
    p.add_argument("--points", nargs="+", metavar="GLOB")
    p.add_argument("--run")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--reliability",
        metavar="REPEATS.npy",
        help="repeated measurements (repeats x rows x targets): normalise r by split-half reliability",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", metavar="FILE.png")
    p.set_defaults(func=cmd_encode)
