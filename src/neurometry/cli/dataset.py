"""`neurometry dataset`: a built-in dataset written as files to record."""

from __future__ import annotations

import argparse

from neurometry.errors import NeurometryError, did_you_mean
from neurometry.tables.text import emit_json


def cmd_dataset(args: argparse.Namespace) -> None:
    from neurometry.datasets import DATASETS, KRIEGESKORTE_RDM_KEY, kriegeskorte_mat

    if args.name not in DATASETS:
        raise NeurometryError(f"unknown dataset {args.name!r}{did_you_mean(args.name, DATASETS)}; known: {', '.join(DATASETS)}")
    path = DATASETS[args.name](args.out)
    if args.json:
        emit_json({"data": str(path)}, indent=2)
        return
    print(f"wrote {path}")
    if args.name == "kriegeskorte92":
        print(f"brain RDMs: {kriegeskorte_mat()} --rdm-key {KRIEGESKORTE_RDM_KEY}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dataset", help="write a built-in dataset (kriegeskorte92) as files to record")
    p.add_argument("name", help="kriegeskorte92: 92 object images with monkey and human IT RDMs")
    p.add_argument("--out", required=True, help="folder for the files")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_dataset)
