"""Semi-NMF, PCA, ICA and a TopK SAE on the same SmolLM2 MLP activations, scored by the same metrics.

SmolLM2-135M ``mlp_act.15`` (the input of layer 15's down-projection, act(gate) * up, 1,536 wide:
what Shafran et al. 2025 factorise) is recorded over the first --tokens tokens of the offline English
corpus, one row per token without each text's first token. Every method is fitted on the rows of
the first 90% of the texts and scored on the rest with ``neurometry.features.metrics``: held-out
FVU, L0 (non-zero codes per row) and dead / dense code fractions. PCA and ICA codes are dense by
construction; semi-NMF's are non-negative and partly sparse; the SAE's have exactly k non-zeros.
2 threads.

    .venv/bin/python benchmarks/decompositions.py [--tokens 60000] [--components 128] [--k 16]
"""

from __future__ import annotations

import os

THREADS = 2
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(THREADS)

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from neurometry.features import corpus  # noqa: E402
from neurometry.features.buffer import held_out_start, row_mask  # noqa: E402
from neurometry.features.decompositions import fit_decomposition  # noqa: E402
from neurometry.features.metrics import reconstruction_metrics  # noqa: E402
from neurometry.features.train import TrainConfig, train_sae  # noqa: E402
from neurometry.record import record  # noqa: E402
from neurometry.store import open_store  # noqa: E402

torch.set_num_threads(THREADS)
POINT = "mlp_act.15"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=str(Path.home() / ".cache" / "neurometry" / "decompositions"))
    ap.add_argument("--tokens", type=int, default=60_000)
    ap.add_argument("--components", type=int, default=128, help="semi-NMF / PCA / ICA components and SAE width")
    ap.add_argument("--k", type=int, default=16, help="SAE active latents")
    ap.add_argument("--max-fit-rows", type=int, default=20_000, help="rows the matrix factorisations are fitted on")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    text_file = work / f"english-{args.tokens}.jsonl"
    if not text_file.is_file():
        count = corpus.tokenizer_counter(corpus.smollm2_tokenizer())
        corpus.write_jsonl(corpus.build_corpus(count, max_tokens=args.tokens), text_file)
    store_path = work / "smollm2-mlp.nmstore"
    record("smollm2-135m", text_file, [POINT], out=store_path, reduce="tokens", batch_size=16, max_tokens=160)
    store = open_store(store_path)
    info = store.point_info(POINT)
    keep = row_mask(store, POINT, None, 1)
    split = held_out_start(store, POINT, None, 0.1)
    x = store.activations(POINT).astype(np.float32).reshape(info.n_rows, -1)
    train_x, test_x = x[:split][keep[:split]], x[split:][keep[split:]]
    print(
        f"smollm2-135m {POINT}: {len(x)} token rows x {x.shape[1]} ({len(train_x)} training, {len(test_x)} held out,"
        f" first tokens left out); {args.components} components; fits on <= {args.max_fit_rows} rows; threads {THREADS}"
    )
    rows = []
    for name, options in (("pca", {}), ("ica", {"max_iter": 400}), ("semi_nmf", {"max_iter": 200, "l1": 0.01})):
        start = time.perf_counter()
        model = fit_decomposition(name, train_x, args.components, max_rows=args.max_fit_rows, **options)
        codes = model.transform(test_x)
        m = reconstruction_metrics(test_x, model.inverse_transform(codes), codes)
        rows.append((name, m, time.perf_counter() - start))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        trained = train_sae(
            store, POINT, Path(tmp) / "sae", architecture="topk", d_sae=args.components, k=args.k,
            train=TrainConfig(batch_size=512, lr=1e-3, held_out=0.1, min_position=1, train_rows=4 * len(train_x)),
            progress=False,
        )
        sae = trained.sae
        with torch.no_grad():
            t = torch.from_numpy(test_x)
            z = sae.encode(t)
            m = reconstruction_metrics(t, sae.decode(z), z)
        rows.append((f"sae topk k={args.k}", m, time.perf_counter() - start))
    print(f"{'method':<16} {'held-out FVU':>13} {'L0':>7} {'dead':>6} {'dense':>6} {'seconds':>8}")
    for name, m, seconds in rows:
        print(f"{name:<16} {m.fvu:>13.4f} {m.l0:>7.1f} {m.dead_fraction:>6.3f} {m.dense_fraction:>6.3f} {seconds:>8.1f}")
    json.dump(
        [{"method": n, **m.as_dict(), "seconds": s} for n, m, s in rows],
        (work / "results.json").open("w"),
        indent=1,
    )


if __name__ == "__main__":
    main()
