"""`neurometry detect truth` (truth directions per layer, held-out and grouped, their transfer across statement
sets, and the output-side baselines), `neurometry detect causal` (the truth direction steered into the model) and
`neurometry detect ood` (out-of-distribution scores of one point)."""

from __future__ import annotations

import argparse

from neurometry.cli.output import add_device_arguments, finish, finite_number, whole_number
from neurometry.errors import NeurometryError

BASELINE_STATEMENTS = 200  # statements the output baselines judge
TRUTH_SHOTS = 4  # solved examples in a few-shot True/False prompt


def cmd_truth(args: argparse.Namespace) -> None:
    from neurometry.tables.detect import print_truth
    from neurometry.workflows.detect import detect_truth

    baseline_options = {"--model": args.model, "--baseline-statements": args.baseline_statements,
                        "--shots": args.shots}
    given = [flag for flag, value in baseline_options.items() if value is not None]
    if given and not args.baselines:
        raise NeurometryError(f"{', '.join(given)} go{'es' if len(given) == 1 else ''} with --baselines; add it or "
                              "leave them out")
    if args.control and args.label in args.control:
        raise NeurometryError(f"--control {args.label} is the label itself (it would read as perfect accuracy); name "
                              "a column beside the label, such as the entity or the answer")
    document = detect_truth(args.store, label=args.label, group=args.group, labels_file=args.labels,
                            groups_file=args.groups, methods=args.methods, points=args.points,
                            run=args.run, folds=args.folds, seed=args.seed, transfer=args.transfer,
                            dynamics=args.dynamics, baselines=args.baselines, controls=args.control, model=args.model,
                            baseline_statements=args.baseline_statements or BASELINE_STATEMENTS,
                            shots=TRUTH_SHOTS if args.shots is None else args.shots, progress=not args.json)
    finish(args, document, lambda: print_truth(document))


def cmd_causal(args: argparse.Namespace) -> None:
    from neurometry.tables.detect import print_causal
    from neurometry.workflows.detect import detect_causal

    document = detect_causal(args.store, points=args.points, model=args.model, label=args.label, group=args.group,
                             alphas=tuple(args.alphas), statements=args.statements, shots=args.shots, run=args.run,
                             seed=args.seed, progress=not args.json)
    finish(args, document, lambda: print_causal(document))


def cmd_ood(args: argparse.Namespace) -> None:
    from neurometry.tables.detect import print_ood, print_ood_series
    from neurometry.workflows.detect import detect_ood, detect_ood_series

    if args.series is not None:
        if args.point is None or args.label is None:
            raise NeurometryError("--series needs --point (the features) and --label (the class column)")
        if args.labels or args.classifier or args.run or args.bootstrap is not None:
            raise NeurometryError("--series reads labels from every run of the series, fits a readout at each step and "
                                  "gives no intervals; leave out --labels, --classifier, --run and --bootstrap")
        document = detect_ood_series(args.store, series=args.series, point=args.point, label=args.label,
                                     in_values=args.in_values, scores=args.scores, seed=args.seed,
                                     progress=not args.json, device=args.device, knn_k=args.k)
        finish(args, document, lambda: print_ood_series(document))
        return

    document = detect_ood(args.store, point=args.point, label=args.label, labels_file=args.labels,
                          in_values=args.in_values, scores=args.scores, classifier=args.classifier, run=args.run,
                          bootstrap=1000 if args.bootstrap is None else args.bootstrap, seed=args.seed,
                          device=args.device, knn_k=args.k)
    finish(args, document, lambda: print_ood(document))


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="read reliability from the inside: truth directions per layer, out-of-distribution scores")
    verbs = p.add_subparsers(dest="detector", required=True)
    q = verbs.add_parser(
        "truth", help="held-out truth decoding per layer (mass-mean, covariance-corrected, logistic)",
        description="Fit a truth direction at every point of a store of true/false statements (Marks & Tegmark "
                    "2023) on k-1 folds and score the held-out fold: accuracy and AUROC per point and method. "
                    "--group keeps the statements of one entity on one side of every split; --transfer trains "
                    "on this store and tests on stores of other statement sets, and the reverse.",
    )
    q.add_argument("store", help="a store of statements recorded with their label (neurometry dataset truth-cities), "
                                 "or a .npy of statements x features with --labels")
    q.add_argument("--labels", default=None, help="for a .npy: a .npy of one true/false label per row")
    q.add_argument("--groups", default=None, help="for a .npy: a .npy of one group per row (kept in one fold)")
    q.add_argument("--label", default="truth", help="the metadata column of true/false labels (default truth)")
    q.add_argument("--group", default=None, help="a metadata column whose statements stay in one fold (e.g. group)")
    q.add_argument("--methods", nargs="+", default=None, choices=["mass_mean", "mass_mean_iid", "logistic"],
                   help="default: all three")
    q.add_argument("--points", nargs="+", default=None, help="points or globs (default every stored point)")
    q.add_argument("--run", default=None)
    q.add_argument("--folds", type=whole_number(2), default=5)
    q.add_argument("--seed", type=whole_number(0), default=0)
    q.add_argument("--transfer", nargs="+", default=None, metavar="STORE",
                   help="stores of other statement sets recorded at the same points")
    q.add_argument("--dynamics", action="store_true",
                   help="also the layer-wise semantic dynamics detector over the points as one trajectory "
                        "(point 'trajectory')")
    q.add_argument("--baselines", action="store_true",
                   help="also what the model says from its outputs alone: the statement's log-probability and its "
                        "few-shot True/False answer (contextually calibrated), on --baseline-statements statements")
    q.add_argument("--control", nargs="+", default=None, metavar="COLUMN",
                   help="controls that read no activations: each statement scored by how often statements sharing its "
                        "value of COLUMN (the answer named, the entity) were true in the training folds")
    q.add_argument("--model", default=None, help="the model for --baselines (default: the one that recorded the run)")
    q.add_argument("--baseline-statements", type=whole_number(2), default=None,
                   help=f"statements the baselines judge (default {BASELINE_STATEMENTS})")
    q.add_argument("--shots", type=whole_number(0), default=None,
                   help=f"solved examples in the baselines' few-shot prompt (default {TRUTH_SHOTS})")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_truth)
    c = verbs.add_parser(
        "causal", help="the causal test: add the truth direction while the model judges held-out statements",
        description="At each point, the mass-mean truth direction (difference of the class means of the stored "
                    "statements, less the held-out ones) is added with each --alphas while the model judges "
                    "--statements held-out statements in a few-shot \"This statement is: True/False\" prompt "
                    "(Marks & Tegmark 2023, section 5). Reported: the mean log-odds log P(True) - log P(False) "
                    "per alpha for true and false statements, and its shift from the smallest alpha to the largest "
                    "(positive is the expected sign).",
    )
    c.add_argument("store", help="a store of statements recorded with --reduce last (neurometry dataset truth-cities)")
    c.add_argument("--points", nargs="+", required=True, help="points to steer at, e.g. resid.12")
    c.add_argument("--model", default=None, help="the model (default: the one that recorded the run)")
    c.add_argument("--label", default="truth", help="the metadata column of true/false labels (default truth)")
    c.add_argument("--group", default=None, help="a column whose statements are held out together (e.g. group)")
    c.add_argument("--alphas", nargs="+", type=finite_number, default=[-3.0, 0.0, 3.0])
    c.add_argument("--statements", type=whole_number(2), default=60, help="held-out statements judged (default 60)")
    c.add_argument("--shots", type=whole_number(0), default=4, help="solved examples in the prompt (default 4)")
    c.add_argument("--run", default=None)
    c.add_argument("--seed", type=whole_number(0), default=0)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_causal)
    o = verbs.add_parser(
        "ood", help="out-of-distribution scores (msp, energy, mahalanobis, knn, vim, neco) of one point",
        description="Rows whose --label is one of --in are in-distribution, the rest out. Half the in-distribution "
                    "rows fit each score, the rest are scored; AUROC, AUPR and FPR at 95%% TPR with bootstrap "
                    "intervals (higher scores mean more out-of-distribution).",
    )
    o.add_argument("store", help="a store, or a .npy of features (rows x features) with --labels")
    o.add_argument("--point", default=None, help="the point (default: the store's only one)")
    o.add_argument("--label", default=None, help="the metadata column of class labels")
    o.add_argument("--labels", default=None, help="a .npy of one label per row (for a .npy of features)")
    o.add_argument("--in", dest="in_values", nargs="+", required=True, metavar="VALUE",
                   help="label values that are in-distribution")
    o.add_argument("--scores", nargs="+", default=None, choices=["msp", "energy", "mahalanobis", "knn", "vim", "neco"])
    o.add_argument("--classifier", default=None,
                   help="a .safetensors with W (classes x features) and b: the logits' readout (default: a logistic "
                        "regression fitted on the fitting half)")
    o.add_argument("--run", default=None)
    o.add_argument("--series", default=None,
                   help="every checkpoint of this series: each score's AUROC per step against NC1 of the fitting rows "
                        "(does a score separate better as the features collapse? Ammar et al. 2024)")
    add_device_arguments(o, model_dtype=False, what="the kNN search")
    o.add_argument("--bootstrap", type=whole_number(0), default=None,
                   help="resamples behind each interval (default 1000; 0: none)")
    o.add_argument("--k", type=whole_number(1), default=None,
                   help="neighbours of the knn score (default 50, Sun et al.'s CIFAR-10 value)")
    o.add_argument("--seed", type=whole_number(0), default=0)
    o.add_argument("--json", action="store_true")
    o.set_defaults(func=cmd_ood)
