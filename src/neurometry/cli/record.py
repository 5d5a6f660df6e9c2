"""`neurometry record`: a model over a dataset into a store."""

from __future__ import annotations

import argparse

from neurometry.cli.output import add_device_arguments, check_output_path, finish, plots, whole_number
from neurometry.errors import NeurometryError


def cmd_record(args: argparse.Namespace) -> None:
    from neurometry.record import record
    from neurometry.record.data import check_data_path

    check_data_path(args.data)
    check_output_path(args.out, folder=True)
    if args.plot:
        check_output_path(args.plot, "--plot")
        if args.reduce != "steps" or args.checkpoints is not None:
            raise NeurometryError("--plot draws the trajectories of a --reduce steps recording; leave it out here")
    if args.checkpoints is not None:
        return _record_checkpoints(args)
    if args.steps or args.series:
        raise NeurometryError("--steps and --series go with --checkpoints")
    result = record(
        base_model(args.model), args.data, args.points, args.out, reduce=args.reduce, dtype=args.dtype,
        batch_size=args.batch_size, max_tokens=args.max_tokens, run=args.run, overwrite=args.overwrite,
        progress=not args.quiet, chunk_rows=args.chunk_rows, device=args.device, model_dtype=args.model_dtype,
        max_batch_tokens=args.max_batch_tokens, engine="ray" if args.ray is not None else "local",
        ray_address=args.ray or None, actors=args.actors, text_column=args.text_column,
    )

    def show() -> None:
        if result.already_complete:
            print(f"run {result.run_id!r} is already complete in {result.store}; nothing to do")
        else:
            resumed = f" (resumed at input {result.resumed_at})" if result.resumed_at else ""
            print(f"recorded {len(result.points)} points x {result.n_rows} rows from {result.n_inputs} inputs"
                  f" into {result.store}, run {result.run_id!r}{resumed}")
        print(f"next: neurometry ls {result.store}")

    finish(args, result.__dict__, show, lambda: _trajectory_figure(result))


def _trajectory_figure(result):
    from neurometry.store import open_store
    from neurometry.workflows.dynamics import run_trajectories

    store = open_store(result.store, read_only=True)
    try:
        return plots().plot_trajectories(run_trajectories(store, result.run_id), f"run {result.run_id}")
    finally:
        store.close()


def _record_checkpoints(args: argparse.Namespace) -> None:
    from neurometry.record.checkpoints import record_checkpoints

    if args.ray is not None or args.max_batch_tokens is not None:
        raise NeurometryError("--checkpoints records in one process with --batch-size; leave out --ray and --max-batch-tokens")
    model = base_model(args.model)
    result = record_checkpoints(
        model, args.data, args.points, args.out, args.checkpoints, series=args.series, steps=args.steps,
        progress=not args.quiet, device=args.device, model_dtype=args.model_dtype, reduce=args.reduce,
        dtype=args.dtype, batch_size=args.batch_size, max_tokens=args.max_tokens, chunk_rows=args.chunk_rows,
        text_column=args.text_column,
    )

    def show() -> None:
        done = f"; {len(result.already_complete)} were recorded before" if result.already_complete else ""
        print(f"recorded series {result.series!r}: {len(result.runs)} checkpoints, steps "
              f"{result.steps[0]}..{result.steps[-1]}, into {result.store}{done}")
        for step, same in result.duplicates:
            print(f"  step {step} has the same weights as step {same}: not recorded again")
        print(f"next: neurometry measure {result.store} --series {result.series}")

    finish(args, result.__dict__, show)


def base_model(spec: str):
    """``lab:NAME`` (or ``lab:NAME:test``) is a lab's freshly built model (its initialisation, which its
    checkpoints load into); anything else is a model spec as given."""
    if not spec.startswith("lab:"):
        return spec
    from neurometry.workflows.lab import lab_model

    _, name, *size = spec.split(":")
    return lab_model(name, size=size[0] if size else "default")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("record", help="record hook points of a model over a dataset into a store")
    p.add_argument("model", help="zoo name, local Hugging Face folder, module:attribute, or lab:NAME[:test]")
    p.add_argument("data", help=".jsonl, .csv or .parquet with a text (or image) column; .npy/.npz for a tensor model")
    p.add_argument("--points", nargs="+", required=True, help="aliases, module paths or globs (resid.*)")
    p.add_argument("--text-column", default="text",
                   help="the column a text model reads (default text; e.g. statement), stored as the rows' text")
    p.add_argument("--out", required=True, help="store folder (created if missing)")
    p.add_argument("--reduce", default=None, help="text: tokens|mean|first|last (default mean); image: mean|none; "
                   "arrays: none|last|first|mean|steps (steps: one row per time step, with trial and time)")
    p.add_argument("--dtype", default="float32", help="float32|float16|bfloat16 on disk")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="with --reduce steps: each point's trajectories in its top two principal components")
    add_device_arguments(p)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=128, help="truncate inputs to this many tokens")
    p.add_argument("--max-batch-tokens", type=int, default=None,
                   help="text: batch by padded tokens (inputs x longest), length-sorted; replaces --batch-size")
    p.add_argument("--run", default=None, help="run name (default: from the model name)")
    p.add_argument("--overwrite", action="store_true", help="replace a complete run recorded with other settings")
    p.add_argument("--chunk-rows", type=int, default=None, help="rows per on-disk chunk and commit (default ~2 MiB)")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="record on a Ray cluster (its address; none: a local Ray); the store must be on a shared filesystem")
    p.add_argument("--actors", type=whole_number(1), default=1, help="with --ray: model actors (default 1)")
    p.add_argument("--checkpoints", default=None, metavar="DIR_OR_GLOB",
                   help="record a series: a folder of checkpoint-* folders or *.safetensors state dicts (loaded "
                        "into MODEL), or a glob; one run per checkpoint")
    p.add_argument("--steps", default=None, metavar="FILE",
                   help="with --checkpoints: 'NAME STEP' lines (default: the last number in each name)")
    p.add_argument("--series", default=None, help="with --checkpoints: the series' name (default: the model's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_record)
