"""`neurometry steer build|eval|generate`, `neurometry lens`, `neurometry patch` and `neurometry diff`:
the I/O side of :mod:`neurometry.steer` (contrastive pairs from files or the built-in sets, vectors as
safetensors + JSON, tables, plots, one JSON document, and with ``--store`` the results in a store's
catalog for the report)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from neurometry.commands.table import emit_json, print_table
from neurometry.errors import NeurometryError


def load_pairs(source: str) -> tuple[list[dict[str, str]], str]:
    """Contrastive pairs from a built-in set name or a JSONL file with positive / negative (and target /
    opposite for evaluation); returns (pairs, the name to record)."""
    from neurometry.steer import steering_pairs
    from neurometry.steer.evaluate import STEERING_SETS

    if source in STEERING_SETS:
        return steering_pairs(source), source
    path = Path(source)
    if not path.is_file():
        raise NeurometryError(
            f"{source} is neither a built-in set ({', '.join(STEERING_SETS)}) nor a file; give a JSONL of pairs"
        )
    try:
        pairs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise NeurometryError(f"{path} is not JSONL ({exc}); one JSON object per line") from None
    missing = [i for i, p in enumerate(pairs) if not {"positive", "negative"} <= set(p)]
    if missing:
        raise NeurometryError(
            f"{len(missing)} rows of {path} lack 'positive' or 'negative' (first: row {missing[0]})"
        )
    return pairs, str(path.resolve())


def cmd_steer_build(args: argparse.Namespace) -> None:
    from neurometry.store.store import is_store

    if Path(args.pairs).is_dir() and is_store(Path(args.pairs)):
        _build_from_store(args)
        return
    from neurometry.models import load_model
    from neurometry.steer import build_vector, save_vector

    pairs, source = load_pairs(args.pairs)
    train = args.train if args.train is not None else max(2, (len(pairs) * 2) // 3)
    if not 2 <= train <= len(pairs):
        raise NeurometryError(f"--train must be between 2 and {len(pairs)} pairs, got {train}")
    model = load_model(args.model)
    position: int | str = int(args.position) if args.position.lstrip("-").isdigit() else args.position
    used = pairs[:train]
    vector = build_vector(
        model,
        [p["positive"] for p in used],
        [p["negative"] for p in used],
        args.point,
        method=args.method,
        position=position,
    )
    path = save_vector(
        args.out,
        vector,
        model=args.model,
        point=args.point,
        method=args.method,
        position=position,
        pairs=source,
        train_pairs=train,
    )
    _report_built(args, path, vector, {"train_pairs": train, "held_out_pairs": len(pairs) - train})


def _build_from_store(args: argparse.Namespace) -> None:
    """Two labelled groups of a store: the mean of the --positive rows of --label minus the rest's."""
    from neurometry.steer import build_from_store, save_vector

    if args.label is None or args.positive is None:
        raise NeurometryError("building from a store needs --label COLUMN and --positive VALUE")
    if args.method != "mean_diff":
        raise NeurometryError("a vector from store groups is a mean difference; use --method mean_diff")
    from neurometry.store import open_store

    store = open_store(args.pairs)
    run = args.run
    if run is None:
        runs = [r.run_id for r in store.runs()]
        if len(runs) != 1:
            raise NeurometryError(f"{args.pairs} holds runs {', '.join(runs)}; choose one with --run")
        run = runs[0]
    recorded = store.run_info(run).model
    if recorded != args.model:
        raise NeurometryError(f"run {run!r} was recorded from {recorded}, not {args.model}; give that model")
    meta = store.metadata(run)
    # the metadata value written as given (1 for an int column, True for a bool one); unmatched, the string
    # itself, and build_from_store then names the values there are
    values = meta[args.label].unique().tolist() if args.label in meta.columns else []
    positive: Any = next((v for v in values if str(v) == args.positive), args.positive)
    vector = build_from_store(store, run, args.point, args.label, positive)
    path = save_vector(
        args.out,
        vector,
        model=args.model,
        point=args.point,
        method="mean_diff",
        position=reduce if (reduce := store.run_info(run).reduce) != "tokens" else "all",
        store=str(Path(args.pairs).resolve()),
        run=run,
        label=args.label,
        positive=str(args.positive),
    )
    _report_built(args, path, vector, {"run": run})


def _report_built(args: argparse.Namespace, path: Any, vector: Any, extra: dict[str, Any]) -> None:
    document = {
        "vector": str(path),
        "model": args.model,
        "point": args.point,
        "method": args.method,
        "norm": float((vector**2).sum() ** 0.5),
        **extra,
    }
    if args.json:
        emit_json(document)
        return
    where = (
        f"built from {extra['train_pairs']} pairs, {extra['held_out_pairs']} held out"
        if "train_pairs" in extra
        else f"from run {extra['run']}"
    )
    print(f"wrote {path} (norm {document['norm']:.3f}; {where})")


def _load_vector(args: argparse.Namespace) -> tuple[Any, dict]:
    from neurometry.steer import load_vector

    vector, meta = load_vector(args.vector)
    if meta.get("model") and meta["model"] != args.model:
        raise NeurometryError(f"{args.vector} was built on {meta['model']}, not {args.model}; use that model")
    return vector, meta


def _check_store(path: str) -> None:
    """Fail before the computation, not after it: --store must be a store or a new folder in an existing one."""
    from neurometry.store.store import check_store_path

    check_store_path(path, create=True)


def _result_store(path: str) -> Any:
    """The --store to save into, created when missing (its path was checked by :func:`_check_store`)."""
    from neurometry.store import open_store

    return open_store(path, create=True)


def _add_store_argument(parser: argparse.ArgumentParser, kind: str, what: str) -> None:
    parser.add_argument(
        "--store",
        metavar="STORE",
        help=f"also save {what} in this store's catalog (kind {kind}; created if missing), for the report",
    )


def cmd_steer_eval(args: argparse.Namespace) -> None:
    from neurometry.models import load_model
    from neurometry.steer import plot_sweep, sweep
    from neurometry.steer.evaluate import save_sweep, sweep_document

    if args.store:
        _check_store(args.store)
    vector, meta = _load_vector(args)
    source = args.pairs or meta.get("pairs")
    if not source:
        raise NeurometryError(f"{args.vector} records no pairs; give --pairs FILE or a built-in set name")
    pairs, pairs_name = load_pairs(source)
    held_out = pairs[int(meta.get("train_pairs", 0)) :] if args.pairs is None else pairs
    held_out = [p for p in held_out if "target" in p and "opposite" in p]
    if not held_out:
        raise NeurometryError("no held-out pairs with 'target' and 'opposite' continuations to evaluate on")
    alphas = [float(a) for a in args.alphas.split(",")]
    model = load_model(args.model)
    used = held_out[: args.max_pairs]
    rows = sweep(model, vector, meta["point"], alphas, used)
    document = sweep_document(rows)
    if args.store:
        save_sweep(
            _result_store(args.store),
            rows,
            args.model,
            meta["point"],
            Path(args.vector).stem,
            pairs=pairs_name,
            n_pairs=len(used),
            vector_metadata=meta,
        )
    if args.plot:
        plot_sweep(
            rows,
            args.plot,
            f"{args.model} {meta['point']} {meta.get('method', '')}: {len(used)} held-out pairs",
        )
    if args.json:
        emit_json(document)
        return
    print_table(
        ["alpha", "target logprob shift", "KL (neutral)", "perplexity (neutral)"],
        [
            [f"{r.alpha:g}", f"{r.target_logprob_shift:+.3f}", f"{r.kl:.4f}", f"{r.perplexity:.2f}"]
            for r in rows
        ],
    )
    if args.plot:
        print(f"wrote {args.plot}")
    if args.store:
        print(f"saved in {args.store} (kind steer_sweep, run {args.model}, name {Path(args.vector).stem})")


def cmd_steer_generate(args: argparse.Namespace) -> None:
    from neurometry.models import load_model
    from neurometry.steer import generations

    vector, meta = _load_vector(args)
    model = load_model(args.model)
    table = generations(model, vector, meta["point"], args.alpha, args.prompt, args.max_new_tokens)
    if args.json:
        emit_json({"alpha": args.alpha, "point": meta["point"], "generations": table})
        return
    for row in table:
        print(f"prompt:    {row['prompt']}\nunsteered: {row['unsteered']!r}\nsteered:   {row['steered']!r}\n")


def cmd_lens(args: argparse.Namespace) -> None:
    from neurometry.models import load_model
    from neurometry.steer import logit_lens

    model = load_model(args.model)
    result = logit_lens(
        model, args.prompt, points=args.points, position=args.position, top_k=args.top_k, target=args.target
    )
    document = result.to_dict()
    if args.json:
        emit_json(document)
        return
    headers = ["point", "top tokens"] + (["target rank", "target p"] if args.target else [])
    rows = []
    for r in document["points"]:
        tops = ", ".join(f"{t!r} {p:.2f}" for t, p in zip(r["top_tokens"], r["top_probs"], strict=True))
        rows.append(
            [r["point"], tops] + ([str(r["target_rank"]), f"{r['target_prob']:.3f}"] if args.target else [])
        )
    print_table(headers, rows)


def cmd_patch(args: argparse.Namespace) -> None:
    from neurometry.models import load_model
    from neurometry.steer import factual_pairs, patch_residual, plot_patching, save_patching

    if args.store:
        _check_store(args.store)
    if args.example is not None:
        examples = factual_pairs()
        if not 0 <= args.example < len(examples):
            raise NeurometryError(f"--example must be 0..{len(examples) - 1} (the shipped factual pairs)")
        pair = examples[args.example]
    else:
        pair = {
            "clean": args.clean,
            "corrupted": args.corrupted,
            "correct": args.correct,
            "wrong": args.wrong,
        }
        if None in pair.values():
            raise NeurometryError("give --clean, --corrupted, --correct and --wrong, or --example N")
    model = load_model(args.model)
    result = patch_residual(
        model,
        pair["clean"],
        pair["corrupted"],
        pair["correct"],
        pair["wrong"],
        points=args.points,
        heads=not args.no_heads,
    )
    saved = save_patching(_result_store(args.store), result, args.model) if args.store else None
    if args.plot:
        plot_patching(result, args.plot)
    if args.json:
        emit_json(result.to_dict())
        return
    print(f"clean:     {pair['clean']!r} -> {pair['correct']!r} (logit difference {result.clean_ld:+.3f})")
    print(
        f"corrupted: {pair['corrupted']!r} -> {pair['wrong']!r} (logit difference {result.corrupted_ld:+.3f})"
    )
    print("restored share of the clean logit difference (0 = corrupted, 1 = clean), point x position:")
    tokens = [t.strip() or repr(t) for t in result.tokens]
    print_table(
        ["point", *tokens],
        [[p, *(f"{v:.2f}" for v in row)] for p, row in zip(result.points, result.scores, strict=True)],
    )
    if args.plot:
        print(f"wrote {args.plot}")
    if saved:
        print(f"saved in {args.store} (kind patch, run {args.model}, name {saved[0]['name']!r})")


def load_finetuned(base_spec: str, finetuned: str) -> Any:
    """A model spec, or a .safetensors state dict for the base model's architecture (loaded into a fresh
    copy of the base), e.g. the weights ``scripts/finetune_narrow.py`` caches."""
    from safetensors.torch import load_file

    from neurometry.models import load_model

    path = Path(finetuned)
    if path.suffix != ".safetensors":
        return load_model(finetuned)
    if not path.is_file():
        raise NeurometryError(f"no file {path}; give a model or a .safetensors state dict of {base_spec}")
    model = load_model(base_spec)
    state = load_file(str(path))
    missing, unexpected = model.module.load_state_dict(state, strict=False)
    if unexpected or len(missing) == len(model.module.state_dict()):
        raise NeurometryError(
            f"{path} does not hold weights of {base_spec} ({len(unexpected)} unexpected tensors); "
            "give a state dict saved from the same architecture"
        )
    model.module.eval()
    return model


def cmd_diff(args: argparse.Namespace) -> None:
    from neurometry.models import load_model
    from neurometry.steer import (
        DiffResult,
        difference_lens,
        mean_activation_difference,
        neutral_texts,
        save_diff,
    )
    from neurometry.steer.diffing import NEUTRAL, count_positions, lens_text

    if args.store:
        _check_store(args.store)
    if args.texts:
        path = Path(args.texts)
        if not path.is_file():
            raise NeurometryError(f"no file {path}; give a text file with one text per line")
        texts = [line for line in path.read_text().splitlines() if line.strip()]
        texts_name = str(path.resolve())
    else:
        texts, texts_name = neutral_texts(20), NEUTRAL
    base = load_model(args.base)
    finetuned = load_finetuned(args.base, args.finetuned)
    differences = mean_activation_difference(
        base, finetuned, texts, points=args.points, first_k=args.first_k, skip_first=args.skip_first
    )
    lens = {
        name: difference_lens(base, diff, name, top_k=args.top_k)
        for name, diff in differences.items()
        if diff.any()
        and (args.lens_points is None or name in args.lens_points)  # a zero difference has no lens
    }
    n_positions = count_positions(base, texts, args.first_k, args.skip_first)
    result = DiffResult(differences, args.first_k, n_positions, args.skip_first, lens)
    # a weights file by its absolute path, so the name means the same file from any folder
    weights = Path(args.finetuned)
    name = str(weights.resolve()) if weights.suffix == ".safetensors" else args.finetuned
    if args.store:
        save_diff(_result_store(args.store), result, args.base, name, texts=texts_name)
    document = result.to_dict()
    if args.json:
        emit_json(document)
        return
    print_table(
        ["point", "difference norm", "lens of the difference (top tokens)"],
        [[r["point"], f"{r['norm']:.2f}", lens_text(r.get("lens", []), 5)] for r in document["points"]],
    )
    if args.store:
        print(f"saved in {args.store} (kind diff, run {args.base}, name {name})")


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
    p.add_argument("--max-pairs", type=int, default=20, help="held-out pairs used (default 20)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", metavar="FILE.png")
    _add_store_argument(p, "steer_sweep", "the sweep")
    p.set_defaults(func=cmd_steer_eval)

    p = steer_sub.add_parser("generate", help="unsteered and steered greedy continuations, side by side")
    p.add_argument("model")
    p.add_argument("vector")
    p.add_argument("--alpha", type=float, required=True)
    p.add_argument("--prompt", action="append", required=True, help="repeat for several prompts")
    p.add_argument("--max-new-tokens", type=int, default=30)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_steer_generate)

    p = sub.add_parser("lens", help="logit lens: each layer's residual read through the unembedding")
    p.add_argument("model")
    p.add_argument("--prompt", required=True)
    p.add_argument("--target", help="a single-token continuation whose rank to follow, e.g. ' Paris'")
    p.add_argument("--points", nargs="+", help="default: embed and every resid point")
    p.add_argument("--position", type=int, default=-1)
    p.add_argument("--top-k", type=int, default=5)
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
    p.add_argument("--first-k", type=int, default=5, help="positions averaged (default 5)")
    p.add_argument(
        "--skip-first", type=int, default=0, help="leave out the first positions (attention sinks)"
    )
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--json", action="store_true")
    _add_store_argument(p, "diff", "the norms and lens tokens")
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
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", metavar="FILE.png", help="layer x position heatmap")
    _add_store_argument(p, "patch", "the scores")
    p.set_defaults(func=cmd_patch)
