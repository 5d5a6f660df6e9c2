"""The `neurometry` command line: parses arguments, calls the library, prints.

User errors (:class:`NeurometryError`) print one line and exit 2; Ctrl-C exits 130 and says how to resume.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from neurometry.commands.table import emit_json, print_table
from neurometry.errors import NeurometryError, did_you_mean


def cmd_models(args: argparse.Namespace) -> None:
    from neurometry.models import zoo

    entries = zoo()
    if args.json:
        emit_json({"models": [e.__dict__ if hasattr(e, "__dict__") else dict(e) for e in entries]}, indent=2)
        return
    rows = [[e.name, "yes" if e.installed else "no", e.description, "" if e.installed else e.install] for e in entries]
    print_table(["model", "installed", "what", "install with"], rows)
    print("\nMODEL may also be a local Hugging Face folder or module:attribute returning a torch.nn.Module.")


def cmd_points(args: argparse.Namespace) -> None:
    from neurometry.models import describe_points, load_model

    points = describe_points(load_model(args.model))
    if args.json:
        emit_json({"model": args.model, "points": points}, indent=2)
        return
    print_table(["point", "kind", "shape", "module"], [[p["point"], p["kind"], p["shape"], p["module_path"]] for p in points])
    print(f"\n{len(points)} points; any module path works too, and globs select several (resid.*).")


def cmd_record(args: argparse.Namespace) -> None:
    from neurometry.record import record

    result = record(
        args.model, args.data, args.points, args.out, reduce=args.reduce, dtype=args.dtype,
        batch_size=args.batch_size, max_tokens=args.max_tokens, run=args.run, overwrite=args.overwrite,
        progress=not args.quiet, chunk_rows=args.chunk_rows,
    )
    if args.json:
        emit_json(result.__dict__, indent=2)
        return
    if result.already_complete:
        print(f"run {result.run_id!r} is already complete in {result.store}; nothing to do")
    else:
        resumed = f" (resumed at input {result.resumed_at})" if result.resumed_at else ""
        print(f"recorded {len(result.points)} points x {result.n_rows} rows from {result.n_inputs} inputs"
              f" into {result.store}, run {result.run_id!r}{resumed}")
    print(f"next: neurometry ls {result.store}")


def cmd_ls(args: argparse.Namespace) -> None:
    from neurometry.store import open_store

    store = open_store(args.store)
    runs = store.runs()
    points = store.points()
    if args.json:
        emit_json({
            "runs": [dict(r.__dict__) for r in runs],
            "points": [p.__dict__ for p in points],
            "results": store.results().to_dict(orient="records"),
        }, indent=2)
        return
    if not runs:
        print(f"{store.path}: empty store")
        return
    print_table(
        ["run", "model", "reduce", "dtype", "rows", "inputs", "status"],
        [[r.run_id, r.model, r.reduce, r.dtype, f"{r.committed_rows}/{r.n_rows}", f"{r.committed_inputs}/{r.n_inputs}",
          r.status] for r in runs],
    )
    print()
    print_table(["run", "point", "kind", "shape", "dtype", "rows"],
                 [[p.run_id, p.point, p.kind, " x ".join(map(str, p.shape)), p.dtype, p.n_rows] for p in points])
    results = store.results()
    if len(results):
        print()
        counts = results.groupby(["run_id", "kind"]).agg(points=("point", "nunique"), names=("name", "nunique"))
        print_table(["run", "results", "points", "names"],
                     [[run, kind, row.points, row.names] for (run, kind), row in counts.iterrows()])


def cmd_export(args: argparse.Namespace) -> None:
    from neurometry.store import open_store
    from neurometry.store.export import export_point

    store = open_store(args.store)
    written = export_point(store, args.point, args.out, run=args.run, meta_format=args.meta)
    if args.json:
        emit_json({"files": [str(p) for p in written]}, indent=2)
        return
    for path in written:
        print(f"wrote {path}")


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


def cmd_demo(args: argparse.Namespace) -> None:
    from neurometry.demo import run_demo

    run_demo(args.out, quick=args.quick)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neurometry", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="built-in models and how to install each")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("points", help="the hook points of a model, with shapes")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_points)

    p = sub.add_parser("record", help="record hook points of a model over a dataset into a store")
    p.add_argument("model", help="zoo name, local Hugging Face folder, or module:attribute")
    p.add_argument("data", help=".jsonl, .csv or .parquet with a text (or image) column")
    p.add_argument("--points", nargs="+", required=True, help="aliases, module paths or globs (resid.*)")
    p.add_argument("--out", required=True, help="store folder (created if missing)")
    p.add_argument("--reduce", default=None, help="text: tokens|mean|first|last (default mean); image: mean|none")
    p.add_argument("--dtype", default="float32", help="float32|float16|bfloat16 on disk")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=128, help="truncate inputs to this many tokens")
    p.add_argument("--run", default=None, help="run name (default: from the model name)")
    p.add_argument("--overwrite", action="store_true", help="replace a complete run recorded with other settings")
    p.add_argument("--chunk-rows", type=int, default=None, help="rows per on-disk chunk and commit (default ~2 MiB)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("ls", help="runs, points, shapes and row counts of a store")
    p.add_argument("store")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("export", help="write one point to .npy, with its row metadata beside it")
    p.add_argument("store")
    p.add_argument("--point", required=True)
    p.add_argument("--run", default=None)
    p.add_argument("--out", required=True, help="FILE.npy")
    p.add_argument("--meta", choices=["parquet", "csv"], default="parquet", help="format of the metadata file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("dataset", help="write a built-in dataset (kriegeskorte92) as files to record")
    p.add_argument("name", help="kriegeskorte92: 92 object images with monkey and human IT RDMs")
    p.add_argument("--out", required=True, help="folder for the files")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_dataset)

    p = sub.add_parser("demo", help="the main job on built-in models and data")
    p.add_argument("--out", default="neurometry-demo", help="folder for the demo's store and figures")
    p.add_argument("--quick", action="store_true", help="fewer stages, for a fast look")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("report", help="one self-contained HTML page with every result a store holds")
    p.add_argument("store")
    p.add_argument("-o", "--out", default="report.html", help="HTML file to write (default report.html)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("serve", help="a local read-only web dashboard over a store")
    p.add_argument("store")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--model", help="a model for the steering playground (with --vector)")
    p.add_argument("--vector", action="append", default=[], help="V.safetensors from `steer build`; repeatable")
    p.set_defaults(func=cmd_serve)

    _add_later_commands(sub)
    return parser


def cmd_serve(args: argparse.Namespace) -> None:
    from neurometry.app import serve

    serve(args.store, host=args.host, port=args.port, model=args.model, vectors=args.vector)


def cmd_report(args: argparse.Namespace) -> None:
    from neurometry.report import build_report

    path = build_report(args.store, args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; opens offline)")


def _add_later_commands(sub: argparse._SubParsersAction) -> None:
    """Commands that live in their own modules under neurometry.commands."""
    from neurometry.commands import compare, measure, probe, sae, steer

    measure.add_parser(sub)
    compare.add_parser(sub)
    probe.add_parsers(sub)
    steer.add_parsers(sub)
    sae.add_parsers(sub)


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
