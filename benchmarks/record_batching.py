"""Token-budget batching, length-sorted inside a window, against file-order batches of 32.

What is measured (all-MiniLM-L6-v2 tokenizer and model, truncation to 128 tokens):

* **padding fraction**: padded tokens the model runs over that are padding, for file-order batches of
  32 (what ``record`` does without ``--max-batch-tokens``) and for ``--max-batch-tokens`` 512 and 4096
  (= 32 x 128, the same worst-case batch), on the 432 bundled demo sentences and on the English corpus of
  ``neurometry.features.corpus`` (``build_corpus``: Python docstrings and man pages; ``--corpus-tokens``,
  default the full 1.1M tokens, counted by the MiniLM tokenizer).
* **tokens/s**: ``neurometry.record(model, slice, ["resid.*"], out, reduce="tokens", dtype="float16")``
  over the first ``--slice`` passages of that corpus, ours (``max_batch_tokens=4096``) and file order
  (``batch_size=32``), interleaved, in this one process; the median per-repetition ratio is printed
  (the machine is shared: only ratios measured in one run mean anything).

Run::

    python benchmarks/record_batching.py                    # corpus 1.1M tokens, slice 2,000 passages, 3 reps
    python benchmarks/record_batching.py --quick            # corpus 100k tokens, slice 300, 1 rep
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

BATCH_SIZE = 32
MAX_TOKENS = 128
BUDGET = BATCH_SIZE * MAX_TOKENS


def lengths_of(tokenizer, texts: list[str]) -> np.ndarray:
    encoded = tokenizer(texts, truncation=True, max_length=MAX_TOKENS)["input_ids"]
    return np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))


def show_padding(name: str, lengths: np.ndarray, budgets: tuple[int, ...] = (512, BUDGET)) -> dict:
    from neurometry.record import batching

    print(f"{name}: {len(lengths):,} inputs, {int(lengths.sum()):,} real tokens")
    figures = {"inputs": len(lengths), "real_tokens": int(lengths.sum())}
    plans = {f"file order x{BATCH_SIZE}": batching.fixed_batches(len(lengths), BATCH_SIZE)}
    plans.update({f"sorted, budget {b}": [x for w in batching.plan(lengths, b) for x in w.batches] for b in budgets})
    for label, batches in plans.items():
        fraction, run = batching.padding_fraction(lengths, batches), batching.padded_tokens(lengths, batches)
        print(f"  {label:>22}: padding {fraction:6.1%}, {run:,} tokens run in {len(batches):,} batches")
        figures[label] = {"padding_fraction": fraction, "tokens_run": run, "batches": len(batches)}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus-tokens", type=int, default=1_100_000)
    parser.add_argument("--slice", type=int, default=2000, help="passages recorded for tokens/s")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.corpus_tokens, args.slice, args.reps = 100_000, 300, 1
    torch.set_num_threads(args.threads)

    from neurometry import record
    from neurometry.demo import bundled_data
    from neurometry.features.corpus import build_corpus, tokenizer_counter
    from neurometry.models import load_model

    model = load_model("minilm")
    figures = {}
    demo = [json.loads(line)["text"] for line in bundled_data().read_text().splitlines() if line.strip()]
    figures["demo"] = show_padding("demo sentences", lengths_of(model.tokenizer, demo))

    passages = build_corpus(tokenizer_counter(model.tokenizer), max_tokens=args.corpus_tokens)
    texts = [p.text for p in passages]
    figures["corpus"] = show_padding(f"English corpus ({args.corpus_tokens:,} tokens)", lengths_of(model.tokenizer, texts))

    with tempfile.TemporaryDirectory(prefix="neurometry-batching-") as tmp:
        data = Path(tmp) / "slice.jsonl"
        data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[: args.slice]))
        real = int(lengths_of(model.tokenizer, texts[: args.slice]).sum())
        options = {"sorted": {"max_batch_tokens": BUDGET}, "file order": {"batch_size": BATCH_SIZE}}
        times: dict[str, list[float]] = {name: [] for name in options}
        for rep in range(args.reps):
            names = list(options) if rep % 2 == 0 else list(reversed(options))
            for name in names:
                gc.collect()
                began = time.perf_counter()
                record(model, data, ["resid.*"], Path(tmp) / f"{name.replace(' ', '-')}-{rep}", reduce="tokens",
                       dtype="float16", max_tokens=MAX_TOKENS, progress=False, **options[name])
                times[name].append(time.perf_counter() - began)
        ratio = statistics.median(f / s for f, s in zip(times["file order"], times["sorted"], strict=True))
        for name, spent in times.items():
            print(f"record {name}: {real / statistics.median(spent):,.0f} tokens/s over {args.slice:,} passages")
        print(f"tokens/s sorted / file order: {ratio:.2f}x (median of {args.reps} interleaved repetitions)")
        figures["speed"] = {"passages": args.slice, "real_tokens": real, "seconds": times, "ratio": ratio}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
