"""A SmolLM2-135M middle-layer SAE end to end on this 2-core CPU: corpus, record, train, evaluate, explain.

1. Corpus: ``neurometry.features.corpus`` (docstrings of installed packages + English man pages,
   no download), cut at --tokens SmolLM2 tokens; see scripts/make_english_corpus.py.
2. Record ``resid.15`` of smollm2-135m, one float16 row per token, into a store.
3. Train a TopK SAE (--latents, --k) on the first 95% of the texts, one pass, without each text's first
   token (an attention sink: 1% of the rows but 99% of the variance at resid.15).
4. Evaluate on the held-out 5%: L0, FVU, dead and dense fractions; CE loss recovered with the SAE
   spliced into the model on --ce-texts held-out texts.
5. Feature examples (top contexts, quantile samples, logit-lens tokens) for every latent, into the
   store's catalog; a few latents printed.

Prints the wall time of each stage and the total. Every stage reuses what an earlier run left in
--work (the corpus file, a complete recording, a finished SAE), so a rerun only redoes what is missing.

    .venv/bin/python benchmarks/sae_smollm2.py [--work ~/.cache/neurometry/sae-smollm2] [--tokens 1100000]
"""

from __future__ import annotations

import os

THREADS = 2
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(THREADS)

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from neurometry.features import corpus  # noqa: E402
from neurometry.features.evaluate import ce_loss_recovered, evaluate_sae  # noqa: E402
from neurometry.features.examples import (  # noqa: E402
    feature_examples,
    feature_logit_tokens,
    readable,
    save_feature_examples,
)
from neurometry.features.train import TrainConfig, train_sae  # noqa: E402
from neurometry.models import load_model  # noqa: E402
from neurometry.record import record  # noqa: E402
from neurometry.store import open_store  # noqa: E402

torch.set_num_threads(THREADS)
MODEL = "smollm2-135m"


def first_token_share(store, point: str) -> None:
    """Print how much of the point's variance sits on each text's first token (why training skips it)."""
    position = store.row_index()["position"].to_numpy()
    first = position == 0
    total_sum, first_sum = 0.0, 0.0
    sum_x = sum_first = None
    norms = []
    at = 0
    for block in store.iter_chunks(point):
        x = np.asarray(block, dtype=np.float64)
        mask = first[at : at + len(x)]
        at += len(x)
        squares = (x * x).sum(1)
        norms.append(np.sqrt(squares))
        total_sum += squares.sum()
        first_sum += squares[mask].sum()
        sum_x = x.sum(0) if sum_x is None else sum_x + x.sum(0)
        sum_first = x[mask].sum(0) if sum_first is None else sum_first + x[mask].sum(0)
    n, n_first = len(first), int(first.sum())
    mean = sum_x / n
    # sum over rows of ||x - mean||^2, all rows and first-token rows, from running sums
    total = total_sum - n * mean @ mean
    part = first_sum - 2 * mean @ sum_first + n_first * mean @ mean
    norm = np.concatenate(norms)
    print(
        f"first tokens: {n_first} of {n} rows ({n_first / n:.1%}) hold {part / total:.1%} of the variance; median norm"
        f" {np.median(norm[first]):.0f} against {np.median(norm[~first]):.0f} for the other tokens"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=str(Path.home() / ".cache" / "neurometry" / "sae-smollm2"))
    ap.add_argument("--tokens", type=int, default=1_100_000, help="corpus size in SmolLM2 tokens")
    ap.add_argument("--point", default="resid.15")
    ap.add_argument("--latents", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--ce-texts", type=int, default=128)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}

    t = time.perf_counter()
    text_file = work / f"english-{args.tokens}.jsonl"
    if not text_file.is_file():
        count = corpus.tokenizer_counter(corpus.smollm2_tokenizer())
        corpus.write_jsonl(corpus.build_corpus(count, max_tokens=args.tokens), text_file)
    rows = [json.loads(line) for line in text_file.read_text().splitlines()]
    by_source: dict[str, int] = {}
    for r in rows:
        by_source[r["source"]] = by_source.get(r["source"], 0) + r["tokens"]
    times["corpus"] = time.perf_counter() - t
    print(f"corpus: {len(rows)} passages, {sum(by_source.values())} tokens {by_source} ({times['corpus']:.0f} s)")

    t = time.perf_counter()
    store_path = work / "smollm2.nmstore"
    model = load_model(MODEL)
    result = record(
        model, text_file, [args.point], out=store_path, reduce="tokens", dtype="float16", batch_size=16,
        max_tokens=160,
    )
    times["record"] = time.perf_counter() - t
    store = open_store(store_path)
    info = store.point_info(args.point)
    speed = "already recorded" if result.already_complete else f"{info.n_rows / times['record']:.0f} tokens/s"
    print(f"record: {info.n_rows} token rows of {args.point} ({times['record']:.0f} s, {speed})")

    first_token_share(store, args.point)

    t = time.perf_counter()
    out = work / f"sae-topk-{args.latents}-k{args.k}"
    # a finished SAE resumes at its last step, so a rerun returns at once
    trained = train_sae(
        store, args.point, out, architecture="topk", d_sae=args.latents, k=args.k,
        train=TrainConfig(batch_size=args.batch_size, lr=args.lr, min_position=1, epochs=1),  # the documented run
    )
    sae = trained.sae
    rate = f"{trained.rows_per_second:.0f} rows/s" if trained.resumed_from < trained.steps else "already trained"
    print(
        f"train: {trained.steps} steps, {trained.rows_seen} rows ({rate}), "
        f"last batch L0 {trained.history[-1]['l0']:.1f} FVU {trained.history[-1]['fvu']:.3f}"
    )
    times["train"] = time.perf_counter() - t
    start = int(sae.cfg.extra["held_out_start"])

    t = time.perf_counter()
    metrics = evaluate_sae(sae, store, args.point, start=start)
    first_input = int(store.row_index()["input_row"].iloc[start])
    texts = [r["text"] for r in rows[first_input:]][: args.ce_texts]
    ce = ce_loss_recovered(sae, model, args.point, texts)
    times["evaluate"] = time.perf_counter() - t
    print(
        f"held-out rows {metrics.n_rows}: L0 {metrics.l0:.1f}, FVU {metrics.fvu:.4f}, dead {metrics.dead_fraction:.4f},"
        f" dense {metrics.dense_fraction:.4f}; CE on {len(texts)} held-out texts ({ce.n_tokens} tokens): clean"
        f" {ce.clean_loss:.4f}, spliced {ce.spliced_loss:.4f}, zero-ablated {ce.zero_ablation_loss:.4f},"
        f" loss recovered {ce.loss_recovered:.4f}"
    )

    t = time.perf_counter()
    examples = feature_examples(sae, store, args.point, top=20, window=8)
    examples.logit_tokens = feature_logit_tokens(sae, model).as_records()
    save_feature_examples(store, examples, None, out.name)
    times["features"] = time.perf_counter() - t
    alive = np.flatnonzero(examples.frequency > 0)
    print(f"features: {len(alive)} of {sae.cfg.d_sae} latents fire; examples saved as {out.name!r}")
    rng = np.random.default_rng(0)
    for j in sorted(rng.choice(alive, size=min(8, len(alive)), replace=False)):
        tops = examples.top[j][:3]
        shown = " | ".join(f"{readable(c.left)[-30:]}[{readable(c.token)}]{readable(c.right)[:20]}" for c in tops)
        promoted = [readable(t) for t, _ in examples.logit_tokens[j]["promoted"][:5]] if examples.logit_tokens else []
        print(f"  latent {j} (freq {examples.frequency[j]:.4f}): {shown}  -> promotes {promoted}")

    total = sum(times.values())
    print("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()) + f"; total {total:.0f} s")


if __name__ == "__main__":
    main()
