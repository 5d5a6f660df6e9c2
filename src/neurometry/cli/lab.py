"""`neurometry lab NAME`: train a classic toy model on the CPU and record it over training."""

from __future__ import annotations

import argparse

from neurometry.cli.output import check_output_path, finish, plots, whole_number


def cmd_lab(args: argparse.Namespace) -> None:
    from neurometry.lab import LABS, get_lab
    from neurometry.tables.training import print_lab
    from neurometry.workflows.lab import run_lab

    if args.list or args.name is None:
        for name in LABS:
            print(f"{name:14s} {get_lab(name).title}")
        return
    check_output_path(args.out, folder=True)
    if args.plot:
        check_output_path(args.plot, "--plot")
    options = {"sweep": True} if args.sweep else {}
    document = run_lab(args.name, args.out, size=args.size, steps=args.steps, seed=args.seed,
                       checkpoints=args.checkpoints, progress=not args.json, **options)

    def show() -> None:
        print_lab(document)
        print(f"next: neurometry measure {document['store']} --series {document['series']} --plot over_training.png")

    finish(args, document, show, lambda: plots().plot_lab(document))


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lab", help="train a classic toy model (grokking, induction, superposition, collapse) and record it over training",
        description="Train a seeded toy model on the CPU, save its checkpoints as safetensors, record its points into "
                    "a series named after the lab, measure them over training and print what it found.",
    )
    p.add_argument("name", nargs="?", default=None, help="grokking, induction, superposition or collapse")
    p.add_argument("--out", help="store folder (created if missing)")
    p.add_argument("--steps", type=whole_number(1), default=None, help="training steps (default: the lab's own)")
    p.add_argument("--seed", type=whole_number(0), default=0)
    p.add_argument("--size", choices=["default", "test"], default="default",
                   help="default (minutes on 2 cores) or test (a smaller model, under a minute)")
    p.add_argument("--sweep", action="store_true", help="superposition: sweep feature sparsity")
    p.add_argument("--checkpoints", default=None, metavar="DIR", help="checkpoint folder (default STORE/../checkpoints/NAME)")
    p.add_argument("--list", action="store_true", help="list the labs and exit")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="losses with phases shaded, and effective rank")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_checked)


def _checked(args: argparse.Namespace) -> None:
    from neurometry.errors import NeurometryError

    if args.name is not None and not args.list and args.out is None:
        raise NeurometryError("give --out STORE: the store the lab records its series into")
    cmd_lab(args)
