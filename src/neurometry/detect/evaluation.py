"""How well a score separates out-of-distribution (OOD) rows from in-distribution (ID) rows: AUROC, AUPR
and FPR at 95% TPR, with percentile-bootstrap intervals.

Conventions (those of pytorch-ood's ``OODMetrics``, read from ``src/pytorch_ood/utils/metrics.py`` at
commit d0476736): OOD rows are the **positives** and scores are "higher = more OOD" (every score of
:mod:`neurometry.detect.ood`); a row is called OOD when its score is >= the threshold.

- ``auroc(in_scores, out_scores)``: P(s_out > s_in) + P(s_out = s_in) / 2, the area under the ROC curve
  with ties as a diagonal step (= scikit-learn's ``roc_auc_score`` with OOD = 1).
- ``aupr(in_scores, out_scores)``: area under the precision-recall curve with OOD positive (pytorch-ood's
  "AUPR-OUT"), by the trapezoidal rule over one point per distinct score plus the (recall 0, precision 1)
  start: ``sklearn.metrics.auc(recall, precision)`` on ``precision_recall_curve`` (pytorch-ood uses the same
  rule through torchmetrics). The ID-positive "AUPR-IN" is ``aupr(-out_scores, -in_scores)``.
  Hendrycks & Gimpel's code uses ``average_precision_score`` (a step sum) instead; it differs by O(1/n).
- ``fpr_at_95_tpr(in_scores, out_scores)``: the false-positive rate on **ID** rows at the highest
  threshold at which at least 95% of OOD rows are detected (TPR >= 0.95): pytorch-ood's ``fpr_at_tpr``,
  the first ROC point (thresholds descending) whose TPR reaches 0.95. (Some codes take the ROC point whose
  TPR is *closest* to 0.95 instead, which can sit below 95%.)

The metrics are computed by hand in float64 from one sort of the pooled scores (the tests check them
against scikit-learn). :func:`evaluate` adds intervals by resampling the ID rows and the OOD rows
separately, with replacement, ``bootstrap`` times (seeded): each replicate is a vector of multiplicities
over the already sorted distinct scores, so a replicate costs O(n), not a new sort; the interval is the
(1 - level) / 2 and (1 + level) / 2 percentiles of the replicates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from neurometry.errors import NeurometryError

TPR_LEVEL = 0.95
"""The detection rate at which :func:`fpr_at_95_tpr` reads the false-positive rate."""

_CELLS_PER_CHUNK = 1 << 22  # bootstrap replicates are processed in chunks of about this many weights


def _scores(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
    if a.dtype.kind not in "fiub":
        raise NeurometryError(f"{name} must be real numbers, got dtype {a.dtype}")
    if a.ndim != 1:
        raise NeurometryError(f"{name} must be one score per row, shape (rows,); got shape {a.shape}")
    if len(a) == 0:
        raise NeurometryError(f"{name} is empty; give at least one score")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        row = int(np.flatnonzero(~np.isfinite(a))[0])
        raise NeurometryError(f"{name} row {row} is NaN or Inf; every score must be a finite number")
    return a


def _groups(in_scores: np.ndarray, out_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The index of each ID and OOD score among the G distinct pooled scores, sorted ascending."""
    distinct, index = np.unique(np.concatenate([in_scores, out_scores]), return_inverse=True)
    index = index.reshape(-1)
    return index[: len(in_scores)], index[len(in_scores) :], len(distinct)


def _metrics(in_weight: np.ndarray, out_weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(auroc, aupr, fpr at 95% TPR), each (B,), from (B, G) multiplicities of the ID and OOD rows at
    each distinct score (ascending); every row of each matrix must have a positive sum."""
    n_in = in_weight.sum(axis=1)
    n_out = out_weight.sum(axis=1)
    in_below = np.cumsum(in_weight, axis=1) - in_weight
    auroc = (out_weight * (in_below + 0.5 * in_weight)).sum(axis=1) / (n_in * n_out)
    # thresholds descending: true and false positives at ">= each distinct score"
    tp = np.cumsum(out_weight[:, ::-1], axis=1)
    fp = np.cumsum(in_weight[:, ::-1], axis=1)
    called = tp + fp
    # no row at or above a threshold (an unsampled top score) repeats the (recall 0, precision 1) start
    precision = np.where(called > 0, tp / np.where(called > 0, called, 1.0), 1.0)
    recall = tp / n_out[:, None]
    recall = np.concatenate([np.zeros((len(recall), 1)), recall], axis=1)
    precision = np.concatenate([np.ones((len(precision), 1)), precision], axis=1)
    aupr = (np.diff(recall, axis=1) * (precision[:, 1:] + precision[:, :-1]) / 2).sum(axis=1)
    reached = tp / n_out[:, None] >= TPR_LEVEL
    first = reached.argmax(axis=1)  # the last column always reaches TPR 1
    fpr = fp[np.arange(len(fp)), first] / n_in
    return auroc, aupr, fpr


def _point(in_scores: Any, out_scores: Any) -> tuple[float, float, float]:
    a = _scores(in_scores, "in_scores")
    b = _scores(out_scores, "out_scores")
    gi, go, g = _groups(a, b)
    in_w = np.bincount(gi, minlength=g)[None, :].astype(np.float64)
    out_w = np.bincount(go, minlength=g)[None, :].astype(np.float64)
    return tuple(float(m[0]) for m in _metrics(in_w, out_w))  # type: ignore[return-value]


def auroc(in_scores: Any, out_scores: Any) -> float:
    """Area under the ROC curve of OOD (positive) against ID rows: P(out > in) + P(out = in) / 2.

    in_scores (n_in,), out_scores (n_out,): higher = more OOD. 1 when every OOD score is above every ID
    score, 0.5 for a score that does not separate them.
    """
    return _point(in_scores, out_scores)[0]


def aupr(in_scores: Any, out_scores: Any) -> float:
    """Area under the precision-recall curve with OOD rows positive (trapezoidal over the distinct
    scores, from (recall 0, precision 1)); in_scores (n_in,), out_scores (n_out,), higher = more OOD."""
    return _point(in_scores, out_scores)[1]


def fpr_at_95_tpr(in_scores: Any, out_scores: Any) -> float:
    """Share of ID rows scored >= the highest threshold that still flags at least 95% of the OOD rows;
    in_scores (n_in,), out_scores (n_out,), higher = more OOD. 0 is perfect."""
    return _point(in_scores, out_scores)[2]


def roc_curve(in_scores: Any, out_scores: Any, points: int | None = 101) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve of OOD (positive) against ID rows: (false positive rate, true positive rate), each rising
    from 0 to 1. in_scores (n_in,), out_scores (n_out,): higher = more OOD.

    The vertices are the rates at ">= each distinct score" (descending) after (0, 0), so tied ID and OOD rows
    make a diagonal segment and the trapezoidal area under the vertices is :func:`auroc` exactly (scikit-
    learn's ``roc_curve(..., drop_intermediate=False)`` gives the same vertices). ``points``: the curve read
    at that many evenly spaced false positive rates (linear between vertices, the TPR at a vertical step its
    top), for plots and saved results; None returns every vertex.
    """
    if points is not None and (isinstance(points, bool) or not isinstance(points, (int, np.integer)) or points < 2):
        raise NeurometryError(f"points must be a whole number >= 2 (or None for every vertex), got {points!r}")
    a = _scores(in_scores, "in_scores")
    b = _scores(out_scores, "out_scores")
    gi, go, g = _groups(a, b)
    fp = np.concatenate([[0.0], np.cumsum(np.bincount(gi, minlength=g)[::-1])]) / len(a)
    tp = np.concatenate([[0.0], np.cumsum(np.bincount(go, minlength=g)[::-1])]) / len(b)
    if points is None:
        return fp, tp
    grid = np.linspace(0.0, 1.0, int(points))
    # at a repeated FPR (a vertical step) np.interp reads the last vertex's TPR: the top of the step, the TPR
    # reached at that FPR
    return grid, np.interp(grid, fp, tp)


@dataclass(frozen=True)
class OODEvaluation:
    """AUROC, AUPR (OOD positive) and FPR at 95% TPR of one score on one ID/OOD split, with percentile-
    bootstrap intervals (``None`` when ``bootstrap`` = 0)."""

    auroc: float
    aupr: float
    fpr_at_95_tpr: float
    auroc_interval: tuple[float, float] | None
    aupr_interval: tuple[float, float] | None
    fpr_at_95_tpr_interval: tuple[float, float] | None
    n_in: int
    n_out: int
    bootstrap: int
    level: float
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (intervals as [low, high] lists or None)."""
        d = asdict(self)
        for key, value in d.items():
            if isinstance(value, tuple):
                d[key] = [float(v) for v in value]
        return d


def evaluate(
    in_scores: Any,
    out_scores: Any,
    bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> OODEvaluation:
    """AUROC, AUPR and FPR at 95% TPR of in_scores (n_in,) against out_scores (n_out,) (higher = more OOD,
    OOD positive), with ``level`` percentile-bootstrap intervals over ``bootstrap`` replicates that
    resample the ID and the OOD rows separately (stratified), seeded by ``seed``.
    """
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) or bootstrap < 0:
        raise NeurometryError(f"bootstrap must be a whole number >= 0 (0: no intervals), got {bootstrap!r}")
    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise NeurometryError(f"level must be between 0 and 1 (e.g. 0.95), got {level!r}")
    a = _scores(in_scores, "in_scores")
    b = _scores(out_scores, "out_scores")
    gi, go, g = _groups(a, b)
    in_w = np.bincount(gi, minlength=g)[None, :].astype(np.float64)
    out_w = np.bincount(go, minlength=g)[None, :].astype(np.float64)
    point = [float(m[0]) for m in _metrics(in_w, out_w)]
    intervals: list[tuple[float, float] | None] = [None, None, None]
    if bootstrap:
        rng = np.random.default_rng(seed)
        replicates = np.empty((3, bootstrap))
        chunk = max(1, _CELLS_PER_CHUNK // max(g, len(a), len(b)))
        for lo in range(0, bootstrap, chunk):
            size = min(chunk, bootstrap - lo)
            offsets = (np.arange(size) * g)[:, None]
            in_draw = gi[rng.integers(0, len(a), size=(size, len(a)))] + offsets
            out_draw = go[rng.integers(0, len(b), size=(size, len(b)))] + offsets
            in_rep = np.bincount(in_draw.ravel(), minlength=size * g).reshape(size, g).astype(np.float64)
            out_rep = np.bincount(out_draw.ravel(), minlength=size * g).reshape(size, g).astype(np.float64)
            replicates[:, lo : lo + size] = np.stack(_metrics(in_rep, out_rep))
        tails = [(1 - level) / 2, (1 + level) / 2]
        intervals = [tuple(float(v) for v in np.quantile(r, tails)) for r in replicates]  # type: ignore[misc]
    return OODEvaluation(
        auroc=point[0],
        aupr=point[1],
        fpr_at_95_tpr=point[2],
        auroc_interval=intervals[0],
        aupr_interval=intervals[1],
        fpr_at_95_tpr_interval=intervals[2],
        n_in=len(a),
        n_out=len(b),
        bootstrap=int(bootstrap),
        level=float(level),
        seed=int(seed),
    )
