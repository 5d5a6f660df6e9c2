"""Every OOD score of neurometry.detect against a plain scikit-learn / NumPy / SciPy implementation of the same
score, on 20,000 x 576 synthetic penultimate features, side by side in one run.

Data (seeded): 10 classes, each row a class mean (N(0, 1) per unit) plus a rank-32 within-class variation and
N(0, 0.3^2) noise, through a ReLU; the fit set is 20,000 such rows; the scored set is 10,000 ID rows and
10,000 OOD rows (random centres in place of the class means). Logits come from the nearest-class-mean
linear classifier W = class means, b = -|mean|^2 / 2.

Each timing is fit + score of the 20,000 scored rows, the median of --repeats runs (ours and the reference
alternate), torch and BLAS/OpenMP both on --threads threads. References:

- msp, energy: scipy.special.softmax / logsumexp.
- mahalanobis: scikit-learn EmpiricalCovariance of the class-centred rows and ``.mahalanobis`` per class
  (the library call), and the NumPy quadratic form with ``precision_`` per class (Lee et al.'s code).
- knn: scikit-learn NearestNeighbors(algorithm="brute") on the L2-normalised rows, k = 50.
- vim: pytorch-ood's ViM formulas (EmpiricalCovariance, np.linalg.eig, NumPy products), D = 288.
- neco: the NECO authors' formulas (StandardScaler, PCA, NumPy norms), dim = 9, times the max logit.

    .venv/bin/python benchmarks/ood_scores.py [--n 20000] [--d 576] [--k 50] [--repeats 3] [--threads 2]

On a GPU machine, ``OOD_BENCH_THREADS=16 python benchmarks/ood_scores.py --device cuda --scores knn`` runs our
kNN search on the GPU (both sets copied there inside the timing) against scikit-learn on all 16 cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

THREADS = int(os.environ.get("OOD_BENCH_THREADS", "2"))
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, str(THREADS))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from numpy.linalg import norm, pinv  # noqa: E402
from scipy.special import logsumexp, softmax  # noqa: E402
from sklearn.covariance import EmpiricalCovariance  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.neighbors import NearestNeighbors  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from neurometry.detect import get_ood_score, ood  # noqa: E402


def synthetic_features(n: int, d: int, classes: int = 10, rank: int = 32, seed: int = 0):
    """(fit rows (n, d), their labels (n,), scored rows (n, d): n/2 ID then n/2 OOD, classifier (W, b))."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 1, (classes, d))
    basis = rng.normal(0, 1, (rank, d)) / np.sqrt(rank)
    spectrum = 1.0 / np.sqrt(1 + np.arange(rank))

    def draw(rows: int, ood_rows: bool) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, classes, rows)
        centre = rng.normal(0, 0.6, (rows, d)) if ood_rows else means[y]
        latent = rng.normal(0, 1, (rows, rank)) * spectrum
        return np.maximum(centre + 2 * latent @ basis + rng.normal(0, 0.3, (rows, d)), 0), y

    fit, labels = draw(n, False)
    scored = np.concatenate([draw(n // 2, False)[0], draw(n - n // 2, True)[0]])
    class_means = np.stack([fit[labels == c].mean(0) for c in range(classes)])
    return fit, labels, scored, (class_means, -0.5 * (class_means**2).sum(1))


def reference_scores(k: int, vim_dim: int, neco_dim: int):
    """name -> f(fit, labels, fit_logits, scored, scored_logits, W, b) -> (n,) scores, higher = more OOD."""

    def class_centred(fit, labels):
        means = np.stack([fit[labels == c].mean(0) for c in np.unique(labels)])
        return means, EmpiricalCovariance(assume_centered=True).fit(fit - means[labels])

    def mahalanobis_sklearn(fit, labels, fl, x, xl, w, b):
        means, ec = class_centred(fit, labels)
        return np.min([ec.mahalanobis(x - m) for m in means], axis=0)

    def mahalanobis_numpy(fit, labels, fl, x, xl, w, b):
        means, ec = class_centred(fit, labels)
        return np.min([(((x - m) @ ec.precision_) * (x - m)).sum(1) for m in means], axis=0)

    def knn(fit, labels, fl, x, xl, w, b):
        nn = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(fit / norm(fit, axis=1, keepdims=True))
        return nn.kneighbors(x / norm(x, axis=1, keepdims=True))[0][:, -1]

    def vim(fit, labels, fl, x, xl, w, b):
        u = -np.matmul(pinv(w), b)
        ec = EmpiricalCovariance(assume_centered=True).fit(fit - u)
        eig_vals, eigen_vectors = np.linalg.eig(ec.covariance_)
        ns = np.ascontiguousarray((eigen_vectors.T[np.argsort(eig_vals * -1)[vim_dim:]]).T).real
        alpha = fl.max(axis=-1).mean() / norm(np.matmul(fit - u, ns), axis=-1).mean()
        return norm(np.matmul(x - u, ns), axis=-1) * alpha - logsumexp(xl, axis=-1)

    def neco(fit, labels, fl, x, xl, w, b):
        ss = StandardScaler()
        train, test = ss.fit_transform(fit), ss.transform(x)
        reduced = PCA(train.shape[1]).fit(train).transform(test)[:, :neco_dim]
        return -norm(reduced, axis=1) / norm(test, axis=1) * xl.max(axis=-1)

    return {
        "msp": lambda fit, labels, fl, x, xl, w, b: -softmax(xl, axis=1).max(axis=1),
        "energy": lambda fit, labels, fl, x, xl, w, b: -logsumexp(xl, axis=1),
        "mahalanobis": mahalanobis_sklearn,
        "mahalanobis (numpy)": mahalanobis_numpy,
        "knn": knn,
        "vim": vim,
        "neco": neco,
    }


def timed(fn, repeats: int) -> tuple[np.ndarray, list[float]]:
    times, value = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return value, times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="fit rows, and scored rows (half ID, half OOD)")
    ap.add_argument("--d", type=int, default=576)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=THREADS)
    ap.add_argument("--device", default=None, help="where our kNN search runs (e.g. cuda); default the CPU")
    ap.add_argument("--scores", nargs="+", default=None, help="the scores to time (default all)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    fit, labels, scored, (w, b) = synthetic_features(args.n, args.d)
    fit_logits, scored_logits = fit @ w.T + b, scored @ w.T + b
    vim_dim = ood.vim_principal_dim(args.d)
    references = reference_scores(args.k, vim_dim, neco_dim=len(w) - 1)
    if args.scores:
        references = {name: ref for name, ref in references.items() if name.split()[0] in args.scores}
    params = {"knn": {"k": args.k, "device": args.device}}
    print(
        f"data: fit {args.n} x {args.d} (10 classes), scored {len(scored)} (half OOD); torch and BLAS threads "
        f"{args.threads}; fit + score, median of {args.repeats}; torch {torch.__version__}; our kNN on "
        f"{args.device or 'cpu'}"
    )
    print(f"{'score':<20} {'ours s':>8} {'ref s':>8} {'speed-up':>9} {'max rel diff':>13}")
    with threadpool_limits(args.threads):
        # first-use checks (and a GPU's start-up) outside the timing
        get_ood_score("knn", k=1, device=args.device).fit(fit[:2000]).score(scored[:10])
        for name, reference in references.items():
            key = name.split()[0]

            def ours(key: str = key) -> np.ndarray:
                score = get_ood_score(key, **params.get(key, {}))
                score.fit(fit, labels, logits=fit_logits, classifier=(w, b))
                return score.score(scored, scored_logits)

            ours_times, ref_times = [], []
            for _ in range(args.repeats):  # alternate, so that load on the shared machine hits both alike
                value, t = timed(ours, 1)
                ours_times += t
                ref_value, t = timed(lambda reference=reference: reference(fit, labels, fit_logits, scored, scored_logits, w, b), 1)
                ref_times += t
            t_ours, t_ref = statistics.median(ours_times), statistics.median(ref_times)
            diff = float(np.max(np.abs(value - ref_value)) / np.max(np.abs(ref_value)))
            print(f"{name:<20} {t_ours:>8.3f} {t_ref:>8.3f} {t_ref / t_ours:>8.1f}x {diff:>13.1e}")
            if key == "knn":
                print(f"  knn search stages: {ood.KTH_NEIGHBOUR_STATS}")


if __name__ == "__main__":
    main()
