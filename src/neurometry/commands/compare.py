"""`neurometry compare A B`: a similarity metric between every point of A and every point of B.

This is the I/O side of :mod:`neurometry.compare`: it turns stores (with point globs), .npy arrays and
precomputed RDMs (.npy / .mat) into named representations, calls :func:`compare_matrix`, prints a
table or one JSON document, saves the results in A's store and draws a heatmap or depth profile.
"""

from __future__ import annotations

import argparse
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurometry.commands.table import emit_json, print_table
from neurometry.compare.matrix import compare_matrix
from neurometry.compare.rdm import RDM, is_rdm_array, load_rdms
from neurometry.compare.registry import get_metric
from neurometry.errors import NeurometryError
from neurometry.store import open_store
from neurometry.store.store import is_store

# CLI flag -> metric parameter; only flags the user gives are passed on
METRIC_OPTIONS = {
    "kernel": "kernel",
    "estimator": "estimator",
    "bandwidth": "bandwidth",
    "batch_size": "batch_size",
    "rdm": "rdm",
    "compare": "compare",
    "alpha": "alpha",
    "k": "k",
    "keep": "keep",
    "folds": "folds",
    "direction": "direction",
}


@dataclass
class Side:
    """One side of a comparison: named representations, and the store they came from (if any)."""

    label: str
    reps: dict[str, Any]
    store: Any = None
    run: str | None = None
    subjects: list[RDM] = field(default_factory=list)


def _select(names: list[str], patterns: list[str] | None, where: str) -> list[str]:
    if not patterns:
        return names
    for pat in patterns:
        if not any(fnmatch.fnmatchcase(n, pat) for n in names):
            raise NeurometryError(f"no point matches {pat!r} in {where}; it has: {', '.join(names[:12])}")
    return [n for n in names if any(fnmatch.fnmatchcase(n, pat) for pat in patterns)]


def load_side(
    source: str, patterns: list[str] | None, run: str | None, rdm_key: str | None, label: str
) -> Side:
    """A store (points by glob, one run), a .npy (activations or RDMs) or a .mat (RDMs under ``rdm_key``)."""
    path = Path(source)
    if not path.exists():
        raise NeurometryError(f"{source} does not exist; give a store, a .npy array or a .mat file of RDMs")
    if path.is_dir():
        if not is_store(path):
            raise NeurometryError(f"{source} is a folder but not a neurometry store; record into it first")
        store = open_store(path)
        runs = [r.run_id for r in store.runs()]
        if run is None:
            if len(runs) != 1:
                raise NeurometryError(
                    f"{source} holds runs {', '.join(runs) or 'none'}; choose one with --run-{label.lower()}"
                )
            run = runs[0]
        points = [p.point for p in store.points(run)]
        chosen = _select(points, patterns, f"{source} (run {run})")
        reps = {name: store.activations(name, run=run) for name in chosen}
        return Side(label, reps, store, run)
    if path.suffix == ".mat":
        rdms = load_rdms(path, rdm_key)
    elif path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise NeurometryError(
                f"cannot read {path} as a .npy array ({exc}); save it with numpy.save"
            ) from None
        if not is_rdm_array(array):
            if array.ndim < 2:
                raise NeurometryError(f"{path} has shape {array.shape}; give stimuli x features (or an RDM)")
            _select([path.stem], patterns, source)
            return Side(label, {path.stem: array})
        rdms = load_rdms(path)
    else:
        raise NeurometryError(f"{source}: unknown file type; give a store folder, a .npy or a .mat file")
    names = _select(list(rdms), patterns, source)
    return Side(label, {n: rdms[n] for n in names})


def run_compare(
    source_a: str,
    source_b: str | None,
    metric: str,
    *,
    points_a: list[str] | None = None,
    points_b: list[str] | None = None,
    run_a: str | None = None,
    run_b: str | None = None,
    rdm_key: str | None = None,
    subjects: bool = False,
    permutations: int = 0,
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
    progress: bool = True,
    **params: Any,
) -> dict[str, Any]:
    """Load both sides, compare every pair, save the results in A's store; returns the JSON document."""
    m = get_metric(metric)
    a = load_side(source_a, points_a, run_a, rdm_key, "A")
    source_b = source_b or source_a
    if run_b is None and Path(source_b).resolve() == Path(source_a).resolve():
        run_b = a.run  # the same store: the same run unless told otherwise
    same = (
        Path(source_b).resolve() == Path(source_a).resolve()
        and points_b in (None, points_a)
        and run_b in (None, run_a, a.run)
    )
    b = a if same else load_side(source_b, points_b, run_b, rdm_key, "B")
    ceiling = None
    if subjects:
        ceiling, b = _pool_subjects(b, m.name, params)
    results = compare_matrix(
        a.reps,
        None if b is a else b.reps,
        m.name,
        permutations=permutations,
        bootstrap=bootstrap,
        confidence=confidence,
        seed=seed,
        progress=progress,
        **params,
    )
    records = [r.to_dict() for r in results]
    if a.store is not None:
        a.store.save_results(
            "compare",
            [
                {
                    "point": r.point_a,
                    "name": r.metric,
                    "value": r.value,
                    "params": {**r.params, "point_b": r.point_b, "source_b": str(source_b), "seed": seed},
                    "extra": {
                        k: getattr(r, k)
                        for k in ("p_value", "null_mean", "ci_low", "ci_high", "n_stimuli", "note")
                    },
                }
                for r in results
            ],
            run=a.run,
        )
    document: dict[str, Any] = {"results": records}
    if ceiling is not None:
        document["noise_ceiling"] = ceiling
    return document


def _pool_subjects(side: Side, metric: str, params: dict[str, Any]) -> tuple[dict[str, Any], Side]:
    """B's RDMs are subjects of one region: compare against their pooled RDM, with its noise ceiling."""
    from neurometry.compare.rdm_comparison import noise_ceiling, pool_rdms

    if metric != "rsa":
        raise NeurometryError("--subjects pools subject RDMs, so it needs --metric rsa")
    rdms = [r for r in side.reps.values() if isinstance(r, RDM)]
    if len(rdms) != len(side.reps) or len(rdms) < 2:
        raise NeurometryError(
            "--subjects needs B to be two or more subject RDMs (a stacked .npy or a .mat key)"
        )
    method = params.get("compare", get_metric("rsa").params["compare"])
    lower, upper = noise_ceiling(rdms, method=method)
    pooled = pool_rdms(rdms, method=method)
    name = f"pooled({len(rdms)} subjects)"
    return {"point_b": name, "lower": lower, "upper": upper, "subjects": len(rdms), "compare": method}, Side(
        side.label, {name: pooled}
    )


def print_results(document: dict[str, Any]) -> None:
    """A points x points grid when there is nothing but values, else one line per pair."""
    records = document["results"]
    rows_a = list(dict.fromkeys(r["point_a"] for r in records))
    cols_b = list(dict.fromkeys(r["point_b"] for r in records))
    has_stats = any(r["p_value"] is not None or r["ci_low"] is not None for r in records)
    metric = records[0]["metric"] if records else ""
    if not has_stats and len(rows_a) > 1 and len(cols_b) > 1:
        value = {(r["point_a"], r["point_b"]): r["value"] for r in records}
        print_table(
            [f"{metric}: A \\ B", *cols_b],
            [[pa, *(f"{value[pa, pb]:.4f}" for pb in cols_b)] for pa in rows_a],
        )
    elif has_stats and len(rows_a) > 1 and 1 < len(cols_b) <= 4:
        # a profile against a few targets (e.g. brain regions): one column per target, statistics inline
        by_pair = {(r["point_a"], r["point_b"]): r for r in records}
        print_table(
            [f"{metric}: A \\ B", *cols_b],
            [[pa, *(_cell(by_pair[pa, pb]) for pb in cols_b)] for pa in rows_a],
        )
        print("cells: value [bootstrap interval] p (permutation test); * p < 0.05")
    else:
        headers = ["point A", "point B", metric]
        if any(r["p_value"] is not None for r in records):
            headers += ["p", "null mean"]
        if any(r["ci_low"] is not None for r in records):
            headers += ["CI low", "CI high"]
        rows = []
        for r in records:
            row = [r["point_a"], r["point_b"], f"{r['value']:.4f}"]
            if "p" in headers:
                row += [f"{r['p_value']:.4g}", f"{r['null_mean']:.4f}"]
            if "CI low" in headers:
                row += [f"{r['ci_low']:.4f}", f"{r['ci_high']:.4f}"]
            rows.append(row)
        print_table(headers, rows)
    ceiling = document.get("noise_ceiling")
    if ceiling:
        print(
            f"\nnoise ceiling of {ceiling['point_b']} ({ceiling['compare']}): "
            f"lower {ceiling['lower']:.4f}, upper {ceiling['upper']:.4f}"
        )
    notes = sorted({r["note"] for r in records if r.get("note")})
    for note in notes:
        print(f"note: {note}")


def _cell(r: dict[str, Any]) -> str:
    text = f"{r['value']:.4f}"
    if r["ci_low"] is not None:
        text += f" [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
    if r["p_value"] is not None:
        text += f" p={r['p_value']:.3g}{'*' if r['p_value'] < 0.05 else ''}"
    return text


def plot_results(
    document: dict[str, Any], path: Path, title: str, reference: tuple[str, float] | None = None
) -> None:
    """Heatmap for a layer x layer matrix; a profile across depth (with CI bands) when one side is short.
    ``reference``: (label, value) drawn as a dashed line on a profile, e.g. the agreement of two brains."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = document["results"]
    rows_a = list(dict.fromkeys(r["point_a"] for r in records))
    cols_b = list(dict.fromkeys(r["point_b"] for r in records))
    metric = _describe(records[0])
    if min(len(rows_a), len(cols_b)) > 4:
        grid = np.array(
            [
                [
                    next(r["value"] for r in records if r["point_a"] == pa and r["point_b"] == pb)
                    for pb in cols_b
                ]
                for pa in rows_a
            ]
        )
        fig, ax = plt.subplots(figsize=(max(6.0, 2.0 + 0.3 * len(cols_b)), max(5.0, 1.5 + 0.3 * len(rows_a))))
        image = ax.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
        if grid.size <= 144:  # small enough to read the numbers
            middle = (np.nanmax(grid) + np.nanmin(grid)) / 2
            for (i, j), v in np.ndenumerate(grid):
                color = "black" if v > middle else "white"
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color=color)
        ax.set_xticks(range(len(cols_b)), cols_b, rotation=90, fontsize=7)
        ax.set_yticks(range(len(rows_a)), rows_a, fontsize=7)
        ax.set_xlabel("B")
        ax.set_ylabel("A")
        fig.colorbar(image, ax=ax, label=metric)
    else:
        long_side, short_side, key_long, key_short = (
            (rows_a, cols_b, "point_a", "point_b")
            if len(rows_a) >= len(cols_b)
            else (cols_b, rows_a, "point_b", "point_a")
        )
        fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(long_side)), 4))
        x = np.arange(len(long_side))
        for short in short_side:
            sel = {r[key_long]: r for r in records if r[key_short] == short}
            ys = np.array([sel[p]["value"] for p in long_side])
            (line,) = ax.plot(x, ys, marker="o", label=short)
            if all(sel[p]["ci_low"] is not None for p in long_side):
                ax.fill_between(
                    x,
                    [sel[p]["ci_low"] for p in long_side],
                    [sel[p]["ci_high"] for p in long_side],
                    color=line.get_color(),
                    alpha=0.2,
                )
            if all(sel[p]["p_value"] is not None for p in long_side):
                sig = np.array([sel[p]["p_value"] < 0.05 for p in long_side])
                ax.plot(x[sig], ys[sig], "*", color=line.get_color(), markersize=10)
        if reference is not None:
            ax.axhline(reference[1], color="grey", linestyle="--", label=reference[0])
        ceiling = document.get("noise_ceiling")
        if ceiling:
            ax.axhspan(ceiling["lower"], ceiling["upper"], color="grey", alpha=0.25, label="noise ceiling")
        ax.set_xticks(x, long_side, rotation=60, fontsize=8, ha="right")
        ax.set_ylabel(metric)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _describe(record: dict[str, Any]) -> str:
    """The metric with the parameters that change its meaning, for axis labels."""
    params = record["params"]
    if record["metric"] == "rsa":
        return f"rsa ({params['rdm']} RDMs, {params['compare']})"
    if record["metric"] == "cka":
        return f"cka ({params['kernel']}, {params['estimator']})"
    if record["metric"] == "procrustes":
        return f"procrustes distance (alpha {params['alpha']})"
    return record["metric"]


def cmd_compare(args: argparse.Namespace) -> None:
    params = {
        param: getattr(args, flag)
        for flag, param in METRIC_OPTIONS.items()
        if getattr(args, flag) is not None
    }
    try:
        document = run_compare(
            args.a,
            args.b,
            args.metric,
            points_a=args.points_a,
            points_b=args.points_b,
            run_a=args.run_a,
            run_b=args.run_b,
            rdm_key=args.rdm_key,
            subjects=args.subjects,
            permutations=args.permutations,
            bootstrap=args.bootstrap,
            confidence=args.confidence,
            seed=args.seed,
            progress=not args.json,
            **params,
        )
    except NeurometryError as exc:
        message = str(exc)
        for flag, param in METRIC_OPTIONS.items():  # speak in flags, not parameter names
            message = message.replace(
                f"unknown parameter {param!r}", f"option --{flag.replace('_', '-')} does not apply"
            )
        raise NeurometryError(message) from None
    if args.plot is not None:
        title = f"{args.metric}: {Path(args.a).name} vs {Path(args.b or args.a).name}"
        plot_results(document, Path(args.plot), title)
    if args.json:
        emit_json(document)
        return
    print_results(document)
    if args.plot is not None:
        print(f"wrote {args.plot}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="similarity of representations: CKA, RSA, shape metrics, CCA, neighbours, predictivity",
        description="Compare every point of A with every point of B (A with itself when B is omitted).",
    )
    p.add_argument("a", help="store, .npy (stimuli x features, or RDMs) or .mat of RDMs")
    p.add_argument(
        "b", nargs="?", help="the same kinds; omitted: A against itself (self-similarity across depth)"
    )
    p.add_argument(
        "--metric",
        required=True,
        help="cka, rsa, procrustes, permutation, cca, svcca, pwcca, "
        "mutual_knn, cknna, cycle_knn, linear_predictivity",
    )
    p.add_argument("--points-a", nargs="+", metavar="GLOB", help="points of store A (default: all)")
    p.add_argument("--points-b", nargs="+", metavar="GLOB", help="points of store B, or names of B's RDMs")
    p.add_argument("--run-a", help="run of store A when it holds several")
    p.add_argument("--run-b", help="run of store B when it holds several")
    p.add_argument("--rdm-key", help="variable of a .mat file that holds the RDMs")
    p.add_argument(
        "--subjects",
        action="store_true",
        help="B's RDMs are subjects of one region: compare with their pooled RDM and report the noise ceiling",
    )
    p.add_argument("--permutations", type=int, default=0, metavar="N", help="permutation test over stimuli")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N", help="bootstrap interval over stimuli")
    p.add_argument("--confidence", type=float, default=0.95, help="bootstrap interval level (default 0.95)")
    p.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("metric options (each applies to the metrics named)")
    g.add_argument("--kernel", choices=["linear", "rbf"], help="cka kernel (default linear)")
    g.add_argument(
        "--estimator", choices=["biased", "unbiased", "minibatch"], help="cka HSIC estimator (default biased)"
    )
    g.add_argument(
        "--bandwidth", type=float, help="cka rbf bandwidth, a fraction of the median distance (default 1)"
    )
    g.add_argument("--batch-size", type=int, help="cka minibatch size")
    g.add_argument("--rdm", help="rsa RDM method: correlation, cosine, euclidean, sqeuclidean, mahalanobis")
    g.add_argument("--compare", help="rsa RDM comparison: spearman, pearson, kendall_tau_a, cosine, corr_cov")
    g.add_argument("--alpha", type=float, help="procrustes partial whitening in [0, 1] (1: none, 0: full)")
    g.add_argument("--k", type=int, help="neighbours for mutual_knn, cknna, cycle_knn")
    g.add_argument("--keep", type=float, help="svcca variance kept (default 0.99)")
    g.add_argument("--folds", type=int, help="linear_predictivity cross-validation folds")
    g.add_argument("--direction", choices=["a_to_b", "b_to_a", "mean"], help="linear_predictivity direction")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    p.add_argument("--plot", metavar="FILE.png", help="heatmap (layer x layer) or profile across depth")
    p.set_defaults(func=cmd_compare)
