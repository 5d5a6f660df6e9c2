"""`neurometry export`: one point out as .npy with its row metadata."""

from __future__ import annotations

import argparse

from neurometry.cli.output import check_output_path, finish


def cmd_export(args: argparse.Namespace) -> None:
    from neurometry.store import open_store
    from neurometry.store.export import export_point

    store = open_store(args.store)
    check_output_path(args.out)
    written = export_point(store, args.point, args.out, run=args.run, meta_format=args.meta)
    finish(args, {"files": [str(p) for p in written]}, lambda: None, wrote=written)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write one point to .npy, with its row metadata beside it")
    p.add_argument("store")
    p.add_argument("--point", required=True)
    p.add_argument("--run", default=None)
    p.add_argument("--out", required=True, help="FILE.npy")
    p.add_argument("--meta", choices=["parquet", "csv"], default="parquet", help="format of the metadata file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)
