"""`neurometry serve`: the local read-only web dashboard."""

from __future__ import annotations

import argparse


def cmd_serve(args: argparse.Namespace) -> None:
    from neurometry.app import serve

    serve(args.store, host=args.host, port=args.port, model=args.model, vectors=args.vector)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="a local read-only web dashboard over a store")
    p.add_argument("store")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--model", help="a model for the steering playground (with --vector)")
    p.add_argument("--vector", action="append", default=[], help="V.safetensors from `steer build`; repeatable")
    p.set_defaults(func=cmd_serve)
