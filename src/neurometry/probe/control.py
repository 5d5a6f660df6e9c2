"""Control tasks and selectivity (Hewitt & Liang 2019, "Designing and Interpreting Probes with Control
Tasks", EMNLP).

A control task gives every token type (word form) one label drawn at random, independently per type,
from the empirical distribution of the real task's labels; every occurrence of that type carries it.
The control labels are a function of identity alone, so a probe can only learn them by memorising
which type each representation is. Selectivity = accuracy on the real task - accuracy on the control
task, both probed with the same model, hyper-parameters and folds: high when the representation makes
the real labels readable beyond what type identity alone affords, near 0 when the probe could score
as well on arbitrary type-to-label maps (it may be memorising rather than reading the property).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from neurometry.arrays import as_rows
from neurometry.errors import NeurometryError
from neurometry.probe.linear import (
    ProbeResult,
    _baseline,
    _check_confidence,
    _cross_validate,
    _folds_for,
    _labels_or_values,
    _n_groups,
    _result,
)


def control_task_labels(token_types: Any, labels: Any, seed: int = 0) -> np.ndarray:
    """Control-task labels (Hewitt & Liang 2019): one random label per token type, shared by its rows.

    Args:
        token_types: (n_rows,) the type (e.g. word form or token id) of each row.
        labels: (n_rows,) the real task's labels; each type's control label is drawn (seeded, with
            replacement) from their empirical distribution, i.e. the label of a uniformly drawn row.
        seed: seed of the draw.

    Returns:
        (n_rows,) control labels, same dtype as ``labels``.
    """
    types = np.asarray(token_types).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if len(types) != len(labels):
        raise NeurometryError(
            f"token_types has {len(types)} rows but labels has {len(labels)}; give one of each per row"
        )
    if len(types) == 0:
        raise NeurometryError("token_types is empty; give one token type per row")
    try:
        _, type_of_row = np.unique(types, return_inverse=True)
    except TypeError:
        raise NeurometryError("token_types mixes types (e.g. numbers and strings); use one type") from None
    type_of_row = type_of_row.reshape(-1)
    rng = np.random.default_rng(seed)
    label_of_type = labels[rng.integers(0, len(labels), size=int(type_of_row.max()) + 1)]
    return label_of_type[type_of_row]


@dataclass(frozen=True)
class SelectivityResult:
    """Probe accuracy on the real task and on its control task (same folds), and their difference."""

    task: ProbeResult
    control: ProbeResult
    selectivity: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task.to_dict(),
            "control": self.control.to_dict(),
            "selectivity": self.selectivity,
        }


def selectivity(
    x: Any,
    y: Any,
    token_types: Any,
    *,
    groups: Any = None,
    folds: int = 5,
    seed: int = 0,
    C: float = 1.0,
    confidence: float = 0.95,
) -> SelectivityResult:
    """Selectivity of a logistic probe (Hewitt & Liang 2019): task accuracy - control-task accuracy.

    Both probes are :func:`~neurometry.probe.linear.probe`'s logistic probe on the same folds (grouped
    by ``groups``, stratified by the real labels ``y``); the control labels come from
    :func:`control_task_labels` with ``seed``. Control tasks are defined for repeated token types:
    a type seen only in held-out rows cannot be memorised, so with few repeats the control accuracy,
    and thus selectivity, mostly reflects the label distribution.

    Args:
        x: (n_rows, n_units) activations at one point, one row per token.
        y: (n_rows,) the real task's labels (categorical).
        token_types: (n_rows,) the type of each row (word form, token id).
        groups: optional (n_rows,) labels, e.g. the input of each token; a group's rows stay in one fold.
        folds: number of folds.
        seed: seed of the folds and of the control labels.
        C: inverse L2 strength of both logistic probes.
        confidence: level of each probe's t-interval.
    """
    x = as_rows(x, "x")
    task = _labels_or_values(y, len(x), "logistic")
    types = np.asarray(token_types).reshape(-1)
    if len(types) != len(x):
        raise NeurometryError(f"x has {len(x)} rows but token_types has {len(types)}; give one type per row")
    confidence = _check_confidence(confidence)
    n_groups = _n_groups(groups, len(x))
    fold = _folds_for(task, folds, seed, groups)
    original = np.asarray(y).reshape(-1)
    control_labels = control_task_labels(types, original, seed)
    if len(np.unique(control_labels)) < 2:
        raise NeurometryError(
            "the control task drew the same label for every token type; use another seed or more token types"
        )
    control = _labels_or_values(control_labels, len(x), "logistic", name="control labels")
    params = {"folds": int(folds), "seed": int(seed), "confidence": confidence, "C": float(C)}
    results = []
    for target, name, note in (
        (task, "y", ""),
        (control, "control labels", "control task: one random label per token type (Hewitt & Liang 2019)"),
    ):
        scores = _cross_validate(x, target, fold, C, 1.0, name)
        results.append(
            _result(
                "logistic", scores, _baseline(target, fold), confidence, target, n_groups, params, note=note
            )
        )
    return SelectivityResult(results[0], results[1], results[0].score - results[1].score)
