"""`neurometry sae train|eval|features|export`: parse, call :mod:`neurometry.workflows.sae`, print."""

from __future__ import annotations

import argparse

import numpy as np

from neurometry.cli.output import add_device_arguments, check_output_path, finish, whole_number
from neurometry.tables.text import print_table


def cmd_sae_train(args: argparse.Namespace) -> None:
    from neurometry.features.train import TrainConfig
    from neurometry.workflows.sae import train_on_store

    train = TrainConfig(
        batch_size=args.batch_size, lr=args.lr, train_rows=args.train_rows, steps=args.steps, epochs=args.epochs,
        held_out=args.held_out, seed=args.seed, min_position=args.min_position,
    )
    check_output_path(args.out, folder=True)
    result, record = train_on_store(
        args.store, args.point, args.out, train, run=args.run, architecture=args.arch, latents=args.latents,
        k=args.k, l1=args.l1, l0=args.l0, fresh=args.fresh, max_steps=args.max_steps, progress=not args.json,
        device=args.device, engine="ray" if args.ray is not None else "local", ray_address=args.ray or None,
        workers=args.workers,
    )

    def show() -> None:
        print_table(
            ["point", "arch", "latents", "steps", "rows/s", "L0", "FVU", "dead"],
            [[args.point, record["architecture"], record["latents"], result.steps, f"{result.rows_per_second:.0f}",
              f"{record['train_l0']:.1f}", f"{record['train_fvu']:.3f}", f"{record['dead_fraction']:.3f}"]],
        )
        print(f"schedule: {result.schedule.reason}")
        print(f"saved to {result.folder} (cfg.json + sae_weights.safetensors; SAELens loads it)")

    finish(args, {"results": [record]}, show)


def cmd_sae_eval(args: argparse.Namespace) -> None:
    from neurometry.workflows.sae import evaluate_on_store

    record = evaluate_on_store(
        args.sae, args.store, point=args.point, run=args.run, model=args.model, max_texts=args.max_texts,
        max_length=args.max_length, progress=not args.json, device=args.device, model_dtype=args.model_dtype,
    )

    def show() -> None:
        columns = ["point", "rows", "L0", "FVU", "dead", "dense"]
        row = [record["point"], record["n_rows"], f"{record['l0']:.1f}", f"{record['fvu']:.4f}",
               f"{record['dead_fraction']:.3f}", f"{record['dense_fraction']:.3f}"]
        if args.model:
            columns += ["CE clean", "CE spliced", "CE zero", "loss recovered"]
            row += [f"{record['ce_clean_loss']:.4f}", f"{record['ce_spliced_loss']:.4f}",
                    f"{record['ce_zero_ablation_loss']:.4f}", f"{record['ce_loss_recovered']:.4f}"]
        print_table(columns, [row])

    finish(args, {"results": [record]}, show)


def cmd_sae_features(args: argparse.Namespace) -> None:
    from neurometry.features.examples import readable
    from neurometry.store.results import SAE_FEATURES
    from neurometry.workflows.sae import explain_on_store

    examples, name, store = explain_on_store(
        args.sae, args.store, point=args.point, run=args.run, top=args.top, window=args.window, model=args.model,
        name=args.name, progress=not args.json, device=args.device, model_dtype=args.model_dtype,
    )
    order = np.argsort(-examples.frequency, kind="stable")
    shown = [int(j) for j in order[: args.show]]

    def show() -> None:
        rows = []
        for j in shown:
            best = examples.top[j][0] if examples.top[j] else None
            context = f"{readable(best.left)[-40:]}[{readable(best.token)}]{readable(best.right)[:30]}" if best else ""
            rows.append([j, f"{examples.frequency[j]:.4f}", f"{examples.max_activation[j]:.3g}", context])
        print_table(["latent", "frequency", "max", "top example"], rows)
        print(f"saved {examples.d_sae} latents as {name!r} (kind {SAE_FEATURES.name}) in {store.path}")

    finish(args, {"results": [{"point": examples.point, "latent": j, **examples.latent(j)} for j in shown]}, show)


def cmd_sae_export(args: argparse.Namespace) -> None:
    from neurometry.features.examples import export_feature_direction
    from neurometry.features.io import load_sae

    check_output_path(args.out)
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
    p.add_argument(
        "--batch-size", type=int,
        help="rows per step (default: 4096, at most 1/32 of the training rows so small points get many steps)",
    )
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument(
        "--train-rows", type=int,
        help="rows to train on in all (default: one pass or 3,000 steps, whichever is more; "
        "give one of --train-rows, --steps, --epochs)",
    )
    p.add_argument("--steps", type=int, help="optimisation steps in all (instead of the default)")
    p.add_argument("--epochs", type=float, help="passes over the training rows (instead of the default)")
    p.add_argument("--held-out", type=float, default=0.05, help="fraction of inputs kept for sae eval")
    p.add_argument("--seed", type=whole_number(0), default=0)
    p.add_argument(
        "--min-position", type=int, default=0,
        help="leave out token rows before this position (1: each text's first token, often a huge-norm sink)",
    )
    p.add_argument("--max-steps", type=int, help="stop after this many steps (rerun to resume)")
    p.add_argument("--fresh", action="store_true", help="discard a checkpoint in --out instead of resuming")
    p.add_argument("--out", required=True, help="folder for cfg.json, sae_weights.safetensors, checkpoint/")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="data-parallel on Ray (the cluster at ADDRESS, else a local one; needs neurometry[ray]; "
                   "no checkpoint or resume)")
    p.add_argument("--workers", type=whole_number(1), default=2, help="with --ray: training workers (default 2)")
    add_device_arguments(p, model_dtype=False, what="the SAE")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sae_train)

    p = sae_sub.add_parser("eval", help="L0, FVU, dead/dense latents on held-out rows; CE loss recovered")
    p.add_argument("sae", help="folder of a trained SAE (ours or SAELens')")
    p.add_argument("store")
    p.add_argument("--point", help="default: the point the SAE was trained on")
    p.add_argument("--run")
    p.add_argument("--model", help="splice the SAE into this model and report CE loss recovered")
    p.add_argument("--max-texts", type=whole_number(1), default=64, help="held-out texts for the CE loss (default 64)")
    p.add_argument("--max-length", type=whole_number(1), default=128)
    add_device_arguments(p, what="the SAE (and --model)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sae_eval)

    p = sae_sub.add_parser("features", help="each latent's frequency and top token contexts, into the catalog")
    p.add_argument("sae")
    p.add_argument("store")
    p.add_argument("--point")
    p.add_argument("--run")
    p.add_argument("--top", type=whole_number(1), default=20, help="top examples per latent")
    p.add_argument("--window", type=whole_number(0), default=8, help="tokens of context each side")
    p.add_argument("--model", help="also the tokens each latent promotes through the unembedding")
    p.add_argument("--name", help="name in the catalog (default: the SAE folder's name)")
    p.add_argument("--show", type=whole_number(0), default=20, help="latents printed (most frequent first)")
    add_device_arguments(p, what="the SAE (and --model)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sae_features)

    p = sae_sub.add_parser("export", help="a latent's decoder direction as a steering vector file")
    p.add_argument("sae")
    p.add_argument("--latent", type=int, required=True)
    p.add_argument("--out", required=True, help="V.safetensors (V.json beside it)")
    p.set_defaults(func=cmd_sae_export)
