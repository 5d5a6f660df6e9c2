"""`neurometry import`: an array (.npy, .mat, .parquet) into a store, the counterpart of export."""

from __future__ import annotations

import argparse

from neurometry.cli.output import check_output_path, finish


def cmd_import(args: argparse.Namespace) -> None:
    from neurometry.store.importing import import_file

    check_output_path(args.out, folder=True)
    result = import_file(args.file, args.out, args.point, run=args.run, metadata=args.metadata, key=args.key)

    def show() -> None:
        shape = " x ".join(map(str, result.shape))
        variable = f"[{result.key!r}]" if result.key else ""
        print(f"imported {result.n_rows} rows x {shape} ({result.dtype}) from {args.file}{variable} into "
              f"{result.store}, run {result.run_id!r}, point {result.point!r}")
        for note in result.notes:
            print(f"note: {note}")
        print(f"next: neurometry ls {result.store}")

    finish(args, result.__dict__, show)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="bring an array (.npy, .mat, .parquet) into a store as a point of a new run")
    p.add_argument("file", help="FILE.npy, FILE.mat or FILE.parquet: rows x features (or rows x any shape)")
    p.add_argument("--point", required=True, help="name of the point to store the array as")
    p.add_argument("--out", required=True, help="store folder (created if missing)")
    p.add_argument("--metadata", default=None, help="ROWS.parquet or ROWS.csv: one row of labels per array row")
    p.add_argument("--run", default=None, help="run name (default: from the file name)")
    p.add_argument("--key", default=None, help="variable of a .mat file (default: its only numeric matrix)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_import)
