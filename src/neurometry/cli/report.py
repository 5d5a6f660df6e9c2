"""`neurometry report`: one self-contained HTML page of a store's results."""

from __future__ import annotations

import argparse

from neurometry.cli.output import check_output_path


def cmd_report(args: argparse.Namespace) -> None:
    from neurometry.report import build_report

    check_output_path(args.out, "-o")
    path = build_report(args.store, args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; opens offline)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="one self-contained HTML page with every result a store holds")
    p.add_argument("store")
    p.add_argument("-o", "--out", default="report.html", help="HTML file to write (default report.html)")
    p.set_defaults(func=cmd_report)
