"""`neurometry probe` and `neurometry encode`: parse, call :mod:`neurometry.workflows.probe`, print."""

from __future__ import annotations

import argparse
from pathlib import Path

from neurometry.cli.output import (
    add_device_arguments,
    check_output_path,
    finish,
    parse_numbers,
    plots,
    whole_number,
)
from neurometry.tables.probe import print_encode, print_probe
from neurometry.workflows.probe import run_encode, run_probe


def cmd_probe(args: argparse.Namespace) -> None:
    ks = parse_numbers(args.k, "--k", int, minimum=1) if args.k else None
    if args.plot:
        check_output_path(args.plot, "--plot")
    if args.save_directions:
        check_output_path(args.save_directions, "--save-directions", folder=True)
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
        device=args.device,
    )
    title = f"{Path(args.source).name}: {args.label or args.labels}"
    finish(args, document, lambda: print_probe(document), lambda: plots().plot_probe(document, title))


def cmd_encode(args: argparse.Namespace) -> None:
    if args.plot:
        check_output_path(args.plot, "--plot")
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
        device=args.device,
    )
    title = f"{Path(args.source).name}: encoding {len(document['targets'])} targets"
    finish(args, document, lambda: print_encode(document), lambda: plots().plot_encode(document, title))


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
    p.add_argument("--seed", type=whole_number(0), default=0)
    p.add_argument("--control", action="store_true", help="control task per token type (Hewitt & Liang 2019)")
    p.add_argument(
        "--save-directions", metavar="DIR", help="write each point's direction as safetensors + JSON"
    )
    p.add_argument(
        "--direction-method", default="mean_difference", choices=["mean_difference", "lda", "probe"]
    )
    add_device_arguments(p, model_dtype=False, what="the linear algebra of --direction-method lda")
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
    p.add_argument("--seed", type=whole_number(0), default=0)
    p.add_argument(
        "--reliability",
        metavar="REPEATS.npy",
        help="repeated measurements (repeats x rows x targets): normalise r by split-half reliability",
    )
    add_device_arguments(p, model_dtype=False, what="the ridge fits")
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", metavar="FILE.png")
    p.set_defaults(func=cmd_encode)

