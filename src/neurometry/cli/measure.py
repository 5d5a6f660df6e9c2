"""`neurometry measure`: parse, call :mod:`neurometry.workflows.measure`, print."""

from __future__ import annotations

import argparse
from pathlib import Path

from neurometry.cli.output import add_device_arguments, check_output_path, finish, plots, whole_number
from neurometry.errors import NeurometryError
from neurometry.measures import MEASURES
from neurometry.store import open_store
from neurometry.tables.measure import print_measures
from neurometry.workflows.measure import (
    classifier_file,
    measure_sources,
    measure_store,
    npy_source,
    read_labels,
)


def cmd_measure(args: argparse.Namespace) -> None:
    if args.list:
        for name, m in MEASURES.items():
            print(f"{name:22s} {m.kind:10s} {m.doc}")
        return
    measures = [m.strip() for m in args.measures.split(",") if m.strip()] if args.measures else None
    if args.plot:
        check_output_path(args.plot, "--plot")
    source = Path(args.source)
    if source.suffix == ".npy":
        if not source.is_file():
            raise NeurometryError(f"no file {source}; give a store folder or a .npy array (rows x features)")
        src = npy_source(source)
        labels = read_labels(Path(args.labels)) if args.labels else None
        if args.label:
            raise NeurometryError("--label names a store metadata column; for a .npy source give --labels FILE.npy")
        classifier = classifier_file(Path(args.classifier) if args.classifier else None)
        records = measure_sources([src], measures, label_values=labels, classifier=classifier,
                                  seed=args.seed, max_rows=args.max_rows, progress=not args.json,
                                  device=args.device)
        title = source.name
    elif args.series is not None:
        return _measure_series(args, source, measures)
    else:
        if args.labels:
            raise NeurometryError("--labels FILE.npy is for a .npy SOURCE; for a store, name a metadata column with --label")
        store = open_store(source)
        records = measure_store(store, args.run, args.points, measures, args.label,
                                Path(args.classifier) if args.classifier else None, args.seed, args.max_rows,
                                progress=not args.json, device=args.device)
        title = f"{store.path.name} · run {args.run or store.runs()[0].run_id}"
    if not records and not args.json:
        print("no measure applies to the chosen points; see `neurometry measure --list`")
        return
    figure = (lambda: plots().plot_profiles(records, title)) if records else None
    finish(args, {"results": records}, lambda: print_measures(records), figure)


def _measure_series(args: argparse.Namespace, source: Path, measures: list[str] | None) -> None:
    from neurometry.tables.training import print_series_measures
    from neurometry.workflows.series import measure_series

    if args.run or args.labels or args.classifier:
        raise NeurometryError("--series measures every run of the series; leave out --run, --labels and --classifier")
    store = open_store(source)
    records = measure_series(store, args.series, args.points, measures, args.label, args.seed, args.max_rows,
                             progress=not args.json, device=args.device)
    title = f"{store.path.name} · series {args.series}"
    finish(args, {"series": args.series, "results": records}, lambda: print_series_measures(records),
           lambda: plots().plot_series_measures(records, title))


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("measure", help="geometry and neuron statistics per point")
    p.add_argument("source", nargs="?", default=None, help="a store folder or a .npy file (rows x features)")
    p.add_argument("--run", default=None)
    p.add_argument("--series", default=None, help="measure every step of a series (one run per checkpoint)")
    p.add_argument("--points", nargs="+", default=None, help="point names or globs (default: all of the run)")
    p.add_argument("--measures", default=None, help="comma-separated names, or 'all' (default: a standard set)")
    p.add_argument("--label", default=None, help="metadata column with class labels (neural collapse)")
    p.add_argument("--labels", default=None, help="for a .npy source: a .npy of one label per row")
    p.add_argument("--classifier", default=None, help="safetensors with W (classes x features) and b, for nc3/nc4")
    p.add_argument("--seed", type=whole_number(0), default=0)
    p.add_argument("--max-rows", type=int, default=20000, help="subsample size for neighbour estimators")
    add_device_arguments(p, model_dtype=False, what="the covariance and kNN linear algebra")
    p.add_argument("--plot", default=None,
                   help="draw each measure against depth (with --series: step x depth heatmaps and curves) into FILE.png")
    p.add_argument("--list", action="store_true", help="list the measures and exit")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_checked)


def _checked(args: argparse.Namespace) -> None:
    if args.source is None and not args.list:
        raise NeurometryError("give a SOURCE: a store folder or a .npy file")
    cmd_measure(args)

