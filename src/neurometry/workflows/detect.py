"""`detect` as a library: truth directions per point of a store (held-out, grouped), their transfer across
stores of other statement sets (:data:`~neurometry.store.results.TRUTH_PROBE`, ``TRUTH_TRANSFER``), and
out-of-distribution scores of a point split into in- and out-of-distribution rows by a label
(:data:`~neurometry.store.results.OOD`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from neurometry.arrays import as_rows
from neurometry.detect.evaluation import evaluate, roc_curve
from neurometry.detect.ood import OOD_SCORES, get_ood_score
from neurometry.detect.semantic_dynamics import held_out_dynamics
from neurometry.detect.truth import TRUTH_METHODS, held_out_truth, transfer_matrix
from neurometry.errors import NeurometryError
from neurometry.store.results import OOD, TRUTH_PROBE, TRUTH_TRANSFER, Result, set_name
from neurometry.threads import blas_threads
from neurometry.workflows.measure import classifier_file, metadata_labels, read_labels
from neurometry.workflows.probe import point_sources, read_rows

ROC_POINTS = 101  # the ROC curve saved with each score: TPR at FPR 0, 0.01, ..., 1

TRAJECTORY = "trajectory"  # the point name of the semantic dynamics detector, which reads every chosen point


def _labelled(source: str, label: str, group: str | None, run: str | None, points: list[str] | None
              ) -> tuple[list[Any], Any, str | None, np.ndarray, np.ndarray | None]:
    sources, store, run = point_sources(source, run, points)
    if store is None:
        raise NeurometryError(f"{source} is an array; `detect truth` reads a store with a {label!r} column")
    truth = metadata_labels(sources[0], label)
    groups = metadata_labels(sources[0], group) if group is not None else None
    if any(value is None or (isinstance(value, float) and np.isnan(value)) for value in truth):
        raise NeurometryError(f"column {label!r} has missing labels; drop those statements first")
    return sources, store, run, truth, groups


def detect_truth(
    source: str,
    *,
    label: str = "label",
    group: str | None = None,
    methods: list[str] | None = None,
    points: list[str] | None = None,
    run: str | None = None,
    folds: int = 5,
    seed: int = 0,
    transfer: list[str] | None = None,
    dynamics: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Held-out truth decoding of every chosen point of store ``source`` by each method
    (:func:`neurometry.detect.truth.held_out_truth`), saved; with ``transfer`` stores (other statement sets
    recorded at the same points), the set x set transfer matrix per point and method as well; with ``dynamics``,
    the layer-wise semantic dynamics detector over the chosen points as one trajectory (point ``trajectory``, on
    the same folds). Returns
    ``{"results": [{"point", "method", "accuracy", "auroc", "n", "folds"}, ...], "transfer": [...]}``."""
    methods = methods or list(TRUTH_METHODS)
    sources, store, run, truth, groups = _labelled(source, label, group, run, points)
    others, opened = {}, [store]
    try:
        for other in transfer or []:
            other_sources, other_store, _, other_truth, _ = _labelled(other, label, None, None,
                                                                      [s.name for s in sources])
            opened.append(other_store)
            others[Path(other).name] = ({s.name: s for s in other_sources}, other_truth)
        records, matrices = _decode(source, sources, truth, groups, methods, folds, seed, others, progress)
        if dynamics:
            if len(sources) < 3:
                raise NeurometryError("--dynamics reads a trajectory through depth: give three or more points")
            with blas_threads():
                states = np.stack([read_rows(src) for src in sources], axis=1)
                records.append({"point": TRAJECTORY, **held_out_dynamics(states, truth, folds=folds, groups=groups,
                                                                         seed=seed).to_dict()})
        settings = {"label": label, "group": group, "folds": folds, "seed": seed}
        TRUTH_PROBE.save(store, run, [
            Result(r["point"], r["method"], r["accuracy"], params=settings, extra={"auroc": r["auroc"], "n": r["n"]},
                   result_set=set_name(**settings))
            for r in records
        ])
        if matrices:
            TRUTH_TRANSFER.save(store, run, [
                Result(m["point"], m["method"], _off_diagonal_mean(m["accuracy"]), params={"label": label},
                       extra={"names": m["names"], "accuracy": m["accuracy"], "auroc": m["auroc"]},
                       result_set=set_name(label=label, sets=m["names"]))
                for m in matrices
            ])
    finally:
        for each in opened:
            each.close()
    return {"run": run, "label": label, "group": group, "results": records, "transfer": matrices}


def _decode(source: str, sources: list[Any], truth: np.ndarray, groups: np.ndarray | None, methods: list[str],
            folds: int, seed: int, others: dict[str, Any], progress: bool) -> tuple[list[dict], list[dict]]:
    """Held-out scores per point and method, and the transfer matrices with the ``others`` sets."""
    records, matrices = [], []
    with blas_threads():
        for src in tqdm(sources, desc="truth", unit="point", file=sys.stderr, disable=not progress, delay=1.0):
            x = read_rows(src)
            for method in methods:
                records.append({"point": src.name, **held_out_truth(x, truth, method, folds=folds, groups=groups,
                                                                    seed=seed).to_dict()})
            if others:
                sets = {Path(source).name: (x, truth)}
                for name, (by_point, other_truth) in others.items():
                    sets[name] = (read_rows(by_point[src.name]), other_truth)
                for method in methods:
                    matrices.append({"point": src.name, **transfer_matrix(sets, method)})
    return records, matrices


def _off_diagonal_mean(matrix: list[list[float | None]]) -> float:
    values = [v for row in matrix for v in row if v is not None]
    return float(np.mean(values))


def detect_ood(
    source: str,
    *,
    point: str | None = None,
    label: str | None = None,
    labels_file: str | None = None,
    in_values: list[str],
    scores: list[str] | None = None,
    classifier: str | None = None,
    run: str | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Out-of-distribution scores of one point of a store (or a .npy of features with ``labels_file``): rows whose
    ``label`` is one of ``in_values`` are in-distribution, the rest out. Half of the in-distribution rows
    (seeded, stratified by class) fit each score, the other half and every out-of-distribution row are scored,
    and AUROC, AUPR (out positive) and FPR at 95% TPR come with bootstrap intervals. Scores that read logits
    (msp, energy, vim, neco) take them from ``classifier`` (a .safetensors with W (classes x features) and b),
    or else from a multinomial logistic regression fitted on the fitting half. Returns ``{"results": [{"score",
    "auroc", "aupr", "fpr95", ...}], ...}``; saved for a store."""
    names = scores or list(OOD_SCORES)
    sources, store, run = point_sources(source, run, [point] if point else None)
    if len(sources) != 1:
        raise NeurometryError(f"{source} holds {len(sources)} points; name one with --point")
    labels = read_labels(Path(labels_file)) if labels_file else metadata_labels(sources[0], label)
    if labels is None:
        raise NeurometryError("give the class labels: --label COLUMN (store metadata) or --labels FILE.npy")
    features = as_rows(read_rows(sources[0]), f"the features of {sources[0].name}")  # NaN named by its row
    if len(labels) != len(features):
        raise NeurometryError(f"{len(labels)} labels for {len(features)} rows; give one label per row")
    as_text = np.array([str(v) for v in labels])
    inside = np.isin(as_text, [str(v) for v in in_values])
    if inside.all() or not inside.any():
        raise NeurometryError(f"--in {' '.join(in_values)} leaves {int((~inside).sum())} rows out of distribution "
                              f"and {int(inside.sum())} in; both sides need rows (label values: "
                              f"{', '.join(sorted(set(as_text))[:12])})")
    rng = np.random.default_rng(seed)
    fitting = np.zeros(len(features), dtype=bool)
    for value in np.unique(as_text[inside]):
        rows = rng.permutation(np.flatnonzero(inside & (as_text == value)))
        fitting[rows[: len(rows) // 2]] = True
    held_in, held_out = inside & ~fitting, ~inside
    with blas_threads():
        weights = classifier_file(Path(classifier)) if classifier else _fitted_readout(features[fitting],
                                                                                       as_text[fitting])
        logits = features @ np.asarray(weights[0], dtype=np.float64).T + np.asarray(weights[1], dtype=np.float64)
        records = []
        for name in names:
            detector = get_ood_score(name).fit(features[fitting], as_text[fitting], logits=logits[fitting],
                                               classifier=weights)
            values = detector.score(features, logits=logits)
            evaluation = evaluate(values[held_in], values[held_out], bootstrap=bootstrap, seed=seed).to_dict()
            fpr, tpr = roc_curve(values[held_in], values[held_out], ROC_POINTS)
            records.append({"score": name, "auroc": evaluation["auroc"], "aupr": evaluation["aupr"],
                            "fpr95": evaluation["fpr_at_95_tpr"], **evaluation,
                            "roc": {"fpr": fpr.round(6).tolist(), "tpr": tpr.round(6).tolist()}})
    settings = {"point": sources[0].name, "label": label or labels_file, "in": list(in_values), "seed": seed,
                "classifier": classifier or "logistic regression on the fitting half"}
    if store is not None:
        OOD.save(store, run, [
            Result(settings["point"], r["score"], r["auroc"], params={k: settings[k] for k in ("label", "in", "seed")},
                   extra={k: v for k, v in r.items() if k != "score"}, result_set=set_name(**settings))
            for r in records
        ])
        store.close()
    return {**settings, "fit_rows": int(fitting.sum()), "in_rows": int(held_in.sum()), "out_rows": int(held_out.sum()),
            "results": records}


def _fitted_readout(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(W (classes, d), b (classes,)) of a multinomial logistic regression on standardised features, mapped back
    to feature units: the linear classifier whose logits the logit-based scores read when none is given."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(labels)) < 2:
        raise NeurometryError("the in-distribution rows hold one class; logit-based scores need two or more "
                              "(or give --classifier)")
    scaler = StandardScaler().fit(features)
    model = LogisticRegression(max_iter=2000).fit(scaler.transform(features), labels)
    weights = model.coef_ / scaler.scale_
    bias = model.intercept_ - weights @ scaler.mean_
    if len(model.classes_) == 2:  # scikit-learn keeps one row for two classes: logits (-z/2, z/2) have its softmax
        weights, bias = np.stack([-weights[0] / 2, weights[0] / 2]), np.array([-bias[0] / 2, bias[0] / 2])
    return weights, bias
