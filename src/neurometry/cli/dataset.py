"""`neurometry dataset`: a built-in dataset written as files to record."""

from __future__ import annotations

import argparse

from neurometry.cli.output import check_output_path, finish, whole_number
from neurometry.errors import NeurometryError, did_you_mean


def cmd_dataset(args: argparse.Namespace) -> None:
    from neurometry.datasets import (
        DATASET_NAMES,
        DATASETS,
        HALLUCINATION_CITIES,
        KRIEGESKORTE_RDM_KEY,
        kriegeskorte_mat,
    )

    if args.name == HALLUCINATION_CITIES:
        return _hallucination(args)
    if args.name not in DATASETS:
        raise NeurometryError(
            f"unknown dataset {args.name!r}{did_you_mean(args.name, DATASET_NAMES)}; known: {', '.join(DATASET_NAMES)}"
        )
    if args.model is not None or args.limit is not None:
        flag = "--model" if args.model is not None else "--limit"
        raise NeurometryError(f"{flag} is for {HALLUCINATION_CITIES} (the model whose answers it records); "
                              f"{args.name} ships as it is")
    check_output_path(args.out, folder=True)
    path = DATASETS[args.name](args.out)

    def show() -> None:
        if args.name == "kriegeskorte92":
            print(f"brain RDMs: {kriegeskorte_mat()} --rdm-key {KRIEGESKORTE_RDM_KEY}")

    finish(args, {"data": str(path)}, show, wrote=[path])


def _hallucination(args: argparse.Namespace) -> None:
    from neurometry.datasets import HALLUCINATION_CITIES
    from neurometry.workflows.detect import export_hallucination_cities

    if args.model is None:
        raise NeurometryError(f"{HALLUCINATION_CITIES} records a model's own answers: name it with --model (e.g. smollm2-135m)")
    check_output_path(args.out, folder=True)
    document = export_hallucination_cities(args.model, args.out, limit=args.limit)

    def show() -> None:
        print(f"{document['model']} answered {document['statements']} cities: {document['correct']} correct, "
              f"{document['hallucinated']} hallucinated (label column truth, group column group)")

    finish(args, document, show, wrote=[document["data"]])


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dataset", help="write a built-in dataset (kriegeskorte92, naturalstories, truth-*, hallucination-cities) as files to record")
    p.add_argument("name", help="kriegeskorte92: 92 object images with monkey and human IT RDMs; naturalstories: the Natural Stories words and self-paced reading times; truth-<set>: true/false statements (truth: all six sets); hallucination-cities --model M: the model's own answers, correct or hallucinated")
    p.add_argument("--out", required=True, help="folder for the files")
    p.add_argument("--model", default=None,
                   help="hallucination-cities: the causal LM whose answers about each city's country are labelled "
                        "correct or hallucinated")
    p.add_argument("--limit", type=whole_number(1), default=None, help="hallucination-cities: ask about the first N cities")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_dataset)
