"""`neurometry compare`: parse, call :mod:`neurometry.workflows.compare`, print."""

from __future__ import annotations

import argparse
from pathlib import Path

from neurometry.cli.output import add_device_arguments, check_output_path, finish, plots, whole_number
from neurometry.errors import NeurometryError
from neurometry.tables.compare import print_comparison
from neurometry.workflows.compare import run_compare

# CLI flag -> metric parameter; only flags the user gives are passed on
METRIC_OPTIONS = {
    "kernel": "kernel",
    "estimator": "estimator",
    "bandwidth": "bandwidth",
    "batch_size": "batch_size",
    "rdm": "rdm",
    "compare": "compare",
    "alpha": "alpha",
    "scaling": "scaling",
    "k": "k",
    "epsilon": "epsilon",
    "keep": "keep",
    "folds": "folds",
    "direction": "direction",
}


def cmd_compare(args: argparse.Namespace) -> None:
    params = {
        param: getattr(args, flag)
        for flag, param in METRIC_OPTIONS.items()
        if getattr(args, flag) is not None
    }
    if args.plot:
        check_output_path(args.plot, "--plot")
    if args.series is not None:
        return _compare_series(args, params)
    if args.metric == "dsa":
        return _compare_dynamics(args, params)
    if args.reference is not None or args.pairwise:
        raise NeurometryError("--reference and --pairwise go with --series")
    try:
        document = run_compare(
            args.a,
            args.b,
            args.metric,
            points_a=args.points_a,
            points_b=args.points_b,
            run_a=args.run_a,
            run_b=args.run_b,
            rdm_key=args.rdm_key,
            subjects=args.subjects,
            permutations=args.permutations,
            bootstrap=args.bootstrap,
            confidence=args.confidence,
            seed=args.seed,
            progress=not args.json,
            device=args.device,
            **params,
        )
    except NeurometryError as exc:
        message = str(exc)
        for flag, param in METRIC_OPTIONS.items():  # speak in flags, not parameter names
            message = message.replace(
                f"unknown parameter {param!r}", f"option --{flag.replace('_', '-')} does not apply"
            )
        raise NeurometryError(message) from None
    title = f"{args.metric}: {Path(args.a).name} vs {Path(args.b or args.a).name}"
    finish(args, document, lambda: print_comparison(document), lambda: plots().plot_comparison(document, title))


def _compare_dynamics(args: argparse.Namespace, params: dict) -> None:
    from neurometry.workflows.dynamics import compare_dynamics

    if args.b is None:
        raise NeurometryError("dsa compares two systems: give A and B (.npy trajectories or stores)")
    if params or args.subjects or args.permutations or args.bootstrap or args.rdm_key:
        raise NeurometryError("dsa takes --n-delays, --delay-interval, --rank and --score; leave out the other options")
    document = compare_dynamics(args.a, args.b, points_a=args.points_a, points_b=args.points_b, run_a=args.run_a,
                                run_b=args.run_b, n_delays=args.n_delays, delay_interval=args.delay_interval,
                                rank=args.rank, score=args.score, seed=args.seed)

    def show() -> None:
        rank = args.rank or "numerical"
        print(f"DSA ({args.score} distance; 0 = the same dynamics), {args.n_delays} delays, rank {rank}:")
        for r in document["results"]:
            print(f"  {r['point_a']:>24}  vs  {r['point_b']:<24} {r['value']:.4f}")

    finish(args, document, show)


def _compare_series(args: argparse.Namespace, params: dict) -> None:
    from neurometry.store import open_store
    from neurometry.tables.training import print_series_similarity, print_step_matrix
    from neurometry.workflows.series import compare_series

    if args.b or args.points_b or args.run_a or args.run_b or args.subjects or args.permutations or args.bootstrap:
        raise NeurometryError(
            "--series compares the steps of one store's series; leave out B, --points-b, --run-a/b, --subjects, "
            "--permutations and --bootstrap"
        )
    store = open_store(args.a)
    document = compare_series(store, args.series, args.metric, args.points_a, reference=args.reference,
                              pairwise=args.pairwise, seed=args.seed, progress=not args.json, device=args.device,
                              **params)
    title = f"{args.metric}: {store.path.name} series {args.series}"
    if args.pairwise:
        finish(args, document, lambda: print_step_matrix(document), lambda: plots().plot_step_matrix(document, title))
    else:
        finish(args, document, lambda: print_series_similarity(document),
               lambda: plots().plot_series_similarity(document, title))


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="similarity of representations: CKA, RSA, shape metrics, CCA, neighbours, predictivity",
        description="Compare every point of A with every point of B (A with itself when B is omitted).",
    )
    p.add_argument("a", help="store, .npy (stimuli x features, or RDMs) or .mat of RDMs")
    p.add_argument(
        "b", nargs="?", help="the same kinds; omitted: A against itself (self-similarity across depth)"
    )
    p.add_argument(
        "--metric",
        required=True,
        help="cka, rsa, procrustes, permutation, cca, svcca, pwcca, "
        "mutual_knn, cknna, cycle_knn, linear_predictivity; dsa (dynamics of (trials, time, units) trajectories)",
    )
    p.add_argument("--points-a", nargs="+", metavar="GLOB", help="points of store A (default: all)")
    p.add_argument("--points-b", nargs="+", metavar="GLOB", help="points of store B, or names of B's RDMs")
    p.add_argument("--run-a", help="run of store A when it holds several")
    p.add_argument("--run-b", help="run of store B when it holds several")
    p.add_argument("--rdm-key", help="variable of a .mat file that holds the RDMs")
    p.add_argument("--series", help="compare each step of this series of store A with its --reference step")
    p.add_argument("--reference", type=int, default=None, metavar="STEP",
                   help="with --series: the step compared against (default: the last)")
    p.add_argument("--pairwise", action="store_true",
                   help="with --series: the step x step matrix at one point (name it with --points-a)")
    p.add_argument(
        "--subjects",
        action="store_true",
        help="B's RDMs are subjects of one region: compare with their pooled RDM and report the noise ceiling",
    )
    p.add_argument("--permutations", type=int, default=0, metavar="N", help="permutation test over stimuli")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N", help="bootstrap interval over stimuli")
    p.add_argument("--confidence", type=float, default=0.95, help="bootstrap interval level (default 0.95)")
    p.add_argument("--seed", type=whole_number(0), default=0)
    add_device_arguments(p, model_dtype=False, what="the linear algebra of cka, rsa and the kNN metrics")
    g = p.add_argument_group("metric options (each applies to the metrics named)")
    g.add_argument("--n-delays", type=whole_number(1), default=10, help="dsa: delays of the embedding (default 10)")
    g.add_argument("--delay-interval", type=whole_number(1), default=1, help="dsa: steps between delays")
    g.add_argument("--rank", type=whole_number(1), default=None, help="dsa: rank of the DMD (default: numerical)")
    g.add_argument("--score", choices=["angular", "euclidean"], default="angular", help="dsa: distance (default angular)")
    g.add_argument("--kernel", choices=["linear", "rbf"], help="cka kernel (default linear)")
    g.add_argument(
        "--estimator", choices=["biased", "unbiased", "minibatch"], help="cka HSIC estimator (default biased)"
    )
    g.add_argument(
        "--bandwidth", type=float, help="cka rbf bandwidth, a fraction of the median distance (default 1)"
    )
    g.add_argument("--batch-size", type=int, help="cka minibatch size")
    g.add_argument("--rdm", help="rsa RDM method: correlation, cosine, euclidean, sqeuclidean, mahalanobis")
    g.add_argument("--compare", help="rsa RDM comparison: spearman, pearson, kendall_tau_a, cosine, corr_cov")
    g.add_argument("--alpha", type=float, help="procrustes partial whitening in [0, 1] (1: none, 0: full)")
    g.add_argument(
        "--scaling",
        choices=["covariance", "netrep"],
        help="procrustes whitening scale for 0 < alpha < 1: covariance X'X/n (default) or netrep's X'X",
    )
    g.add_argument("--k", type=int, help="neighbours for mutual_knn, cknna, cycle_knn")
    g.add_argument(
        "--epsilon", type=float, help="cknna: added to its denominator (default 0; platonic-rep's code uses 1e-6)"
    )
    g.add_argument("--keep", type=float, help="svcca variance kept (default 0.99)")
    g.add_argument("--folds", type=int, help="linear_predictivity cross-validation folds")
    g.add_argument("--direction", choices=["a_to_b", "b_to_a", "mean"], help="linear_predictivity direction")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    p.add_argument("--plot", metavar="FILE.png", help="heatmap (layer x layer) or profile across depth")
    p.set_defaults(func=cmd_compare)

