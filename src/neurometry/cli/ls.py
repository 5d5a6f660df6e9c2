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
    series = {name: store.series(name) for name in store.series_names()}
    if args.json:
        emit_json({
            "runs": [dict(r.__dict__) for r in runs],
            "points": [p.__dict__ for p in points],
            "series": {name: [s.__dict__ for s in steps] for name, steps in series.items()},
            "results": listing(store).to_dict(orient="records"),
        }, indent=2)
        return
    if not runs:
        print(f"{store.path}: empty store")
        return
    # a series of many checkpoints is one line here, and its points are listed once (its last run's)
    in_series = {s.run_id: name for name, steps in series.items() for s in steps}
    shown = {steps[-1].run_id for steps in series.values()}
    outside = [r for r in runs if r.run_id not in in_series]
    if outside:
        print_table(
            ["run", "model", "reduce", "dtype", "rows", "inputs", "status"],
            [[r.run_id, r.model, r.reduce, r.dtype, f"{r.committed_rows}/{r.n_rows}",
              f"{r.committed_inputs}/{r.n_inputs}", r.status] for r in outside],
        )
    if series:
        if outside:
            print()
        print_table(["series", "checkpoints", "steps", "runs"],
                    [[name, len(steps), f"{steps[0].step}..{steps[-1].step}",
                      steps[0].run_id if len(steps) == 1 else f"{steps[0].run_id} .. {steps[-1].run_id}"]
                     for name, steps in series.items()])
    print()
    print_table(["run", "point", "kind", "shape", "dtype", "rows"],
                 [[f"{p.run_id} (series {in_series[p.run_id]})" if p.run_id in in_series else p.run_id, p.point,
                   p.kind, " x ".join(map(str, p.shape)), p.dtype, p.n_rows]
                  for p in points if p.run_id not in in_series or p.run_id in shown])
    results = listing(store)
    if len(results):
        # a series' results are one line per (kind, set) with how many of its steps hold them
        results = results.assign(run_id=[f"series {in_series[r]} ({{}})" if r in in_series else r
                                         for r in results["run_id"]])
        grouped = results.groupby(["run_id", "kind", "result_set"], sort=False).agg(
            steps=("points", "size"), points=("points", "max"), records=("records", "sum")).reset_index()
        print()
        print_table(["run", "results", "set", "points", "records"],
                    [[r.run_id.format(f"{r.steps} step{'s' if r.steps > 1 else ''}"), r.kind, r.result_set or "-", r.points, r.records]
                     for r in grouped.itertuples()])


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ls", help="runs, points, shapes and row counts of a store")
    p.add_argument("store")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ls)
