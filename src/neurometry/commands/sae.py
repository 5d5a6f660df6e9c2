"""`neurometry sae train|eval|features`: sparse autoencoders on a stored point.

The I/O side of :mod:`neurometry.features`: trains into a folder SAELens can load, evaluates on the
held-out inputs (and, with a model, spliced back into it), and writes each latent's top examples into
the store's catalog for the report and web page.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from neurometry.commands.table import emit_json, print_table
from neurometry.errors import NeurometryError


def _store(path: str) -> Any:
    from neurometry.store import open_store

    if not Path(path).is_dir():
        raise NeurometryError(f"no store at {path}; record one with `neurometry record` first")
    return open_store(path)


def cmd_sae_train(args: argparse.Namespace) -> None:
    from neurometry.features.sae import SAEConfig
    from neurometry.features.train import TrainConfig, train_sae

    store = _store(args.store)
    info = store.point_info(args.point, args.run)
    width = 1
    for s in info.shape:
        width *= s
    cfg = SAEConfig(
        d_in=width,
        d_sae=args.latents,
        architecture=args.arch,
        k=args.k,
        l1_coefficient=args.l1,
        l0_coefficient=args.l0,
        model=store.run_info(info.run_id).model,
        point=args.point,
    )
    train = TrainConfig(
        batch_size=args.batch_size,
        lr=args.lr,
        train_rows=args.train_rows,
        held_out=args.held_out,
        seed=args.seed,
        min_position=args.min_position,
    )
    result = train_sae(
        store, args.point, args.out, cfg, train, run=info.run_id, fresh=args.fresh, max_steps=args.max_steps,
        progress=not args.json,
    )
    last = result.history[-1] if result.history else {}
    record = {
        "point": args.point,
        "architecture": cfg.architecture,
        "latents": cfg.d_sae,
        "steps": result.steps,
        "rows_seen": result.rows_seen,
        "rows_per_second": result.rows_per_second,
        "train_l0": last.get("l0"),
        "train_fvu": last.get("fvu"),
        "dead_fraction": last.get("dead_fraction"),
        "held_out_start": result.held_out_start,
        "resumed_from": result.resumed_from,
        "out": str(result.folder),
    }
    if args.json:
        emit_json({"results": [record]})
        return
    print_table(
        ["point", "arch", "latents", "steps", "rows/s", "L0", "FVU", "dead"],
        [[args.point, cfg.architecture, cfg.d_sae, result.steps, f"{result.rows_per_second:.0f}",
          f"{record['train_l0']:.1f}", f"{record['train_fvu']:.3f}", f"{record['dead_fraction']:.3f}"]],
    )
    print(f"saved to {result.folder} (cfg.json + sae_weights.safetensors; SAELens loads it)")


def _sae_and_point(args: argparse.Namespace) -> tuple[Any, Any, str, Any]:
    """(SAE, store, point, point info) for ``sae eval|features``: --point defaults to the SAE's own."""
    from neurometry.features.io import load_sae

    sae = load_sae(args.sae)
    store = _store(args.store)
    point = args.point or sae.cfg.point
    if not point:
        raise NeurometryError("the SAE names no point; give --point")
    return sae, store, point, store.point_info(point, args.run)


def _held_out(sae: Any, store: Any, run: str, point: str) -> int:
    """First held-out row when the SAE was trained on this run and point, else 0 (every row is new)."""
    extra = sae.cfg.extra
    trained_here = extra.get("run") == run and sae.cfg.point == point and "held_out_start" in extra
    return int(extra["held_out_start"]) if trained_here else 0


def cmd_sae_eval(args: argparse.Namespace) -> None:
    from neurometry.features.evaluate import ce_loss_recovered, evaluate_sae, save_sae_eval

    sae, store, point, info = _sae_and_point(args)
    start = _held_out(sae, store, info.run_id, point)
    if start >= info.n_rows:
        raise NeurometryError(
            f"the SAE was trained on every row of {point} (--held-out 0); evaluate it on another store"
        )
    metrics = evaluate_sae(sae, store, point, info.run_id, start=start, progress=not args.json)
    ce = None
    if args.model:
        from neurometry.models import load_model

        inputs = store.inputs(store.run_info(info.run_id).dataset_id)
        if "text" not in inputs.columns:
            raise NeurometryError(f"run {info.run_id} has no text column; CE loss needs the recorded texts")
        first_input = int(store.row_index(info.run_id)["input_row"].iloc[start]) if start else 0
        texts = inputs["text"].iloc[first_input:].astype(str).tolist()[: args.max_texts]
        ce = ce_loss_recovered(sae, load_model(args.model), point, texts, max_length=args.max_length)
    record = save_sae_eval(store, args.sae, point, info.run_id, metrics, ce, rows_from=start)
    if args.json:
        emit_json({"results": [record]})
        return
    columns = ["point", "rows", "L0", "FVU", "dead", "dense"]
    row = [point, metrics.n_rows, f"{metrics.l0:.1f}", f"{metrics.fvu:.4f}", f"{metrics.dead_fraction:.3f}",
           f"{metrics.dense_fraction:.3f}"]
    if args.model:
        columns += ["CE clean", "CE spliced", "CE zero", "loss recovered"]
        row += [f"{record['ce_clean_loss']:.4f}", f"{record['ce_spliced_loss']:.4f}",
                f"{record['ce_zero_ablation_loss']:.4f}", f"{record['ce_loss_recovered']:.4f}"]
    print_table(columns, [row])


def cmd_sae_features(args: argparse.Namespace) -> None:
    from neurometry.features.examples import (
        feature_examples,
        feature_logit_tokens,
        readable,
        save_feature_examples,
    )

    sae, store, point, info = _sae_and_point(args)
    examples = feature_examples(
        sae, store, point, info.run_id, top=args.top, window=args.window, progress=not args.json
    )
    if args.model:
        from neurometry.models import load_model

        examples.logit_tokens = feature_logit_tokens(sae, load_model(args.model)).as_records()
    name = args.name or Path(args.sae).resolve().name
    save_feature_examples(store, examples, info.run_id, name)
    order = np.argsort(-examples.frequency, kind="stable")
    shown = [int(j) for j in order[: args.show]]
    if args.json:
        emit_json({"results": [{"point": point, "latent": j, **examples.latent(j)} for j in shown]})
        return
    rows = []
    for j in shown:
        best = examples.top[j][0] if examples.top[j] else None
        context = f"{readable(best.left)[-40:]}[{readable(best.token)}]{readable(best.right)[:30]}" if best else ""
        rows.append([j, f"{examples.frequency[j]:.4f}", f"{examples.max_activation[j]:.3g}", context])
    print_table(["latent", "frequency", "max", "top example"], rows)
    print(f"saved {examples.d_sae} latents as {name!r} (kind sae_features) in {store.path}")


def cmd_sae_export(args: argparse.Namespace) -> None:
    from neurometry.features.examples import export_feature_direction
    from neurometry.features.io import load_sae

    path = export_feature_direction(load_sae(args.sae), args.latent, args.out)
    print(f"wrote {path} (use it with `neurometry steer eval|generate`)")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from neurometry.features.sae import ARCHITECTURES

    sae = sub.add_parser("sae", help="train, evaluate and explain sparse autoencoders on a stored point")
    sae_sub = sae.add_subparsers(dest="sae_command", required=True)

    p = sae_sub.add_parser("train", help="train an SAE on a stored point (resumes from its checkpoint)")
    p.add_argument("store")
    p.add_argument("--point", required=True, help="e.g. resid.15")
    p.add_argument("--run", help="the run, when the store holds several")
    p.add_argument("--arch", default="topk", choices=list(ARCHITECTURES))
    p.add_argument("--k", type=int, default=32, help="active latents per row (topk, batchtopk)")
    p.add_argument("--latents", type=int, default=4096)
    p.add_argument("--l1", type=float, default=5.0, help="L1 coefficient (relu)")
    p.add_argument("--l0", type=float, default=1.0, help="L0 coefficient (jumprelu)")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--train-rows", type=int, help="rows to train on in all (default: one pass)")
    p.add_argument("--held-out", type=float, default=0.05, help="fraction of inputs kept for sae eval")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--min-position", type=int, default=0,
        help="leave out token rows before this position (1: each text's first token, often a huge-norm sink)",
    )
    p.add_argument("--max-steps", type=int, help="stop after this many steps (rerun to resume)")
    p.add_argument("--fresh", action="store_true", help="discard a checkpoint in --out instead of resuming")
    p.add_argument("--out", required=True, help="folder for cfg.json, sae_weights.safetensors, checkpoint/")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sae_train)

    p = sae_sub.add_parser("eval", help="L0, FVU, dead/dense latents on held-out rows; CE loss recovered")
    p.add_argument("sae", help="folder of a trained SAE (ours or SAELens')")
    p.add_argument("store")
    p.add_argument("--point", help="default: the point the SAE was trained on")
    p.add_argument("--run")
    p.add_argument("--model", help="splice the SAE into this model and report CE loss recovered")
    p.add_argument("--max-texts", type=int, default=64, help="held-out texts for the CE loss (default 64)")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sae_eval)

    p = sae_sub.add_parser("features", help="each latent's frequency and top token contexts, into the catalog")
    p.add_argument("sae")
    p.add_argument("store")
    p.add_argument("--point")
    p.add_argument("--run")
    p.add_argument("--top", type=int, default=20, help="top examples per latent")
    p.add_argument("--window", type=int, default=8, help="tokens of context each side")
    p.add_argument("--model", help="also the tokens each latent promotes through the unembedding")
    p.add_argument("--name", help="name in the catalog (default: the SAE folder's name)")
    p.add_argument("--show", type=int, default=20, help="latents printed (most frequent first)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sae_features)

    p = sae_sub.add_parser("export", help="a latent's decoder direction as a steering vector file")
    p.add_argument("sae")
    p.add_argument("--latent", type=int, required=True)
    p.add_argument("--out", required=True, help="V.safetensors (V.json beside it)")
    p.set_defaults(func=cmd_sae_export)
