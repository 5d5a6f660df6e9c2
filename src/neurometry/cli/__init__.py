"""The `neurometry` command line: one module per verb, each parsing its arguments, calling a workflow (or a
stage directly, when nothing is saved) and printing.

User errors (:class:`NeurometryError`) print one line and exit 2; Ctrl-C exits 130 and says how to resume.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from neurometry.errors import NeurometryError

# each module adds its verbs with add_parser(sub) (add_parsers for several); the order is --help's
VERBS = (
    "models", "record", "ls", "export", "importing", "dataset", "demo", "report", "serve", "measure", "compare",
    "probe", "steer", "sae",
)


def build_parser() -> argparse.ArgumentParser:
    from importlib import import_module

    parser = argparse.ArgumentParser(prog="neurometry", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for verb in VERBS:
        module = import_module(f"neurometry.cli.{verb}")
        (getattr(module, "add_parser", None) or module.add_parsers)(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except NeurometryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; everything committed so far is kept: rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
