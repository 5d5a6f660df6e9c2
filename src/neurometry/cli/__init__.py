"""The `neurometry` command line: one module per verb, each parsing its arguments, calling a workflow (or a
stage directly, when nothing is saved) and printing.

User errors (:class:`NeurometryError`) print one line and exit 2; Ctrl-C exits 130 and says how to resume,
also while the verbs' modules (torch among them) are still being imported. A command may return its own
exit status (``verify`` returns 1 when it finds damage).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from neurometry.errors import NeurometryError

# each module adds its verbs with add_parser(sub) (add_parsers for several); the order is --help's
VERBS = (
    "models", "record", "ls", "export", "importing", "dataset", "demo", "report", "serve", "measure", "compare",
    "probe", "steer", "sae", "verify", "lab", "phases", "dynamics", "language", "detect",
)


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error said in one line like every other user error (its subcommands are
    made of this class too)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}; see `{self.prog} --help`", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    from importlib import import_module

    parser = _Parser(
        prog="neurometry",
        description="Record, measure, compare, probe, steer and decompose neural network activations.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for verb in VERBS:
        module = import_module(f"neurometry.cli.{verb}")
        (getattr(module, "add_parser", None) or module.add_parsers)(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        # building the parser imports every verb's module (torch among them: seconds), so a Ctrl-C
        # in the first seconds of any command lands here too
        parser = build_parser()
        args = parser.parse_args(argv)
        code = args.func(args)
    except NeurometryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; everything committed so far is kept: rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
