"""`neurometry demo`: the main job on built-in models and data."""

from __future__ import annotations

import argparse

from neurometry.cli.output import check_output_path


def cmd_demo(args: argparse.Namespace) -> None:
    from neurometry.demo import run_demo

    check_output_path(args.out, folder=True)
    run_demo(args.out, quick=args.quick)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job on built-in models and data")
    p.add_argument("--out", default="neurometry-demo", help="folder for the demo's store and figures")
    p.add_argument("--quick", action="store_true", help="fewer stages, for a fast look")
    p.set_defaults(func=cmd_demo)
