"""Truth directions: is a statement's truth linearly readable from a layer, and does the direction found on one
set of statements read another (Marks & Tegmark 2023, "The Geometry of Truth")?

Each method finds a direction on the training statements (:func:`neurometry.probe.direction`) and scores a
statement by its projection on it, less the midpoint of the two training classes' mean projections:

- ``mass_mean``: the difference of the class means, mu_true - mu_false (the paper's mass-mean probe).
- ``mass_mean_iid``: the covariance-corrected variant, Sigma^-1 (mu_true - mu_false) with Sigma the pooled
  within-class covariance (Ledoit-Wolf shrunk): the paper's "IID" mass-mean probe, which is Fisher's LDA.
  It wins when a direction of large within-class variance is not orthogonal to the difference of the means.
- ``logistic``: an L2 logistic regression on standardised activations (the paper's LR probe).

A statement is called true when its score is above 0. Accuracy and AUROC (of the scores, higher = more
likely true) are held-out: k folds, and with ``groups`` the statements of one group (a city's true and false
statements) stay on one side of every split; random splits of such pairs let a probe learn the entity and
score below chance early in the network (measured 0.32 on cities at SmolLM2's resid.1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from neurometry.arrays import as_rows
from neurometry.detect.evaluation import auroc
from neurometry.errors import NeurometryError, did_you_mean
from neurometry.folds import fold_assignment
from neurometry.probe import direction

TRUTH_METHODS = {"mass_mean": "mean_difference", "mass_mean_iid": "lda", "logistic": "probe"}
"""Method name -> the :func:`neurometry.probe.direction` method it fits."""


def truth_classes(truth: Any) -> tuple[np.ndarray, np.ndarray]:
    """(the two label values, sorted; (n,) bool: which statements carry the second): the larger label, as numpy
    sorts them, is "true" (1 over 0, "true" over "false"). Other than two values is refused in one line."""
    truth = np.asarray(truth)
    classes = np.unique(truth)
    if len(classes) != 2:
        raise NeurometryError(f"truth labels need exactly two values (true and false), got {len(classes)}")
    return classes, truth == classes[1]


@dataclass(frozen=True)
class TruthScore:
    """Held-out truth decoding of one method at one point: ``accuracy`` and ``auroc`` over every statement
    (each scored by the fold that did not see it), ``n`` statements, ``folds`` used."""

    method: str
    accuracy: float
    auroc: float
    n: int
    folds: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TruthProbe:
    """A truth direction and its threshold, fitted on statements ``x`` (n, d) with labels ``truth`` (n,) (two
    values; the larger, as numpy sorts them, is "true": 1 over 0, "true" over "false")."""

    def __init__(self, method: str = "mass_mean"):
        if method not in TRUTH_METHODS:
            raise NeurometryError(f"unknown truth method {method!r}{did_you_mean(method, TRUTH_METHODS)}; "
                                  f"choose one of {', '.join(TRUTH_METHODS)}")
        self.method = method

    def fit(self, x: Any, truth: Any) -> TruthProbe:
        x = as_rows(x, "x")
        self.classes_, is_true = truth_classes(truth)
        self.direction_ = direction(x, np.asarray(truth), TRUTH_METHODS[self.method], positive=self.classes_[1])
        projected = x @ self.direction_
        self.threshold_ = 0.5 * (projected[is_true].mean() + projected[~is_true].mean())
        return self

    def score(self, x: Any) -> np.ndarray:
        """(n,) the statements' projections less the threshold: above 0 reads as true."""
        if not hasattr(self, "direction_"):
            raise NeurometryError("this TruthProbe is not fitted yet; call fit(x, truth) first")
        rows = as_rows(x, "x", min_rows=1)
        if rows.shape[1] != len(self.direction_):
            raise NeurometryError(f"x has {rows.shape[1]} features but the probe was fitted on {len(self.direction_)}")
        return rows @ self.direction_ - self.threshold_

    def predict(self, x: Any) -> np.ndarray:
        """(n,) the predicted labels."""
        return np.where(self.score(x) > 0, self.classes_[1], self.classes_[0])


class CategoryPrior:
    """A control that reads no activations: a statement scores by how often the training statements sharing its
    value of a column (the answer it names, its entity, its template) were true, smoothed towards the training
    base rate p by two pseudo-statements ((true + 2p) / (count + 2)); a value not seen in training scores p.
    Above 0.5 reads as true. A truth or hallucination probe that does not beat it has learned the column, not
    the truth (the model's own answers about cities: the answer word alone gives AUROC 0.79)."""

    def fit(self, values: Any, truth: Any) -> CategoryPrior:
        values = np.asarray(values).astype(str).ravel()
        _, is_true = truth_classes(truth)
        self.base_rate_ = float(is_true.mean())
        keys, inverse = np.unique(values, return_inverse=True)
        rates = (np.bincount(inverse, weights=is_true) + 2 * self.base_rate_) / (np.bincount(inverse) + 2)
        self.rates_ = dict(zip(keys.tolist(), rates.tolist(), strict=True))
        return self

    def score(self, values: Any) -> np.ndarray:
        """(n,) the smoothed rate of truth of each value, less 0.5."""
        values = np.asarray(values).astype(str).ravel()
        return np.array([self.rates_.get(v, self.base_rate_) for v in values]) - 0.5


def held_out_truth(x: Any, truth: Any, method: str = "mass_mean", *, folds: int = 5, groups: Any = None,
                   seed: int = 0) -> TruthScore:
    """Held-out accuracy and AUROC of ``method`` on statements ``x`` (n, d) with labels ``truth`` (n,):
    ``folds`` folds, stratified by label, with the rows of one ``groups`` value (n,) in one fold."""
    return held_out_detector(as_rows(x, "x"), truth, lambda: TruthProbe(method), method, folds=folds,
                             groups=groups, seed=seed)


def held_out_detector(rows: np.ndarray, truth: Any, make: Callable[[], Any], name: str, *, folds: int = 5,
                      groups: Any = None, seed: int = 0) -> TruthScore:
    """Held-out accuracy and AUROC of a truth detector (``make()`` gives a fresh one with ``fit(rows, truth)``
    and ``score(rows)``, above 0 reading as true) on ``rows`` (n, ...): ``folds`` folds stratified by label,
    a ``groups`` value's rows in one fold. The same ``folds``, ``groups`` and ``seed`` give the same splits
    for every detector, so their scores compare statement for statement."""
    truth = np.asarray(truth)
    if len(truth) != len(rows):
        raise NeurometryError(f"{len(truth)} labels for {len(rows)} statements; give one label per statement")
    truth_classes(truth)  # exactly two labels, named in one line when not
    fold = fold_assignment(len(rows), folds, seed, groups, stratify=truth)
    scores = np.empty(len(rows))
    for k in range(int(fold.max()) + 1):
        test = fold == k
        if len(np.unique(truth[~test])) < 2:
            raise NeurometryError(f"fold {k}'s training statements hold one label only; use fewer folds")
        scores[test] = make().fit(rows[~test], truth[~test]).score(rows[test])
    accuracy, area = _accuracy_and_auroc(scores, truth == np.unique(truth)[1])
    return TruthScore(name, accuracy, area, len(rows), int(fold.max()) + 1)


def _accuracy_and_auroc(scores: np.ndarray, is_true: np.ndarray) -> tuple[float, float]:
    """The accuracy of reading a score above 0 as true, and the AUROC of true against false statements."""
    return float(((scores > 0) == is_true).mean()), float(auroc(scores[~is_true], scores[is_true]))


def transfer_matrix(sets: dict[str, tuple[Any, Any]], method: str = "mass_mean") -> dict[str, Any]:
    """Train on each set, test on each other (Marks & Tegmark's generalisation test): ``sets`` name -> (x (n, d),
    truth (n,)) at one point. Returns ``names`` and ``accuracy`` and ``auroc`` matrices (train rows, test
    columns); the diagonal is left out (None): a set's own score is :func:`held_out_truth`'s."""
    names = list(sets)
    accuracy = [[None] * len(names) for _ in names]
    area = [[None] * len(names) for _ in names]
    for i, train in enumerate(names):
        probe = TruthProbe(method).fit(*sets[train])
        for j, test in enumerate(names):
            if i == j:
                continue
            scores = probe.score(as_rows(sets[test][0], "x"))
            accuracy[i][j], area[i][j] = _accuracy_and_auroc(scores, np.asarray(sets[test][1]) == probe.classes_[1])
    return {"names": names, "method": method, "accuracy": accuracy, "auroc": area}
