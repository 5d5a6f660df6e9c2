"""`neurometry ls`: runs, points and saved results of a store."""

from __future__ import annotations

import argparse

from neurometry.tables.text import emit_json, print_table


def cmd_ls(args: argparse.Namespace) -> None:
    from neurometry.store import open_store
    from neurometry.store.results import listing

    store = open_store(args.store)
    runs = store.runs()
    points = store.points()
    if args.json:
        emit_json({
            "runs": [dict(r.__dict__) for r in runs],
            "points": [p.__dict__ for p in points],
            "results": listing(store).to_dict(orient="records"),
        }, indent=2)
        return
    if not runs:
        print(f"{store.path}: empty store")
        return
    print_table(
        ["run", "model", "reduce", "dtype", "rows", "inputs", "status"],
        [[r.run_id, r.model, r.reduce, r.dtype, f"{r.committed_rows}/{r.n_rows}", f"{r.committed_inputs}/{r.n_inputs}",
          r.status] for r in runs],
    )
    print()
    print_table(["run", "point", "kind", "shape", "dtype", "rows"],
                 [[p.run_id, p.point, p.kind, " x ".join(map(str, p.shape)), p.dtype, p.n_rows] for p in points])
    results = listing(store)
    if len(results):
        print()
        print_table(["run", "results", "set", "points", "records"],
                    [[r.run_id, r.kind, r.result_set or "-", r.points, r.records] for r in results.itertuples()])


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ls", help="runs, points, shapes and row counts of a store")
    p.add_argument("store")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ls)
