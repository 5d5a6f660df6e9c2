"""`neurometry phases`: change points of a measure or training curve over a series."""

from __future__ import annotations

import argparse

from neurometry.cli.output import check_output_path, finish, plots, whole_number


def cmd_phases(args: argparse.Namespace) -> None:
    from neurometry.store import open_store
    from neurometry.tables.training import print_phases
    from neurometry.workflows.series import series_phases

    if args.plot:
        check_output_path(args.plot, "--plot")
    store = open_store(args.store)
    phases, steps, values = series_phases(
        store, args.series, args.measure, args.point, method=args.method, penalty=args.penalty,
        n_changes=args.n_changes, transform=args.transform, min_size=args.min_size, label=args.label,
    )
    document = {"series": args.series, "curve": args.measure, "point": args.point, **phases.to_dict(),
                "steps": steps.tolist(), "values": values.tolist()}
    title = f"{args.measure}{f' at {args.point}' if args.point else ''} over {args.series}"
    finish(args, document, lambda: print_phases(document),
           lambda: plots().plot_curves_with_phases(document["steps"], {args.measure: document["values"]},
                                                   document["phases"], title, log_y=phases.transform == "log"))


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "phases", help="phases of training: change points in a measure or loss curve over a series (ruptures)",
        description="Find change points with PELT (a penalty per change) or binary segmentation (a number of "
                    "changes) on a series' training metric (test_loss, ...) or on a measure at one point.",
    )
    p.add_argument("store")
    p.add_argument("--series", required=True, help="the series (see `neurometry ls`)")
    p.add_argument("--measure", required=True,
                   help="a measure (effective_rank, ...; needs --point) or a training metric (test_loss, ...)")
    p.add_argument("--point", default=None, help="the point a measure is read at (left out: a training metric)")
    p.add_argument("--label", default=None, help="metadata column of class labels, for label measures (nc1)")
    p.add_argument("--method", choices=["pelt", "binseg"], default="pelt")
    p.add_argument("--penalty", type=float, default=None,
                   help="pelt: cost per change point (default 3 sigma^2 log n, sigma from the curve's differences)")
    p.add_argument("--n-changes", type=whole_number(1), default=None, help="binseg: how many boundaries")
    p.add_argument("--transform", choices=["none", "log"], default=None,
                   help="find changes on the curve or its log (default: log for losses)")
    p.add_argument("--min-size", type=whole_number(1), default=2, help="fewest checkpoints in a phase")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="the curve with its phases shaded")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_phases)
