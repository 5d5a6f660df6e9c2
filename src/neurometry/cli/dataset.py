"""`neurometry dataset`: a built-in dataset written as files to record."""

from __future__ import annotations

import argparse

from neurometry.cli.output import check_output_path, finish
from neurometry.errors import NeurometryError, did_you_mean


def cmd_dataset(args: argparse.Namespace) -> None:
    from neurometry.datasets import DATASETS, KRIEGESKORTE_RDM_KEY, kriegeskorte_mat

    if args.name not in DATASETS:
        raise NeurometryError(f"unknown dataset {args.name!r}{did_you_mean(args.name, DATASETS)}; known: {', '.join(DATASETS)}")
    check_output_path(args.out, folder=True)
    path = DATASETS[args.name](args.out)

    def show() -> None:
        if args.name == "kriegeskorte92":
            print(f"brain RDMs: {kriegeskorte_mat()} --rdm-key {KRIEGESKORTE_RDM_KEY}")

    finish(args, {"data": str(path)}, show, wrote=[path])


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dataset", help="write a built-in dataset (kriegeskorte92, naturalstories, truth-*) as files to record")
    p.add_argument("name", help="kriegeskorte92: 92 object images with monkey and human IT RDMs; naturalstories: the Natural Stories words and self-paced reading times; truth-<set>: true/false statements")
    p.add_argument("--out", required=True, help="folder for the files")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_dataset)
