"""Linear probes: cross-validated logistic regression (categorical labels) or ridge regression
(continuous targets) from one point's activations, leak-free (Alain & Bengio 2016, "Understanding
intermediate layers using linear classifier probes"; Belinkov 2022, "Probing Classifiers").

- Folds come from :func:`neurometry.folds.fold_assignment`: seeded, grouped (rows sharing a ``groups``
  label, e.g. the token rows of one input, stay in one fold) and, for classification, stratified by
  the label.
- Standardisation (column mean and standard deviation, ddof 0, as scikit-learn's ``StandardScaler``)
  is fitted on each training fold only, inside :class:`LinearProbe`, so no statistic of a held-out row
  reaches the model.
- Logistic: L2-penalised logistic regression with an unpenalised intercept (multinomial for three or
  more classes, the usual binary model for two), scikit-learn's ``LogisticRegression(C=C)``. Ridge:
  ``Ridge(alpha=alpha)`` with an unpenalised intercept. Both on the standardised training fold.
- Score per fold: accuracy (logistic) or R^2 about the held-out fold's own mean (ridge, as
  ``Ridge.score``). The reported score is the unweighted mean over folds; its interval is the
  Student-t interval of that mean over the fold scores (mean +- t_{(1+confidence)/2, folds-1} x
  sd / sqrt(folds), sd with ddof 1), clipped to [0, 1] for accuracy and to at most 1 for R^2. Fold
  scores share training rows, so this interval is somewhat too narrow (Bengio & Grandvalet 2004); it
  says how stable the score is across folds, not a calibrated sampling interval.
- Baseline on the same folds: the training fold's majority class predicted for every held-out row
  (accuracy), or the training fold's mean predicted for every held-out row (R^2, <= 0).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

from neurometry.arrays import as_rows, plain_value
from neurometry.errors import NeurometryError, did_you_mean
from neurometry.folds import check_folds, fold_assignment
from neurometry.threads import blas_threads

ESTIMATOR_KINDS = ("logistic", "ridge")
PROBE_KINDS = ("auto", "logistic", "ridge")
MAX_AUTO_CLASSES = 10
"""Under ``kind="auto"`` a float target whose values are all whole numbers with at most this many
distinct values is treated as class labels (e.g. 0/1 labels read from a float column)."""


def _check_penalty(kind: str, C: Any, alpha: Any) -> None:
    """The logistic probe's C must be a finite number > 0, the ridge probe's alpha a finite number >= 0."""
    name, value, low = ("C", C, "above 0") if kind == "logistic" else ("alpha", alpha, ">= 0")
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number) or number < 0 or (kind == "logistic" and number == 0):
        raise NeurometryError(f"{name} of a {kind} probe must be a finite number {low}, got {value!r}")


def _check_kind(kind: Any, kinds: tuple[str, ...]) -> str:
    if kind not in kinds:
        hint = (
            " (for sparse probing call sparse_probe)" if kind == "sparse" else did_you_mean(str(kind), kinds)
        )
        raise NeurometryError(f"unknown probe kind {kind!r}; choose one of {', '.join(kinds)}{hint}")
    return kind


class LinearProbe(BaseEstimator):
    """A scikit-learn estimator: standardise the features on the rows it is fitted on, then fit
    logistic regression (``kind="logistic"``, L2 with inverse strength ``C``) or ridge regression
    (``kind="ridge"``, penalty ``alpha``), both with an intercept.

    After ``fit``: ``classes_`` (logistic), ``coef_`` and ``intercept_`` in the original (unstandardised)
    feature units, so that ``X @ coef_.T + intercept_`` is the decision function (logistic) or the
    prediction (ridge); ``mean_`` and ``scale_`` the standardisation; ``model_`` the fitted scikit-learn
    model on standardised features. Works with ``clone``, ``cross_val_score`` and pipelines; it is a
    classifier or a regressor to scikit-learn according to ``kind``.
    """

    def __init__(self, kind: str = "logistic", C: float = 1.0, alpha: float = 1.0, max_iter: int = 1000):
        self.kind = kind
        self.C = C
        self.alpha = alpha
        self.max_iter = max_iter

    @property
    def _estimator_type(self) -> str:  # scikit-learn < 1.6 reads this attribute
        return "classifier" if self.kind == "logistic" else "regressor"

    def __sklearn_tags__(self):  # scikit-learn >= 1.6: classifier or regressor by kind
        from sklearn.utils import ClassifierTags, RegressorTags

        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        if self.kind == "logistic":
            tags.estimator_type = "classifier"
            tags.classifier_tags = ClassifierTags()
        else:
            tags.estimator_type = "regressor"
            tags.regressor_tags = RegressorTags()
        return tags

    def fit(self, X: Any, y: Any) -> LinearProbe:
        """Fit on X (n, d) activations and y (n,) labels (logistic) or targets (ridge)."""
        kind = _check_kind(self.kind, ESTIMATOR_KINDS)
        _check_penalty(kind, self.C, self.alpha)
        x = as_rows(X, "X")
        y = np.asarray(y)
        if len(y) != len(x):
            raise NeurometryError(f"X has {len(x)} rows but y has {len(y)} values; give one value per row")
        self.scaler_ = StandardScaler().fit(x)
        self.mean_, self.scale_ = self.scaler_.mean_, self.scaler_.scale_
        z = self.scaler_.transform(x)
        if kind == "logistic":
            if len(np.unique(y)) < 2:
                raise NeurometryError("a logistic probe needs at least 2 classes in the rows it is fitted on")
            self.model_ = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(z, y)
            self.classes_ = self.model_.classes_
        else:
            self.model_ = Ridge(alpha=self.alpha).fit(z, y)
        # back to original units: w . (x - m) / s + b = (w / s) . x + (b - w . (m / s))
        coef = self.model_.coef_
        self.coef_ = coef / self.scale_
        self.intercept_ = self.model_.intercept_ - coef @ (self.mean_ / self.scale_)
        self.n_features_in_ = x.shape[1]
        return self

    def _model(self) -> Any:
        if not hasattr(self, "model_"):
            raise NeurometryError("this LinearProbe is not fitted yet; call fit(X, y) first")
        return self.model_

    def _standardised(self, X: Any) -> np.ndarray:
        x = as_rows(X, "X")
        if x.shape[1] != self.n_features_in_:
            raise NeurometryError(
                f"X has {x.shape[1]} features but the probe was fitted on {self.n_features_in_}"
            )
        return self.scaler_.transform(x)

    def decision_function(self, X: Any) -> np.ndarray:
        """Logits (logistic; (n,) for two classes, (n, classes) otherwise) or predictions (ridge)."""
        if self.kind == "logistic":
            return self._model().decision_function(self._standardised(X))
        return self._model().predict(self._standardised(X))

    def predict(self, X: Any) -> np.ndarray:
        return self._model().predict(self._standardised(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n, classes), columns in the order of ``classes_`` (logistic only)."""
        if self.kind != "logistic":
            raise NeurometryError("predict_proba needs kind='logistic'; a ridge probe predicts values")
        return self._model().predict_proba(self._standardised(X))

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Accuracy (logistic) or R^2 about the mean of ``y`` (ridge), as scikit-learn's mixins."""
        return float(self._model().score(self._standardised(X), y, sample_weight=sample_weight))


@dataclass(frozen=True)
class ProbeResult:
    """Cross-validated probe score at one point.

    ``score`` is the mean held-out accuracy (logistic, sparse) or R^2 (ridge) over ``fold_scores``;
    ``ci_low``/``ci_high`` the t-interval of that mean at ``params["confidence"]``; ``baseline`` the
    majority-class accuracy or the R^2 of predicting the training-fold mean, on the same folds. ``k``
    and ``units`` are set for sparse probes (the top-k units ranked on all rows).
    """

    kind: str
    score: float
    ci_low: float
    ci_high: float
    baseline: float
    fold_scores: tuple[float, ...]
    n_rows: int
    n_groups: int
    n_classes: int | None
    k: int | None = None
    units: tuple[int, ...] | None = None
    params: dict = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: plain floats, ints, lists, strings and None."""
        d = asdict(self)
        d["fold_scores"] = [float(s) for s in self.fold_scores]
        d["units"] = None if self.units is None else [int(u) for u in self.units]
        d["params"] = dict(self.params)
        return d


# ----------------------------------------------------------------------------- shared by the probes


@dataclass(frozen=True)
class _Target:
    """Validated probe target: ``values`` are class codes 0..C-1 (logistic) or float64 (ridge)."""

    kind: str
    values: np.ndarray
    classes: np.ndarray | None


def _missing(y: np.ndarray) -> np.ndarray:
    if y.dtype.kind == "f":
        return ~np.isfinite(y)
    if y.dtype.kind == "O":
        return np.array([v is None or (isinstance(v, float) and not np.isfinite(v)) for v in y], dtype=bool)
    return np.zeros(len(y), dtype=bool)


def _labels_or_values(y: Any, n_rows: int, kind: str, name: str = "y") -> _Target:
    """Check ``y`` against ``n_rows`` and decide the kind.

    ``kind="auto"``: bool, integer, string and object labels are classes (logistic); a float target
    is continuous (ridge) unless all its values are whole numbers with at most ``MAX_AUTO_CLASSES``
    distinct values (then classes).
    """
    kind = _check_kind(kind, PROBE_KINDS)
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise NeurometryError(f"{name} must be one label per row, shaped (rows,), got shape {y.shape}")
    if len(y) != n_rows:
        raise NeurometryError(f"x has {n_rows} rows but {name} has {len(y)} labels; give one label per row")
    if y.dtype.kind not in "biufUSO":
        raise NeurometryError(f"{name} must hold labels or numbers, got dtype {y.dtype}")
    missing = _missing(y)
    if missing.any():
        raise NeurometryError(
            f"{name} has {int(missing.sum())} missing (NaN/None/Inf) labels of {n_rows}; drop those rows or fill them"
        )
    if kind == "auto":
        kind = "logistic"
        if y.dtype.kind == "f":
            whole = np.all(y == np.round(y))
            kind = "logistic" if whole and len(np.unique(y)) <= MAX_AUTO_CLASSES else "ridge"
    if kind == "ridge":
        if y.dtype.kind not in "biuf":
            raise NeurometryError(
                f"a ridge probe needs numeric {name}, got dtype {y.dtype}; use kind='logistic'"
            )
        values = y.astype(np.float64)
        if np.ptp(values) == 0:
            raise NeurometryError(f"{name} is constant, so R^2 is undefined; probe a target that varies")
        return _Target("ridge", values, None)
    try:
        classes, codes = np.unique(y, return_inverse=True)
    except TypeError:
        raise NeurometryError(f"{name} mixes label types (e.g. numbers and strings); use one type") from None
    if len(classes) < 2:
        raise NeurometryError(
            f"{name} has a single class ({plain_value(classes[0])!r}); a probe needs at least 2 classes"
        )
    return _Target("logistic", codes.reshape(-1).astype(np.int64), classes)


def _check_class_sizes(target: _Target, folds: int, name: str = "y") -> None:
    counts = np.bincount(target.values)
    small = int(np.argmin(counts))
    if counts[small] < folds:
        hint = (
            f" (or kind='ridge' if {name} is a continuous quantity)"
            if target.classes.dtype.kind in "iuf"
            else ""
        )
        raise NeurometryError(
            f"class {plain_value(target.classes[small])!r} of {name} has {counts[small]} rows, fewer than the {folds} "
            f"folds; use folds={max(2, int(counts[small]))} or fewer, or more rows of that class{hint}"
        )


def _check_confidence(confidence: Any) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise NeurometryError(f"confidence must be a number in (0, 1), got {confidence!r}")
    return float(confidence)


def _n_groups(groups: Any, n: int) -> int:
    if groups is None:
        return n
    groups = np.asarray(groups).reshape(-1)
    if len(groups) != n:
        raise NeurometryError(f"groups has {len(groups)} labels for {n} rows; give one label per row")
    return len(np.unique(groups))


def _folds_for(target: _Target, folds: Any, seed: int, groups: Any) -> np.ndarray:
    """Fold of each row: grouped, and stratified by the class for logistic targets."""
    n = len(target.values)
    folds = check_folds(folds, n)
    if target.kind == "logistic":
        _check_class_sizes(target, folds)
    stratify = target.values if target.kind == "logistic" else None
    return fold_assignment(n, folds, seed, groups=groups, stratify=stratify)


def _check_training_classes(codes: np.ndarray, fold: np.ndarray, classes: np.ndarray, name: str) -> None:
    for f in range(int(fold.max()) + 1):
        present = np.unique(codes[fold != f])
        if len(present) < 2:
            raise NeurometryError(
                f"the training rows of fold {f} hold only class {plain_value(classes[present[0]])!r} of {name} (its groups "
                "fall in few folds); use fewer folds or more groups per class"
            )


def _fold_r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    total = np.sum((y_true - y_true.mean()) ** 2)
    if total == 0:
        raise NeurometryError(
            "a held-out fold has a constant target, so its R^2 is undefined; use fewer folds or another seed"
        )
    return float(1.0 - np.sum((y_true - y_pred) ** 2) / total)


def _fit_score(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    kind: str,
    C: float,
    alpha: float,
) -> float:
    model = LinearProbe(kind, C=C, alpha=alpha).fit(x_train, y_train)
    predicted = model.predict(x_test)
    if kind == "logistic":
        return float(np.mean(predicted == y_test))
    return _fold_r2(y_test, predicted)


def _baseline(target: _Target, fold: np.ndarray) -> float:
    """Majority-class accuracy, or R^2 of the training mean, averaged over the folds like the score."""
    scores = []
    for f in range(int(fold.max()) + 1):
        train, test = target.values[fold != f], target.values[fold == f]
        if target.kind == "logistic":
            majority = int(np.argmax(np.bincount(train)))  # the first of tied classes
            scores.append(float(np.mean(test == majority)))
        else:
            scores.append(_fold_r2(test, np.full(len(test), train.mean())))
    return float(np.mean(scores))


def _interval(scores: np.ndarray, confidence: float, kind: str) -> tuple[float, float, float]:
    mean = float(np.mean(scores))
    spread = float(np.std(scores, ddof=1)) / np.sqrt(len(scores))
    half = float(stats.t.ppf((1 + confidence) / 2, len(scores) - 1)) * spread
    low, high = mean - half, mean + half
    # an accuracy lies in [0, 1] and an R^2 is at most 1: clip the interval to the possible values
    if kind == "ridge":
        return mean, float(low), float(min(high, 1.0))
    return mean, float(max(low, 0.0)), float(min(high, 1.0))


def _result(
    kind: str,
    scores: np.ndarray,
    baseline: float,
    confidence: float,
    target: _Target,
    n_groups: int,
    params: dict[str, Any],
    k: int | None = None,
    units: tuple[int, ...] | None = None,
    note: str = "",
) -> ProbeResult:
    mean, low, high = _interval(scores, confidence, target.kind)
    return ProbeResult(
        kind=kind,
        score=mean,
        ci_low=low,
        ci_high=high,
        baseline=baseline,
        fold_scores=tuple(float(s) for s in scores),
        n_rows=len(target.values),
        n_groups=n_groups,
        n_classes=None if target.classes is None else len(target.classes),
        k=k,
        units=units,
        params=params,
        note=note,
    )


def _cross_validate(
    x: np.ndarray, target: _Target, fold: np.ndarray, C: float, alpha: float, name: str = "y"
) -> np.ndarray:
    if target.kind == "logistic":
        _check_training_classes(target.values, fold, target.classes, name)
    scores = np.empty(int(fold.max()) + 1)
    y = target.values
    with blas_threads():  # many small fits: one BLAS thread each (see neurometry.threads)
        for f in range(len(scores)):
            train, test = fold != f, fold == f
            scores[f] = _fit_score(x[train], y[train], x[test], y[test], target.kind, C, alpha)
    return scores


# ----------------------------------------------------------------------------- public


def probe(
    x: Any,
    y: Any,
    kind: str = "auto",
    *,
    groups: Any = None,
    folds: int = 5,
    seed: int = 0,
    confidence: float = 0.95,
    C: float = 1.0,
    alpha: float = 1.0,
) -> ProbeResult:
    """Cross-validated linear probe of ``y`` from activations ``x`` (see the module docstring).

    Args:
        x: (n_rows, n_units) activations at one point.
        y: (n_rows,) labels or targets. ``kind="auto"``: bool, integer, string labels -> logistic; float
            -> ridge, unless its values are whole numbers with at most 10 distinct values -> logistic.
        kind: ``"auto"``, ``"logistic"`` or ``"ridge"``.
        groups: optional (n_rows,) labels, e.g. the input each token row came from; rows sharing a
            label never straddle training and held-out rows.
        folds: number of folds (>= 2); each class needs at least ``folds`` rows.
        seed: seed of the fold assignment.
        confidence: level of the t-interval of the mean fold score.
        C: inverse L2 strength of the logistic probe (on standardised units).
        alpha: ridge penalty (on standardised units).

    Returns:
        A :class:`ProbeResult` (score = mean held-out accuracy or R^2, with its interval and baseline).
    """
    x = as_rows(x, "x")
    target = _labels_or_values(y, len(x), kind)
    _check_penalty(target.kind, C, alpha)
    confidence = _check_confidence(confidence)
    n_groups = _n_groups(groups, len(x))
    fold = _folds_for(target, folds, seed, groups)
    scores = _cross_validate(x, target, fold, C, alpha)
    params: dict[str, Any] = {"folds": int(folds), "seed": int(seed), "confidence": confidence}
    params.update({"C": float(C)} if target.kind == "logistic" else {"alpha": float(alpha)})
    return _result(target.kind, scores, _baseline(target, fold), confidence, target, n_groups, params)
