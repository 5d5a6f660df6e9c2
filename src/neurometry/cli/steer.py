"""`neurometry steer build|eval|generate`, `lens`, `patch` and `diff`: parse, call
:mod:`neurometry.workflows.steer` (or the steering library for what saves nothing), print."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from neurometry.cli.output import add_device_arguments, check_output_path, finish, parse_numbers, whole_number
from neurometry.errors import NeurometryError
from neurometry.store.results import DIFF, PATCH, STEER_SWEEP, ResultKind
from neurometry.tables.text import print_table


def cmd_steer_build(args: argparse.Namespace) -> None:
    from neurometry.store.store import is_store
    from neurometry.workflows.steer import build_from_pairs, build_from_store_groups

    check_output_path(args.out)
    if Path(args.pairs).is_dir() and is_store(Path(args.pairs)):
        path, vector, extra = build_from_store_groups(
            args.model, args.pairs, args.point, args.label, args.positive, args.out, run=args.run, method=args.method
        )
    else:
        position: int | str = int(args.position) if args.position.lstrip("-").isdigit() else args.position
        path, vector, extra = build_from_pairs(
            args.model, args.pairs, args.point, args.out, method=args.method, position=position, train=args.train,
            device=args.device, model_dtype=args.model_dtype,
        )
    document = {"vector": str(path), "model": args.model, "point": args.point, "method": args.method,
                "norm": float((vector**2).sum() ** 0.5), **extra}
    where = (
        f"built from {extra['train_pairs']} pairs, {extra['held_out_pairs']} held out"
        if "train_pairs" in extra
        else f"from run {extra['run']}"
    )
    finish(args, document, lambda: print(f"wrote {path} (norm {document['norm']:.3f}; {where})"))


def cmd_steer_eval(args: argparse.Namespace) -> None:
    from neurometry.plots import plot_sweep
    from neurometry.steer.evaluate import sweep_document
    from neurometry.workflows.steer import evaluate_vector

    alphas = parse_numbers(args.alphas, "--alphas")
    if args.plot:
        check_output_path(args.plot, "--plot")
    rows, meta, n_pairs = evaluate_vector(
        args.model, args.vector, alphas, pairs=args.pairs, max_pairs=args.max_pairs, store=args.store,
        device=args.device, model_dtype=args.model_dtype,
    )

    def show() -> None:
        print_table(
            ["alpha", "target logprob shift", "KL (neutral)", "perplexity (neutral)"],
            [[f"{r.alpha:g}", f"{r.target_logprob_shift:+.3f}", f"{r.kl:.4f}", f"{r.perplexity:.2f}"] for r in rows],
        )
        if args.store:
            print(f"saved in {args.store} (kind {STEER_SWEEP.name}, run {args.model}, name {Path(args.vector).stem})")

    title = f"{args.model} {meta['point']} {meta.get('method', '')}: {n_pairs} held-out pairs"
    finish(args, sweep_document(rows), show, lambda: plot_sweep(rows, title))


def cmd_steer_generate(args: argparse.Namespace) -> None:
    from neurometry.models import load_model
    from neurometry.steer import generations
    from neurometry.workflows.steer import placement, vector_for

    if args.max_new_tokens < 1:
        raise NeurometryError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if not math.isfinite(args.alpha):
        raise NeurometryError(f"--alpha must be a finite number, got {args.alpha}")
    device, dtype = placement(args.device, args.model_dtype)
    vector, meta = vector_for(args.model, args.vector)
    model = load_model(args.model, device=device, dtype=dtype)
    table = generations(model, vector, meta["point"], args.alpha, args.prompt, args.max_new_tokens)

    def show() -> None:
        for row in table:
            print(f"prompt:    {row['prompt']}\nunsteered: {row['unsteered']!r}\nsteered:   {row['steered']!r}\n")

    finish(args, {"alpha": args.alpha, "point": meta["point"], "generations": table}, show)


def cmd_lens(args: argparse.Namespace) -> None:
    from neurometry.models import load_model
    from neurometry.steer import logit_lens

    model = load_model(args.model, device=args.device, dtype=args.model_dtype)
    result = logit_lens(model, args.prompt, points=args.points, position=args.position, top_k=args.top_k,
                        target=args.target)
    document = result.to_dict()

    def show() -> None:
        headers = ["point", "top tokens"] + (["target rank", "target p"] if args.target else [])
        rows = []
        for r in document["points"]:
            tops = ", ".join(f"{t!r} {p:.2f}" for t, p in zip(r["top_tokens"], r["top_probs"], strict=True))
            rows.append([r["point"], tops] + ([str(r["target_rank"]), f"{r['target_prob']:.3f}"] if args.target else []))
        print_table(headers, rows)

    finish(args, document, show)


def cmd_patch(args: argparse.Namespace) -> None:
    from neurometry.plots import plot_patching
    from neurometry.steer.patching import pair_id
    from neurometry.workflows.steer import patch_pair

    if args.plot:
        check_output_path(args.plot, "--plot")
    given = {"clean": args.clean, "corrupted": args.corrupted, "correct": args.correct, "wrong": args.wrong}
    result, pair = patch_pair(args.model, given, example=args.example, points=args.points, heads=not args.no_heads,
                              store=args.store, device=args.device, model_dtype=args.model_dtype)

    def show() -> None:
        print(f"clean:     {pair['clean']!r} -> {pair['correct']!r} (logit difference {result.clean_ld:+.3f})")
        print(f"corrupted: {pair['corrupted']!r} -> {pair['wrong']!r} (logit difference {result.corrupted_ld:+.3f})")
        print("restored share of the clean logit difference (0 = corrupted, 1 = clean), point x position:")
        tokens = [t.strip() or repr(t) for t in result.tokens]
        print_table(
            ["point", *tokens],
            [[p, *(f"{v:.2f}" for v in row)] for p, row in zip(result.points, result.scores, strict=True)],
        )

    def saved() -> None:
        show()
        if args.store:
            name = pair_id(pair["clean"], pair["corrupted"], pair["correct"], pair["wrong"])
            print(f"saved in {args.store} (kind {PATCH.name}, run {args.model}, name {name!r})")

    finish(args, result.to_dict(), saved, lambda: plot_patching(result))


def cmd_diff(args: argparse.Namespace) -> None:
    from neurometry.steer.diffing import lens_text
    from neurometry.workflows.steer import diff_models

    result, name = diff_models(
        args.base, args.finetuned, texts=args.texts, points=args.points, lens_points=args.lens_points,
        first_k=args.first_k, skip_first=args.skip_first, top_k=args.top_k, store=args.store,
        device=args.device, model_dtype=args.model_dtype,
    )
    document = result.to_dict()

    def show() -> None:
        print_table(
            ["point", "difference norm", "lens of the difference (top tokens)"],
            [[r["point"], f"{r['norm']:.2f}", lens_text(r.get("lens", []), 5)] for r in document["points"]],
        )
        if args.store:
            print(f"saved in {args.store} (kind {DIFF.name}, run {args.base}, name {name})")

    finish(args, document, show)


def _add_store_argument(parser: argparse.ArgumentParser, kind: ResultKind, what: str) -> None:
    parser.add_argument(
        "--store",
        metavar="STORE",
        help=f"also save {what} in this store's catalog (kind {kind.name}; created if missing), for the report",
    )


def add_parsers(sub: argparse._SubParsersAction) -> None:
    steer = sub.add_parser("steer", help="build, evaluate and apply steering vectors")
    steer_sub = steer.add_subparsers(dest="steer_command", required=True)

    p = steer_sub.add_parser("build", help="a steering vector from contrastive pairs")
    p.add_argument("model")
    p.add_argument(
        "pairs",
        help="JSONL with positive/negative prompts, a built-in set (sentiment, formality, english_french), "
        "or a store with --label and --positive",
    )
    p.add_argument("--point", required=True, help="e.g. resid.12")
    p.add_argument("--method", default="mean_diff", choices=["mean_diff", "pca", "logistic"])
    p.add_argument(
        "--position", default="-1", help="token index (default -1: the last), or first, last, mean"
    )
    p.add_argument(
        "--train",
        type=int,
        help="pairs to build from (the first N; default two thirds); the rest are held out for steer eval",
    )
    p.add_argument("--out", required=True, help="V.safetensors (a V.json with the metadata goes beside it)")
    p.add_argument("--label", help="with a store as PAIRS: the metadata column that splits the two groups")
    p.add_argument(
        "--positive", help="with a store as PAIRS: the value of --label marking the positive group"
    )
    p.add_argument("--run", help="with a store as PAIRS: the run, when it holds several")
    add_device_arguments(p)  # with a store as PAIRS no model runs and they are not used
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_steer_build)

    p = steer_sub.add_parser(
        "eval", help="sweep alpha: target log-prob shift, KL and perplexity on neutral text"
    )
    p.add_argument("model")
    p.add_argument("vector", help="V.safetensors from steer build")
    p.add_argument("--alphas", default="-2,0,1,2,4,8")
    p.add_argument(
        "--pairs", help="pairs with target/opposite (default: the held-out pairs of the vector's set)"
    )
    p.add_argument("--max-pairs", type=whole_number(1), default=20, help="held-out pairs used (default 20)")
    add_device_arguments(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", metavar="FILE.png")
    _add_store_argument(p, STEER_SWEEP, "the sweep")
    p.set_defaults(func=cmd_steer_eval)

    p = steer_sub.add_parser("generate", help="unsteered and steered greedy continuations, side by side")
    p.add_argument("model")
    p.add_argument("vector")
    p.add_argument("--alpha", type=float, required=True)
    p.add_argument("--prompt", action="append", required=True, help="repeat for several prompts")
    p.add_argument("--max-new-tokens", type=int, default=30)
    add_device_arguments(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_steer_generate)

    p = sub.add_parser("lens", help="logit lens: each layer's residual read through the unembedding")
    p.add_argument("model")
    p.add_argument("--prompt", required=True)
    p.add_argument("--target", help="a single-token continuation whose rank to follow, e.g. ' Paris'")
    p.add_argument("--points", nargs="+", help="default: embed and every resid point")
    p.add_argument("--position", type=int, default=-1)
    p.add_argument("--top-k", type=whole_number(1), default=5)
    add_device_arguments(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_lens)

    p = sub.add_parser(
        "diff", help="model diffing: mean activation difference of a finetune and its logit lens"
    )
    p.add_argument("base")
    p.add_argument("finetuned", help="a model, or a .safetensors state dict of the base architecture")
    p.add_argument("--texts", help="unrelated texts, one per line (default: built-in neutral sentences)")
    p.add_argument("--points", nargs="+", help="default: every resid point")
    p.add_argument(
        "--lens-points", nargs="+", help="points whose difference to read through the lens (default all)"
    )
    p.add_argument("--first-k", type=whole_number(1), default=5, help="positions averaged (default 5)")
    p.add_argument(
        "--skip-first", type=whole_number(0), default=0, help="leave out the first positions (attention sinks)"
    )
    p.add_argument("--top-k", type=whole_number(1), default=10)
    add_device_arguments(p, what="both models")
    p.add_argument("--json", action="store_true")
    _add_store_argument(p, DIFF, "the norms and lens tokens")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser(
        "patch", help="activation patching of the residual stream (and heads), clean into corrupted"
    )
    p.add_argument("model")
    p.add_argument("--example", type=int, help="one of the shipped factual pairs (0..)")
    p.add_argument("--clean")
    p.add_argument("--corrupted")
    p.add_argument("--correct", help="the clean answer (one token, e.g. ' Paris')")
    p.add_argument("--wrong", help="the corrupted answer (one token)")
    p.add_argument("--points", nargs="+", help="default: every resid point")
    p.add_argument("--no-heads", action="store_true", help="skip per-head patching")
    add_device_arguments(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", metavar="FILE.png", help="layer x position heatmap")
    _add_store_argument(p, PATCH, "the scores")
    p.set_defaults(func=cmd_patch)
