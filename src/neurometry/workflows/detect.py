"""`detect` as a library: truth directions per point of a store (held-out, grouped), their transfer across
stores of other statement sets (:data:`~neurometry.store.results.TRUTH_PROBE`, ``TRUTH_TRANSFER``), and
out-of-distribution scores of a point split into in- and out-of-distribution rows by a label
(:data:`~neurometry.store.results.OOD`)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from neurometry.arrays import as_rows
from neurometry.detect.evaluation import evaluate, roc_curve
from neurometry.detect.hallucination import city_answers
from neurometry.detect.ood import FEATURE_SCORES, OOD_SCORES, get_ood_score
from neurometry.detect.output_baselines import output_baselines
from neurometry.detect.semantic_dynamics import held_out_dynamics
from neurometry.detect.truth import (
    TRUTH_METHODS,
    CategoryPrior,
    held_out_detector,
    held_out_truth,
    transfer_matrix,
    truth_classes,
)
from neurometry.detect.truth_steering import steering_effect
from neurometry.errors import NeurometryError
from neurometry.models.devices import stage_device
from neurometry.models.hooks import require_causal
from neurometry.store.results import (
    OOD,
    OOD_SERIES,
    TRUTH_BASELINE,
    TRUTH_CAUSAL,
    TRUTH_PROBE,
    TRUTH_TRANSFER,
    Result,
    set_name,
)
from neurometry.threads import blas_threads
from neurometry.workflows.measure import classifier_file, metadata_labels, read_labels
from neurometry.workflows.probe import point_sources, read_rows

ROC_POINTS = 101  # the ROC curve saved with each score: TPR at FPR 0, 0.01, ..., 1

TRAJECTORY = "trajectory"  # the point name of the semantic dynamics detector, which reads every chosen point


def _labelled(source: str, label: str, group: str | None, run: str | None, points: list[str] | None,
              labels_file: str | None = None, groups_file: str | None = None, arrays: bool = False
              ) -> tuple[list[Any], Any, str | None, np.ndarray, np.ndarray | None]:
    """(sources, store or None, run, labels, groups) of a store (labels and groups from its metadata columns) or,
    where ``arrays`` allows it, of a .npy of statements' rows (labels and groups from .npy files of one value per
    row)."""
    sources, store, run = point_sources(source, run, points)
    if store is None:
        if not arrays:
            raise NeurometryError(f"{source} is an array; this reads a store of statements with a {label!r} column "
                                  "and their text (record them with neurometry record)")
        if labels_file is None:
            raise NeurometryError(f"{source} is an array: give its labels with --labels FILE.npy (one per row)")
        if group is not None:
            raise NeurometryError("--group names a column of a store; for a .npy give --groups FILE.npy")
        truth = read_labels(Path(labels_file))
        groups = read_labels(Path(groups_file)) if groups_file else None
        rows = len(read_rows(sources[0]))
        for name, values in (("labels", truth), ("groups", groups)):
            if values is not None and len(values) != rows:
                raise NeurometryError(f"{len(values)} {name} for {rows} rows in {source}; give one per row")
    else:
        if labels_file or groups_file:
            raise NeurometryError("--labels and --groups are for a .npy; a store's labels are its columns (--label, --group)")
        truth = metadata_labels(sources[0], label)
        groups = metadata_labels(sources[0], group) if group is not None else None
    if any(value is None or (isinstance(value, float) and np.isnan(value)) for value in truth):
        where = f"column {label!r}" if labels_file is None else labels_file
        raise NeurometryError(f"{where} has missing labels; drop those statements first")
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
    baselines: bool = False,
    controls: list[str] | None = None,
    labels_file: str | None = None,
    groups_file: str | None = None,
    model: str | None = None,
    baseline_statements: int = 200,
    shots: int = 4,
    progress: bool = True,
) -> dict[str, Any]:
    """Held-out truth decoding of every chosen point of store ``source`` by each method
    (:func:`neurometry.detect.truth.held_out_truth`), saved; with ``transfer`` stores (other statement sets
    recorded at the same points), the set x set transfer matrix per point and method as well; with ``dynamics``,
    the layer-wise semantic dynamics detector over the chosen points as one trajectory (point ``trajectory``, on
    the same folds); with ``baselines``, what the model (``model``, default the run's) says from its outputs alone
    on ``baseline_statements`` statements held out from ``shots`` solved examples
    (:func:`neurometry.detect.output_baselines.output_baselines`). Returns
    ``{"results": [{"point", "method", "accuracy", "auroc", "n", "folds"}, ...], "transfer": [...],
    "baselines": [{"point": "output", "method": "log_probability" | "few_shot", "accuracy", "auroc", "n"}]}``
    (the log-probability has no threshold, so no accuracy). A .npy ``source`` (statements x features) is one
    point, with ``labels_file`` and ``groups_file`` (.npy, one value per row) for its labels and groups; nothing
    is saved then. Each of ``controls`` (metadata columns) adds a control
    that reads no activations, :class:`~neurometry.detect.truth.CategoryPrior` of that column on the probes' own
    folds, to ``baselines`` (``"point": "control"``, ``"method"`` the column)."""
    methods = methods or list(TRUTH_METHODS)
    sources, store, run, truth, groups = _labelled(source, label, group, run, points, labels_file, groups_file,
                                                   arrays=True)
    if store is None and (transfer or baselines or controls or dynamics):
        raise NeurometryError("--transfer, --baselines, --control and --dynamics read a store; a .npy gives one point")
    control_values = {column: metadata_labels(sources[0], column) for column in controls or []}
    if baselines:  # the model and the statements' texts found before any decoding
        texts = _statement_texts(sources[0])
        loaded = _run_model(store, run, model, "output baselines")
    others, opened = {}, [store]
    try:
        names = {Path(source).resolve(): Path(source).name}
        for other in transfer or []:
            if Path(other).resolve() in names:
                raise NeurometryError(f"--transfer {other} is {'the store itself' if len(names) == 1 else 'given twice'}"
                                      "; name each other statement set's store once")
            other_sources, other_store, _, other_truth, _ = _labelled(other, label, None, None,
                                                                      [s.name for s in sources])
            opened.append(other_store)
            widths = {s.name: math.prod(s.shape) for s in sources}
            for other_source in other_sources:
                if math.prod(other_source.shape) != widths[other_source.name]:
                    raise NeurometryError(
                        f"--transfer {other}: {other_source.name} has {math.prod(other_source.shape)} features here "
                        f"and {widths[other_source.name]} in {source}; record both sets with the same model")
            # the matrix names each set by its folder, or by the path as given where two folders share a name
            name = Path(other).name if Path(other).name not in names.values() else str(other)
            names[Path(other).resolve()] = name
            others[name] = ({s.name: s for s in other_sources}, other_truth)
        records, matrices = _decode(source, sources, truth, groups, methods, folds, seed, others, progress)
        if dynamics:
            if len(sources) < 3:
                raise NeurometryError("--dynamics reads a trajectory through depth: give three or more points")
            with blas_threads():
                states = np.stack([read_rows(src) for src in sources], axis=1)
                records.append({"point": TRAJECTORY, **held_out_dynamics(states, truth, folds=folds, groups=groups,
                                                                         seed=seed).to_dict()})
        baseline_records = []
        if baselines:
            baseline_records = _output_baselines(loaded, texts, truth, groups, baseline_statements, shots, seed)
            params = {"label": label, "statements": baseline_statements, "shots": shots, "seed": seed}
            TRUTH_BASELINE.save(store, run, [
                Result("output", r["method"], r["accuracy"], params=params, extra={"auroc": r["auroc"], "n": r["n"]},
                       result_set=set_name(**params))
                for r in baseline_records
            ])
        if controls:
            control_records = [{"point": "control", **held_out_detector(values, truth, CategoryPrior, column, folds=folds,
                                                                        groups=groups, seed=seed).to_dict()}
                               for column, values in control_values.items()]
            params = {"label": label, "group": group, "folds": folds, "seed": seed}
            TRUTH_BASELINE.save(store, run, [
                Result("control", r["method"], r["accuracy"], params=params, extra={"auroc": r["auroc"], "n": r["n"]},
                       result_set=set_name(controls=controls, **params))
                for r in control_records
            ])
            baseline_records += control_records
        settings = {"label": label, "group": group, "folds": folds, "seed": seed}
        if store is not None:
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
            if each is not None:
                each.close()
    return {"run": run, "label": label if store is not None else labels_file,
            "group": group if store is not None else groups_file, "results": records, "transfer": matrices,
            "baselines": baseline_records}


def detect_causal(
    source: str,
    *,
    points: list[str],
    model: str | None = None,
    label: str = "truth",
    group: str | None = None,
    alphas: tuple[float, ...] = (-3.0, 0.0, 3.0),
    statements: int = 60,
    shots: int = 4,
    run: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """The causal test of the truth direction at each of ``points`` (Marks & Tegmark 2023, section 5): the
    mass-mean direction (difference of the class means, in activation units) of the stored statements' rows,
    without ``statements`` held-out ones (whole ``group`` values when given, seeded), is added with each of
    ``alphas`` while the model (``model``, default the run's) judges the held-out statements in a few-shot prompt
    with ``shots`` solved examples from the rest (:func:`neurometry.detect.truth_steering.steering_effect`).
    Returns ``{"results": [{"point", "method": "mass_mean", "shift", "alphas", "gap_true", "gap_false", "n"}], ...}``
    (``shift``: the mean log-odds gap at the largest alpha less at the smallest; positive is the expected sign);
    saved as :data:`~neurometry.store.results.TRUTH_CAUSAL`."""
    if len(set(alphas)) < 2:
        raise NeurometryError("--alphas needs two or more different values (e.g. -3 0 3)")
    sources, store, run, truth, groups = _labelled(source, label, group, run, points)
    try:
        texts = _statement_texts(sources[0])
        reduce = store.run_info(run).settings.get("reduce")
        if reduce not in (None, "last"):
            raise NeurometryError(f"run {run!r} was recorded with --reduce {reduce}; the causal test adds the direction "
                                  "at each statement's last token: record the statements with --reduce last")
        is_true, held, solved = _judged_split(texts, truth, groups, statements, shots, seed)
        loaded = _run_model(store, run, model, "True/False answer for the causal test")
        judged, train = [texts[i] for i in np.flatnonzero(held)], ~held
        records = []
        for src in tqdm(sources, desc="causal", unit="point", file=sys.stderr, disable=not progress):
            x = read_rows(src)
            vector = x[train & is_true].mean(axis=0) - x[train & ~is_true].mean(axis=0)
            effect = steering_effect(loaded, judged, is_true[held], vector, src.name, alphas=alphas, shots=solved)
            records.append({"point": src.name, "method": "mass_mean", **effect.to_dict()})
        params = {"label": label, "alphas": sorted(float(a) for a in alphas), "statements": int(held.sum()),
                  "shots": len(solved), "seed": seed}  # the shots there were, where fewer remained than asked
        TRUTH_CAUSAL.save(store, run, [
            Result(r["point"], r["method"], r["shift"], params=params,
                   extra={"gap_true": r["gap_true"], "gap_false": r["gap_false"], "n": r["n"]},
                   result_set=set_name(**params))
            for r in records
        ])
    finally:
        store.close()
    return {"run": run, "label": label, "model": loaded.name, "statements": int(held.sum()),
            "held_out_rows": np.flatnonzero(held).tolist(), "shots": [{"statement": t, "true": v} for t, v in solved],
            "results": records}


def _statement_texts(src: Any) -> list[str]:
    if src.metadata is None or "text" not in src.metadata.columns:
        raise NeurometryError("the store's rows have no 'text' column: record a CSV of statements with a text column "
                              "(neurometry dataset truth-cities)")
    if "position" in src.metadata.columns:
        raise NeurometryError("the store holds one row per token: record the statements with --reduce last")
    return [str(t) for t in src.metadata["text"]]


def _judged_split(texts: list[str], truth: np.ndarray, groups: np.ndarray | None, count: int, shots: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray, list[tuple[str, bool]]]:
    """(which statements are true, which ``count`` are held out to be judged, ``shots`` solved examples from
    the rest): how the causal test and the output baselines split statements."""
    _, is_true = truth_classes(truth)
    held = _held_out(is_true, groups, count, seed)
    return is_true, held, _shots(texts, is_true, ~held, shots, seed)


def _held_out(is_true: np.ndarray, groups: np.ndarray | None, count: int, seed: int) -> np.ndarray:
    """(n,) bool: about ``count`` statements (whole groups), seeded, with true and false ones on both sides."""
    n = len(is_true)
    if not 2 <= count <= n - 4:
        raise NeurometryError(f"{count} held-out statements of {n}: hold out at least 2 and leave 4 or more")
    keys = groups if groups is not None else np.arange(n)
    _, inverse = np.unique(np.asarray(keys).astype(str), return_inverse=True)
    order = np.random.default_rng(seed).permutation(inverse.max() + 1)
    sizes = np.bincount(inverse)[order]
    chosen = order[: int(np.searchsorted(np.cumsum(sizes), count)) + 1]
    held = np.isin(inverse, chosen)
    for side in (held, ~held):
        if is_true[side].all() or not is_true[side].any():
            raise NeurometryError("the held-out and the remaining statements each need true and false ones; "
                                  "hold out more statements (--statements, or --baseline-statements)")
    return held


def _shots(texts: list[str], is_true: np.ndarray, pool: np.ndarray, count: int, seed: int) -> list[tuple[str, bool]]:
    """``count`` solved examples from the ``pool`` rows, true and false alternating, seeded."""
    rng = np.random.default_rng(seed + 1)
    trues = rng.permutation(np.flatnonzero(pool & is_true))
    falses = rng.permutation(np.flatnonzero(pool & ~is_true))
    picked = [int(side[i // 2]) for i, side in zip(range(count), [trues, falses] * count, strict=False)
              if i // 2 < len(side)]
    return [(texts[i], bool(is_true[i])) for i in picked]


def _run_model(store: Any, run: str, model: str | None, purpose: str) -> Any:
    """The causal LM that judges statements: ``model``, or the one that recorded the run."""
    from neurometry.models import load_model

    spec = model or store.run_info(run).settings.get("model")
    try:
        loaded = load_model(spec)
    except NeurometryError as exc:
        hint = "" if model else "; name the model with --model"
        raise NeurometryError(f"cannot load model {spec!r} ({exc}){hint}") from None
    require_causal(loaded, purpose)
    return loaded


def _output_baselines(loaded: Any, texts: list[str], truth: np.ndarray, groups: np.ndarray | None, count: int,
                      shots: int, seed: int) -> list[dict[str, Any]]:
    is_true, held, solved = _judged_split(texts, truth, groups, min(count, len(texts) - 4), shots, seed)
    rows = np.flatnonzero(held)
    found = output_baselines(loaded, [texts[i] for i in rows], is_true[rows], solved)
    few = found["few_shot"]
    judged = {"n": found["n"], "rows": rows.tolist(), "shots": [{"statement": t, "true": v} for t, v in solved]}
    return [{"point": "output", "method": "log_probability", "accuracy": None,
             "auroc": found["log_probability"]["auroc"], **judged},
            {"point": "output", "method": "few_shot", "accuracy": few["calibrated_accuracy"], "auroc": few["auroc"],
             "uncalibrated_accuracy": few["accuracy"], "content_free_gap": few["content_free_gap"], **judged}]


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
    device: str | None = None,
    knn_k: int | None = None,
) -> dict[str, Any]:
    """Out-of-distribution scores of one point of a store (or a .npy of features with ``labels_file``): rows whose
    ``label`` is one of ``in_values`` are in-distribution, the rest out. Half of the in-distribution rows
    (seeded, stratified by class) fit each score, the other half and every out-of-distribution row are scored,
    and AUROC, AUPR (out positive) and FPR at 95% TPR come with bootstrap intervals. Scores that read logits
    (msp, energy, vim, neco) take them from ``classifier`` (a .safetensors with W (classes x features) and b),
    or else from a multinomial logistic regression fitted on the fitting half. Returns ``{"results": [{"score",
    "auroc", "aupr", "fpr95", ...}], ...}``; saved for a store. ``device`` (``--device``): where the kNN search
    runs (the other scores are small dense algebra and stay on the CPU); ``knn_k`` (``--k``): its neighbours."""
    names = scores or list(OOD_SCORES)
    params = _score_params(names, device, knn_k)
    sources, store, run = point_sources(source, run, [point] if point else None)
    if len(sources) != 1:
        raise NeurometryError(f"{source} holds {len(sources)} points; name one with --point")
    labels = read_labels(Path(labels_file)) if labels_file else metadata_labels(sources[0], label)
    if labels is None:
        raise NeurometryError("give the class labels: --label COLUMN (store metadata) or --labels FILE.npy")
    features = as_rows(read_rows(sources[0]), f"the features of {sources[0].name}")  # NaN named by its row
    if len(labels) != len(features):
        raise NeurometryError(f"{len(labels)} labels for {len(features)} rows; give one label per row")
    as_text, fitting, held_in, held_out = _ood_split(labels, in_values, seed)
    with blas_threads():
        weights = logits = None
        if classifier:
            weights = classifier_file(Path(classifier), features.shape[1])
        elif any(name not in FEATURE_SCORES for name in names):
            weights = _fitted_readout(features[fitting], as_text[fitting])
        if weights is not None:
            logits = features @ np.asarray(weights[0], dtype=np.float64).T + np.asarray(weights[1], dtype=np.float64)
        records = []
        for name in names:
            detector = get_ood_score(name, **params.get(name, {})).fit(
                features[fitting], as_text[fitting], logits=None if logits is None else logits[fitting],
                classifier=weights)
            values = detector.score(features, logits=logits)
            evaluation = evaluate(values[held_in], values[held_out], bootstrap=bootstrap, seed=seed).to_dict()
            fpr, tpr = roc_curve(values[held_in], values[held_out], ROC_POINTS)
            records.append({"score": name, "auroc": evaluation["auroc"], "aupr": evaluation["aupr"],
                            "fpr95": evaluation["fpr_at_95_tpr"], **evaluation,
                            "roc": {"fpr": fpr.round(6).tolist(), "tpr": tpr.round(6).tolist()}})
    settings = {"point": sources[0].name, "label": label or labels_file, "in": list(in_values), "seed": seed,
                "classifier": classifier or ("logistic regression on the fitting half" if weights is not None else None)}
    if store is not None:
        OOD.save(store, run, [
            Result(settings["point"], r["score"], r["auroc"], params={k: settings[k] for k in ("label", "in", "seed")},
                   extra={k: v for k, v in r.items() if k != "score"}, result_set=set_name(**settings))
            for r in records
        ])
        store.close()
    return {**settings, "fit_rows": int(fitting.sum()), "in_rows": int(held_in.sum()), "out_rows": int(held_out.sum()),
            "results": records}


def _score_params(names: list[str], device: str | None, knn_k: int | None) -> dict[str, dict[str, Any]]:
    """Each OOD score's parameters from the command's options: ``--device`` moves the kNN search, ``--k`` sets
    its neighbours."""
    target = stage_device(device)
    knn = {**({"device": target} if target is not None else {}), **({"k": knn_k} if knn_k is not None else {})}
    return {"knn": knn} if knn and "knn" in names else {}


def _ood_split(labels: Any, in_values: list[str], seed: int) -> tuple[np.ndarray, ...]:
    """(labels as text, fitting, held-in, out-of-distribution) row masks: rows labelled one of ``in_values`` are
    in-distribution, and half of each in-distribution class (seeded) fits the scores."""
    missing = np.flatnonzero(pd.isna(np.asarray(labels, dtype=object)))
    if len(missing):
        raise NeurometryError(f"{len(missing)} rows have no label (NaN or empty; first: row {missing[0]}); label "
                              "every row or drop those rows")
    as_text = np.array([str(v) for v in labels])
    inside = np.isin(as_text, [str(v) for v in in_values])
    if inside.all() or not inside.any():
        raise NeurometryError(f"--in {' '.join(in_values)} leaves {int((~inside).sum())} rows out of distribution "
                              f"and {int(inside.sum())} in; both sides need rows (label values: "
                              f"{', '.join(sorted(set(as_text))[:12])})")
    rng = np.random.default_rng(seed)
    fitting = np.zeros(len(as_text), dtype=bool)
    for value in np.unique(as_text[inside]):
        rows = rng.permutation(np.flatnonzero(inside & (as_text == value)))
        fitting[rows[: len(rows) // 2]] = True
    return as_text, fitting, inside & ~fitting, ~inside


def detect_ood_series(
    source: str,
    *,
    series: str,
    point: str,
    label: str,
    in_values: list[str],
    scores: list[str] | None = None,
    seed: int = 0,
    progress: bool = True,
    device: str | None = None,
    knn_k: int | None = None,
) -> dict[str, Any]:
    """OOD detection at every checkpoint of ``series`` against neural collapse
    (:func:`neurometry.detect.ood_over_checkpoints`): at each step, rows of ``point`` split as :func:`detect_ood`
    splits them (the same rows at every step), NC1 of the fitting half, the training error of a logistic readout
    fitted on it (whose logits the logit-based scores read), and each score's AUROC; then Spearman(NC1, AUROC)
    per score, over all steps and over the terminal phase (the readout's training error 0 from there on).
    Returns ``{"results": [{"score", "spearman", "terminal_spearman", "auroc": [per step]}], "steps", "nc1",
    "train_error", "terminal_start", ...}``; saved under the series' last run."""
    from neurometry.detect.collapse_tracking import ood_over_checkpoints
    from neurometry.store import open_store
    from neurometry.workflows.series import complete_steps

    names = scores or ["neco", "msp", "mahalanobis"]
    params = _score_params(names, device, knn_k)
    path = Path(source)
    if not path.is_dir():
        what = "is a file, not a store folder" if path.exists() else "does not exist"
        raise NeurometryError(f"{source} {what}; give a store folder with a series")
    store = open_store(path)
    try:
        steps = complete_steps(store, series)
        train, held, out, heads, split = [], [], [], [], None
        for step in tqdm(steps, desc=f"ood {series}", unit="step", file=sys.stderr, disable=not progress, delay=1.0):
            meta = store.metadata(step.run_id)
            if label not in meta.columns:
                columns = ", ".join(c for c in meta.columns if c != "row")
                raise NeurometryError(f"no column {label!r} in the row metadata; columns are: {columns}")
            labels = meta[label].to_numpy()
            if split is None:
                split = _ood_split(labels, in_values, seed)
                first_labels = labels
            elif not np.array_equal(labels.astype(str), first_labels.astype(str)):
                raise NeurometryError(f"step {step.step} of series {series!r} holds other rows than step "
                                      f"{steps[0].step}; every checkpoint must be recorded on the same data")
            as_text, fitting, held_in, held_out = split
            features = as_rows(store.activations(point, run=step.run_id).reshape(len(labels), -1),
                               f"the features of {point} at step {step.step}")
            with blas_threads():
                heads.append(_fitted_readout(features[fitting], as_text[fitting],
                                             "a series fits a readout at every step: give two or more --in values"))
            train.append(features[fitting])
            held.append(features[held_in])
            out.append(features[held_out])
        with blas_threads():
            found = ood_over_checkpoints(train, as_text[fitting], held, out, heads, steps=[s.step for s in steps],
                                         scores=names, score_params=params).to_dict()
        records = [{"score": name, "spearman": found["spearman"][name],
                    "terminal_spearman": found["terminal_spearman"][name], "auroc": found["auroc"][name]}
                   for name in names]
        settings = {"series": series, "point": point, "label": label, "in": list(in_values), "seed": seed}
        OOD_SERIES.save(store, steps[-1].run_id, [
            Result(point, r["score"], r["spearman"], params={k: settings[k] for k in ("series", "label", "in", "seed")},
                   extra={"steps": found["steps"], "auroc": r["auroc"], "nc1": found["nc1"],
                          "train_error": found["train_error"], "terminal_start": found["terminal_start"],
                          "terminal_spearman": r["terminal_spearman"]},
                   result_set=set_name(**settings))
            for r in records
        ])
    finally:
        store.close()
    return {**settings, "steps": found["steps"], "nc1": found["nc1"], "train_error": found["train_error"],
            "terminal_start": found["terminal_start"], "fit_rows": int(fitting.sum()), "in_rows": int(held_in.sum()),
            "out_rows": int(held_out.sum()), "results": records}


def _fitted_readout(features: np.ndarray, labels: np.ndarray,
                    fix: str = "give two or more --in values, or --classifier, or only --scores knn mahalanobis"
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(W (classes, d), b (classes,)) of a multinomial logistic regression on standardised features, mapped back
    to feature units: the linear classifier whose logits the logit-based scores read when none is given."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(labels)) < 2:
        raise NeurometryError(f"the in-distribution rows hold one class, and a classifier's logits need two or more; "
                              f"{fix}")
    scaler = StandardScaler().fit(features)
    model = LogisticRegression(max_iter=2000).fit(scaler.transform(features), labels)
    weights = model.coef_ / scaler.scale_
    bias = model.intercept_ - weights @ scaler.mean_
    if len(model.classes_) == 2:  # scikit-learn keeps one row for two classes: logits (-z/2, z/2) have its softmax
        weights, bias = np.stack([-weights[0] / 2, weights[0] / 2]), np.array([-bias[0] / 2, bias[0] / 2])
    return weights, bias


def export_hallucination_cities(model: str, out: str | Path, *, limit: int | None = None) -> dict[str, Any]:
    """Ask ``model`` for the country of each city of the cities truth set and write its claims, labelled correct
    or hallucinated (:func:`neurometry.detect.hallucination.city_answers`), as ``<out>/hallucination-cities.jsonl``
    (text, truth, group, city, answer, correct_country), ready for ``neurometry record``. Returns ``{"data",
    "model", "statements", "correct", "hallucinated"}``."""
    from neurometry.datasets import truth_statements
    from neurometry.models import load_model

    loaded = load_model(model)
    require_causal(loaded, "answers to generate")
    table = city_answers(loaded, truth_statements("cities"), limit=limit)
    if table["truth"].nunique() < 2:
        kind = "correct" if (table["truth"] == "true").all() else "made up"
        raise NeurometryError(f"all {len(table)} of {loaded.name}'s answers are {kind}: a set with one class trains no "
                              "detector; raise --limit (or leave it out)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "hallucination-cities.jsonl"
    tmp = path.with_suffix(".tmp")
    table.to_json(tmp, orient="records", lines=True, force_ascii=False)
    tmp.replace(path)
    correct = int((table["truth"] == "true").sum())
    return {"data": str(path), "model": loaded.name, "statements": len(table), "correct": correct,
            "hallucinated": len(table) - correct}

