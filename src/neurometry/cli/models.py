"""`neurometry models` and `neurometry points`: the zoo and a model's hook points."""

from __future__ import annotations

import argparse

from neurometry.cli.output import finish
from neurometry.tables.text import print_table


def cmd_models(args: argparse.Namespace) -> None:
    from neurometry.models import zoo

    entries = zoo()

    def show() -> None:
        rows = [[e.name, "yes" if e.installed else "no", e.description, "" if e.installed else e.install]
                for e in entries]
        print_table(["model", "installed", "what", "install with"], rows)
        print("\nMODEL may also be a local Hugging Face folder or module:attribute returning a torch.nn.Module.")

    finish(args, {"models": [e.__dict__ if hasattr(e, "__dict__") else dict(e) for e in entries]}, show)


def cmd_points(args: argparse.Namespace) -> None:
    from neurometry.models import describe_points, load_model

    points = describe_points(load_model(args.model))

    def show() -> None:
        print_table(["point", "kind", "shape", "module"],
                    [[p["point"], p["kind"], p["shape"], p["module_path"]] for p in points])
        print(f"\n{len(points)} points; any module path works too, and globs select several (resid.*).")

    finish(args, {"model": args.model, "points": points}, show)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="built-in models and how to install each")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("points", help="the hook points of a model, with shapes")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_points)
