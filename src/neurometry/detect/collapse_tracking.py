"""OOD detection over training checkpoints against neural collapse: does a score's AUROC track NC1?

Ammar et al. 2024 ("NECO: NEural Collapse based Out-of-distribution detection", ICLR) argue that in the
terminal phase of training (zero training error, training continued; Papyan, Han & Donoho 2020, PNAS)
the in-distribution features collapse onto the simplex spanned by their class means (NC1 -> 0, NC2)
while OOD features drift towards its orthogonal complement, so the OOD separability of NECO's
principal-subspace ratio grows as the network collapses. :func:`ood_over_checkpoints` measures that on a
series of checkpoints: at each one, NC1 of the training features (:func:`neurometry.measures.nc1`) and the
AUROC (:func:`neurometry.detect.auroc`, OOD positive) of each chosen score of :mod:`neurometry.detect.ood`
fitted on that checkpoint's training features; then the Spearman rank correlation between NC1 and each
score's AUROC over the checkpoints (negative: the score separates better as NC1 falls), over all
checkpoints and over the terminal phase alone (the checkpoints from which training error stays 0), which
separates "the classifier learns" from "the classifier collapses".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from neurometry.detect.evaluation import auroc
from neurometry.detect.ood import _classifier, _labels, _matmul, _matrix, get_ood_score
from neurometry.errors import NeurometryError
from neurometry.measures import nc1

MIN_CHECKPOINTS = 3
"""Fewest checkpoints for a rank correlation that can say anything."""


@dataclass(frozen=True)
class OODOverCheckpoints:
    """NC1 and OOD AUROCs at K checkpoints, and how the AUROCs rank against NC1.

    Attributes:
        steps: (K,) the checkpoints' training steps (0..K-1 when none were given).
        nc1: (K,) NC1 = tr(Sigma_W Sigma_B^+) / C of the training features on the training classes.
        train_error: (K,) share of training rows the head (W, b) misclassifies.
        auroc: score name -> (K,) AUROC of ID held-out rows against OOD rows (OOD positive).
        spearman: score name -> Spearman correlation of NC1 with that AUROC over all K checkpoints
            (NaN when either series is constant).
        terminal_start: index of the first checkpoint of the terminal phase (training error 0 there and at
            every later checkpoint), or None when the last checkpoint still errs.
        terminal_spearman: as ``spearman`` over the terminal phase only (NaN with fewer than 3 checkpoints
            there, or a constant series).
    """

    steps: np.ndarray
    nc1: np.ndarray
    train_error: np.ndarray
    auroc: dict[str, np.ndarray]
    spearman: dict[str, float]
    terminal_start: int | None
    terminal_spearman: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: arrays as lists, NaN as None."""

        def clean(v: float) -> float | None:
            return None if np.isnan(v) else float(v)

        return {
            "steps": self.steps.tolist(),
            "nc1": self.nc1.tolist(),
            "train_error": self.train_error.tolist(),
            "auroc": {name: values.tolist() for name, values in self.auroc.items()},
            "spearman": {name: clean(v) for name, v in self.spearman.items()},
            "terminal_start": self.terminal_start,
            "terminal_spearman": {name: clean(v) for name, v in self.terminal_spearman.items()},
        }


def _rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho of two series (ties at their average rank); NaN if fewer than 3 points or a constant one."""
    if len(a) < MIN_CHECKPOINTS or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def _series(x: Any, name: str) -> list[Any]:
    if isinstance(x, (str, bytes, Mapping)) or not hasattr(x, "__len__") or not hasattr(x, "__getitem__"):
        raise NeurometryError(f"{name} must be a sequence with one entry per checkpoint, got {type(x).__name__}")
    return [x[k] for k in range(len(x))]


def ood_over_checkpoints(
    train_features: Sequence[Any],
    train_labels: Any,
    id_features: Sequence[Any],
    ood_features: Sequence[Any],
    classifiers: Sequence[tuple[Any, Any]],
    *,
    steps: Sequence[float] | None = None,
    scores: Sequence[str] = ("neco", "msp", "mahalanobis"),
    score_params: Mapping[str, Mapping[str, Any]] | None = None,
) -> OODOverCheckpoints:
    """NC1 and OOD AUROCs at each of K >= 3 checkpoints, with their Spearman correlations over checkpoints.

    Args:
        train_features: K arrays (n, d_k): the penultimate features of the same n in-distribution training
            rows at each checkpoint (d_k may differ between checkpoints, not within one).
        train_labels: (n,) the class of each training row; its C distinct values, sorted, are the head's
            C rows (for the training error).
        id_features: K arrays (m, d_k): held-out in-distribution rows (the negatives).
        ood_features: K arrays (o, d_k): out-of-distribution rows (the positives).
        classifiers: K pairs (W (C, d_k), b (C,)): the linear head at each checkpoint; logits are
            f = h W^T + b.
        steps: K strictly increasing training steps (default 0..K-1).
        scores: names in :data:`neurometry.detect.OOD_SCORES`; each is fitted afresh at every checkpoint on
            that checkpoint's training features, labels, logits and head, with ``score_params[name]``.

    Returns:
        :class:`OODOverCheckpoints`: per checkpoint NC1 (Papyan, Han & Donoho 2020), training error and
        each score's AUROC, and Spearman(NC1, AUROC) per score over all checkpoints and over the terminal
        phase. Ammar et al. 2024 (NECO) predict a negative correlation for NECO: separability grows as
        NC1 falls.

    Raises:
        NeurometryError: fewer than 3 checkpoints, per-checkpoint lists of different lengths, a checkpoint
            whose arrays disagree in width or rows, bad labels or steps, an unknown score name.
    """
    train = _series(train_features, "train_features")
    held_in = _series(id_features, "id_features")
    held_out = _series(ood_features, "ood_features")
    heads = _series(classifiers, "classifiers")
    lengths = {"train_features": len(train), "id_features": len(held_in), "ood_features": len(held_out),
               "classifiers": len(heads)}
    if steps is not None:
        lengths["steps"] = len(steps)
    if len(set(lengths.values())) != 1:
        given = ", ".join(f"{name} {n}" for name, n in lengths.items())
        raise NeurometryError(f"give one entry per checkpoint in every list; got {given}")
    k_count = len(train)
    if k_count < MIN_CHECKPOINTS:
        raise NeurometryError(
            f"{k_count} checkpoints given; a correlation over checkpoints needs at least {MIN_CHECKPOINTS}"
        )
    if steps is None:
        step_array = np.arange(k_count, dtype=np.float64)
    else:
        step_array = np.asarray(steps, dtype=np.float64)
        if step_array.ndim != 1 or not np.isfinite(step_array).all() or np.any(np.diff(step_array) <= 0):
            raise NeurometryError(f"steps must be {k_count} finite, strictly increasing numbers; got {list(steps)}")
    if isinstance(scores, str) or len(scores) == 0:
        raise NeurometryError(f"scores must be a non-empty list of score names such as ['neco', 'msp'], got {scores!r}")
    params = dict(score_params or {})
    unknown = sorted(set(params) - set(scores))
    if unknown:
        raise NeurometryError(f"score_params names {unknown} that are not in scores {list(scores)}")
    for name in scores:
        get_ood_score(name, **params.get(name, {}))  # an unknown name or parameter fails before any work

    nc1_values = np.empty(k_count)
    errors = np.empty(k_count)
    aurocs = {name: np.empty(k_count) for name in scores}
    labels = np.asarray(train_labels.detach().cpu().numpy() if hasattr(train_labels, "detach") else train_labels)
    if labels.ndim != 1:
        raise NeurometryError(f"train_labels must be one class per training row, shape (n,); got shape {labels.shape}")
    classes, label_index = _labels(labels, len(labels))
    for k in range(k_count):
        h_train = _matrix(train[k], f"train_features[{k}]", min_rows=2)
        if len(h_train) != len(labels):
            raise NeurometryError(
                f"train_features[{k}] has {len(h_train)} rows but train_labels {len(labels)}; "
                "give the same training rows, with their labels, at every checkpoint"
            )
        d = h_train.shape[1]
        h_in = _matrix(held_in[k], f"id_features[{k}]")
        h_out = _matrix(held_out[k], f"ood_features[{k}]")
        for h, name in ((h_in, "id_features"), (h_out, "ood_features")):
            if h.shape[1] != d:
                raise NeurometryError(f"{name}[{k}] has {h.shape[1]} columns but train_features[{k}] has {d}")
        weight, bias = _classifier(heads[k], d)
        if len(weight) != len(classes):
            raise NeurometryError(
                f"classifiers[{k}] has {len(weight)} classes but train_labels {len(classes)}; the head's rows must "
                "be the training classes, in sorted order"
            )
        f_train, f_in, f_out = (_matmul(h, weight.T) + bias for h in (h_train, h_in, h_out))
        nc1_values[k] = float(nc1(h_train, labels))
        errors[k] = float(np.mean(np.argmax(f_train, axis=1) != label_index))
        for name in scores:
            score = get_ood_score(name, **params.get(name, {}))
            score.fit(h_train, labels, logits=f_train, classifier=(weight, bias))
            aurocs[name][k] = auroc(score.score(h_in, f_in), score.score(h_out, f_out))

    zero = errors == 0
    terminal_start = None
    if zero[-1]:
        nonzero = np.flatnonzero(~zero)
        terminal_start = int(nonzero[-1] + 1) if len(nonzero) else 0
    tail = slice(terminal_start if terminal_start is not None else k_count, None)
    return OODOverCheckpoints(
        steps=step_array,
        nc1=nc1_values,
        train_error=errors,
        auroc=aurocs,
        spearman={name: _rank_correlation(nc1_values, values) for name, values in aurocs.items()},
        terminal_start=terminal_start,
        terminal_spearman={name: _rank_correlation(nc1_values[tail], values[tail]) for name, values in aurocs.items()},
    )
