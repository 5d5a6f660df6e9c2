"""`neurometry surprisal` (word surprisal and word-level states of a causal LM) and `neurometry fit` (reading
times regressed on them)."""

from __future__ import annotations

import argparse

from neurometry.cli.output import add_device_arguments, finish, whole_number

WORDS_SHOWN = 10  # the most surprising words the table lists


def cmd_surprisal(args: argparse.Namespace) -> None:
    from neurometry.models import load_model
    from neurometry.tables.language import print_surprisal
    from neurometry.workflows.language import surprisal_to_store

    model = load_model(args.model, device=args.device, dtype=args.model_dtype)
    run, scores = surprisal_to_store(
        model, args.words, args.out, points=args.points, lens=args.lens, correction=args.correction,
        window=args.window, overlap=args.overlap, word_state=args.word_state, text_column=args.text_column,
        position_column=args.position_column, word_column=args.word_column, run=args.run,
        overwrite=args.overwrite, progress=not args.json,
    )
    columns = ["item", "zone", "word", "surprisal", "entropy"] + [
        c for c in scores.words.columns if c.startswith(("surprisal_", "entropy_"))]
    results = [{key: (None if isinstance(value, float) and value != value else value) for key, value in row.items()}
               for row in scores.words[columns].to_dict(orient="records")]
    document = {"run": run, "store": str(args.out), "model": model.name, "settings": scores.settings,
                "results": results}
    finish(args, document, lambda: print_surprisal(document, WORDS_SHOWN))


def cmd_fit(args: argparse.Namespace) -> None:
    from neurometry.language.reading_fit import ExclusionRules
    from neurometry.tables.language import print_reading_fit
    from neurometry.workflows.language import reading_fit

    rules = ExclusionRules(first_last=not args.keep_first_last, punctuation=args.exclude_punctuation,
                           min_target=args.min_target, max_target=args.max_target)
    baseline = [name.strip() for name in args.baseline.split(",") if name.strip()]
    document = reading_fit(args.store, args.behaviour, target=args.target, baseline=baseline,
                           spillover=args.spillover, group=args.group, run=args.run, rules=rules,
                           permutations=args.permutations, seed=args.seed, text_column=args.text_column,
                           position_column=args.position_column)
    finish(args, document, lambda: print_reading_fit(document))


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "surprisal", help="per-word surprisal and entropy of a causal LM (and through the logit lens), into a store",
        description="Score every word of a words table (item, zone, word: the Natural Stories layout) with a "
                    "causal language model: surprisal in bits (subword log-probabilities summed, with the "
                    "beginning-of-word correction of Pimentel & Meister 2024 for tokenizers that put the space "
                    "on the next word), next-token entropy at the word's onset, and with --lens the same at every "
                    "residual layer. Each text is read with its own preceding context only. One stored row per "
                    "word, with the word-level states of --points.",
    )
    p.add_argument("model", help="a causal LM: a zoo name (smollm2-135m), a local folder or module:function")
    p.add_argument("words", help="TSV/CSV with one row per word: item (text id), zone (position from 1), word")
    p.add_argument("--out", required=True, help="the store (created if missing)")
    p.add_argument("--points", nargs="+", default=None, metavar="POINT",
                   help="word-level hidden states to store (names or globs, e.g. 'resid.*')")
    p.add_argument("--lens", action="store_true",
                   help="also surprisal and entropy at every residual layer through the logit lens")
    p.add_argument("--correction", choices=["auto", "bow", "none"], default="auto",
                   help="beginning-of-word correction (auto: exactly for tokenizers that put the space on the "
                        "next word)")
    p.add_argument("--window", type=whole_number(2), default=None,
                   help="tokens per forward for long texts (default the model's context, at most 2048)")
    p.add_argument("--overlap", type=whole_number(1), default=None,
                   help="tokens of context carried between windows (default half a window)")
    p.add_argument("--word-state", choices=["last", "mean"], default="last",
                   help="a word's state: its last subword token's (default) or the mean over its tokens")
    p.add_argument("--text-column", default="item")
    p.add_argument("--position-column", default="zone")
    p.add_argument("--word-column", default="word")
    p.add_argument("--run", default=None, help="run name (default surprisal-MODEL)")
    p.add_argument("--overwrite", action="store_true", help="replace a run of that name")
    add_device_arguments(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_surprisal)

    p = sub.add_parser(
        "fit", help="reading times regressed on word surprisal: slope, held-out gain over a baseline, permutation p",
        description="Join a per-word behaviour table to a surprisal run on (item, zone) and fit OLS of the target "
                    "on baseline predictors plus surprisal of the word and of --spillover previous words, for "
                    "the model's output and every lens layer. Held-out gain in log-likelihood per word and in "
                    "R^2 leave one --group out; the p-value shuffles surprisal within texts.",
    )
    p.add_argument("store")
    p.add_argument("behaviour", help="TSV/CSV with item, zone (and word) and the measure, one row per word")
    p.add_argument("--target", default="meanItemRT", help="the measure to explain (ms; default meanItemRT)")
    p.add_argument("--baseline", default="length,log_frequency,position",
                   help="comma-separated baseline predictors (length and log_frequency are computed when the "
                        "table has none; position is the zone)")
    p.add_argument("--spillover", type=whole_number(0), default=2, help="previous words' surprisal as predictors")
    p.add_argument("--group", default="item", help="held-out folds: leave one value of this column out")
    p.add_argument("--run", default=None, help="the surprisal run (default: the store's only one)")
    p.add_argument("--permutations", type=whole_number(0), default=1000)
    p.add_argument("--seed", type=whole_number(0), default=0)
    p.add_argument("--exclude-punctuation", action="store_true", help="drop words with attached punctuation")
    p.add_argument("--keep-first-last", action="store_true", help="keep each text's first and last word")
    p.add_argument("--min-target", type=float, default=100.0, help="drop words read faster than this (ms)")
    p.add_argument("--max-target", type=float, default=3000.0, help="drop words read slower than this (ms)")
    p.add_argument("--text-column", default="item")
    p.add_argument("--position-column", default="zone")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_fit)
