"""A layer x layer matrix over all 31 residual points (embed + resid.0-29) of two SmolLM2-135M stores.

Store A holds the mean over tokens, store B the last token, of the same sentences (the package's
sentences.jsonl). ``compare_matrix`` prepares each of the 62 points once (centred Gram matrix for CKA;
RDM and its ranks for RSA) and scores the 961 pairs from those states; the naive loop calls the plain
function per pair, which redoes both points' preparation every time. Prints the prepare-call count,
both times, the ratio, and the largest difference between the two matrices (they must be equal).

    .venv/bin/python benchmarks/compare_layers.py [--rows 432] [--out benchmarks/out/smollm2-layers]
"""

from __future__ import annotations

import os

THREADS = 2
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(THREADS)

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import neurometry  # noqa: E402
from neurometry.compare import cka, compare_matrix, registry, rsa  # noqa: E402

torch.set_num_threads(THREADS)
SENTENCES = Path(neurometry.__file__).parent / "data" / "sentences.jsonl"
POINTS = ["embed", "resid.*"]


def stores(out: Path, rows: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    data = out / f"sentences-{rows}.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    data.write_text("".join(SENTENCES.read_text().splitlines(keepends=True)[:rows]))
    sides = []
    for reduce in ("mean", "last"):
        path = out / f"smollm2-{reduce}"
        neurometry.record("smollm2-135m", data, POINTS, path, reduce=reduce, run=reduce, progress=True)
        store = neurometry.open_store(path)
        sides.append({p.point: store.activations(p.point, run=reduce) for p in store.points(reduce)})
    return sides[0], sides[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=432)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/smollm2-layers"))
    args = ap.parse_args()
    a, b = stores(args.out, args.rows)
    print(
        f"A: {len(a)} points (mean), B: {len(b)} points (last token), {args.rows} sentences, d = {a['embed'].shape[1]}"
    )
    print(
        f"{'metric':<6} {'prepare calls':>13} {'matrix s':>9} {'per-pair s':>10} {'ratio':>7} {'max |diff|':>10}"
    )
    plain = {"cka": cka, "rsa": rsa}
    with threadpool_limits(THREADS):
        for name in ("cka", "rsa"):
            metric = registry.get_metric(name)
            calls = []

            def counting(x, p, prepare=metric.prepare, calls=calls):
                calls.append(1)
                return prepare(x, p)

            registry.METRICS[name] = dataclasses.replace(metric, prepare=counting)
            try:
                t = time.perf_counter()
                matrix = compare_matrix(a, b, name)
                t_matrix = time.perf_counter() - t
            finally:
                registry.METRICS[name] = metric
            t = time.perf_counter()
            naive = [plain[name](a[pa], b[pb]) for pa in a for pb in b]
            t_naive = time.perf_counter() - t
            diff = max(abs(r.value - v) for r, v in zip(matrix, naive, strict=True))
            print(
                f"{name:<6} {len(calls):>13} {t_matrix:>9.2f} {t_naive:>10.2f} {t_naive / t_matrix:>6.1f}x {diff:>10.1e}"
            )


if __name__ == "__main__":
    main()
