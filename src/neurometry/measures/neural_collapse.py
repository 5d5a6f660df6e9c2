"""Neural collapse (Papyan, Han & Donoho 2020, PNAS) and class-distance normalised variance
(Galanti, Gyorgy & Hutter 2022) of features H (n, d) with class labels y (n,).

Class statistics stream: per-class counts and sums, plus the float64 second moment for nc1.

Definitions (as in Papyan et al. and their reference code): mu_c is the mean of class c's rows, and the
global mean is mu_G = (1/C) sum_c mu_c, the unweighted mean of the C class means, not the mean of all
rows. The two agree for balanced classes; with imbalanced ones the mean of all rows is pulled towards
the largest class, and a perfectly collapsed simplex ETF with class counts 10/20/40/400 would read as
far from collapsed (nc2_equiangular 0.56, nc2_equinorm 0.48, nc3 0.44 instead of about 0). The
"centred class means" M (C, d) are mu_c - mu_G; Sigma_B = M^T M / C. Sigma_W averages over all n rows,
(1/n) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T, so each row counts once (as in the reference).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from neurometry.arrays import plain_value
from neurometry.errors import NeurometryError
from neurometry.measures.accumulators import ClassMomentsState, MomentsState, SubsampleState
from neurometry.measures.registry import MeasureResult, register, result
from neurometry.measures.streaming import run_one


def _classes(states: Mapping[str, Any], name: str) -> ClassMomentsState:
    c: ClassMomentsState = states["class_moments"]
    if len(c.classes) < 2:
        raise NeurometryError(
            f"{name} needs at least 2 classes, got {len(c.classes)}; pass labels with 2 or more classes"
        )
    single = np.flatnonzero(np.asarray(c.counts) < 2)
    if len(single):  # one row has no spread: every such class would read as perfectly collapsed
        raise NeurometryError(
            f"{name}: {len(single)} of {len(c.classes)} classes have a single row (e.g. "
            f"{plain_value(c.classes[single[0]])!r}); "
            "within-class variability needs at least 2 rows per class: drop those rows or choose a coarser label"
        )
    return c


def _pairs(c: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(c, k=1)


@register(
    "nc1", "labels", ("moments", "class_moments"), "NC1 within-class variability tr(Sigma_W Sigma_B^+) / C"
)
def _nc1(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
    c = _classes(states, "nc1")
    m: MomentsState = states["moments"]
    nu = c.means_shifted
    sw = (m.m2 - (nu.T * c.counts) @ nu) / c.n  # within-class covariance
    # Sigma_B = M^T M / C with M (C, d) the centred class means; with M = U S V^T,
    # tr(Sigma_W Sigma_B^+) / C = sum_k v_k^T Sigma_W v_k / s_k^2
    _, s, vt = np.linalg.svd(c.centred_means, full_matrices=False)
    keep = s > s[0] * max(c.centred_means.shape) * np.finfo(np.float64).eps
    if not keep.any():
        raise NeurometryError("nc1: all class means are equal; Sigma_B is zero")
    v = vt[keep]
    return result(np.sum(np.einsum("kd,de,ke->k", v, sw, v) / s[keep] ** 2), n_classes=len(c.classes))


def nc1(h: np.ndarray, labels: np.ndarray) -> MeasureResult:
    """NC1 = tr(Sigma_W Sigma_B^+) / C for features H (n, d) and labels (n,) (Papyan et al. 2020):
    Sigma_W = (1/n) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T the within-class covariance over all n rows,
    Sigma_B = (1/C) sum_c (mu_c - mu_G)(mu_c - mu_G)^T the between-class covariance of the C class means
    centred on mu_G = (1/C) sum_c mu_c (the unweighted mean of the class means, not the mean of all
    rows), ^+ the pseudo-inverse. Falls towards 0 as features collapse onto their class means."""
    return run_one("nc1", h, labels=labels)


@register("nc2_equinorm", "labels", ("class_moments",), "NC2 equinorm: std (ddof=1) / mean of centred class-mean norms")
def _nc2_equinorm(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
    c = _classes(states, "nc2_equinorm")
    norms = np.linalg.norm(c.centred_means, axis=1)
    return result(norms.std(ddof=1) / norms.mean(), norms=norms)


def nc2_equinorm(h: np.ndarray, labels: np.ndarray) -> MeasureResult:
    """NC2 equinorm (Papyan et al. 2020): std / mean over the C classes of ||mu_c - mu_G||, for H (n, d)
    and labels (n,), with mu_G = (1/C) sum_c mu_c the unweighted mean of the class means. The std is the
    sample std (ddof=1, divided by C - 1), as ``torch.std`` in the reference code; the population std
    would be smaller by sqrt((C - 1) / C). 0 when all centred class means have the same norm."""
    return run_one("nc2_equinorm", h, labels=labels)


@register(
    "nc2_equiangular",
    "labels",
    ("class_moments",),
    "NC2 equiangularity: mean |cos(mu_c, mu_c') + 1/(C-1)| over class pairs",
)
def _nc2_equiangular(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
    c = _classes(states, "nc2_equiangular")
    mu = c.centred_means
    norms = np.linalg.norm(mu, axis=1)
    if (norms == 0).any():
        raise NeurometryError(
            "nc2_equiangular: a class mean equals the mean of the class means; its angle is undefined"
        )
    u = mu / norms[:, None]
    i, j = _pairs(len(u))
    cos = np.einsum("kd,kd->k", u[i], u[j])
    dev = np.abs(cos + 1.0 / (len(u) - 1))
    return result(dev.mean(), std_cos=float(cos.std()), mean_cos=float(cos.mean()))


def nc2_equiangular(h: np.ndarray, labels: np.ndarray) -> MeasureResult:
    """NC2 equiangularity (Papyan et al. 2020, the "maximal-angle" panel): the mean absolute deviation
    of the pairwise cosines of the centred class means mu_c - mu_G (mu_G the unweighted mean of the class
    means) from -1/(C-1), over the C(C-1)/2 pairs; 0 for a simplex ETF whatever the class counts.
    ``fields['std_cos']`` is the population std of those cosines (the "equiangularity" panel)."""
    return run_one("nc2_equiangular", h, labels=labels)


def _classifier_rows(
    states: Mapping[str, Any], p: Mapping[str, Any]
) -> tuple[ClassMomentsState, np.ndarray, np.ndarray]:
    ctx = p["_ctx"]
    w, b = ctx.classifier
    c = states["class_moments"]
    if w.shape[1] != c.centred_means.shape[1]:
        raise NeurometryError(
            f"the classifier has {w.shape[1]} input features but the activations have {c.centred_means.shape[1]}; "
            "pass the weights of the layer that reads this point"
        )
    return c, w, b


@register("nc3", "labels", ("class_moments",), "NC3 self-duality ||W/||W|| - M/||M|| ||_F^2")
def _nc3(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
    _classes(states, "nc3")
    c, w, _ = _classifier_rows(states, p)
    w = w[c.classes]
    mu = c.centred_means
    return result(np.sum((w / np.linalg.norm(w) - mu / np.linalg.norm(mu)) ** 2))


def nc3(h: np.ndarray, labels: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> MeasureResult:
    """NC3 self-duality (Papyan et al. 2020): ||W / ||W||_F - M / ||M||_F||_F^2 with W (C, d) the
    classifier weights (rows of the classes present) and M (C, d) the class means of H (n, d) centred on
    their unweighted mean; labels must be integers indexing the rows of W. Between 0 (aligned) and 4."""
    return run_one("nc3", h, labels=labels, classifier=(w, b))


@register(
    "nc4",
    "labels",
    ("class_moments", "subsample"),
    "NC4: agreement of nearest-class-centre and classifier predictions",
)
def _nc4(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
    c = _classes(states, "nc4")
    s: SubsampleState = states["subsample"]
    labels = p["_ctx"].labels
    h = np.asarray(s.rows, dtype=np.float64)
    mu = c.means
    d2 = (h * h).sum(1)[:, None] - 2 * h @ mu.T + (mu * mu).sum(1)[None, :]
    ncc = c.classes[np.argmin(d2, axis=1)]
    if p["_ctx"].classifier is not None:
        _, w, b = _classifier_rows(states, p)
        pred = np.argmax(h @ w.T + b, axis=1)
        how = "given classifier"
    else:
        y = p["_ctx"].classes[labels[s.index]]
        if len(np.unique(y)) < 2:
            raise NeurometryError("nc4 needs at least 2 classes among the sampled rows to fit a classifier")
        from sklearn.linear_model import LogisticRegression

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf = LogisticRegression(max_iter=1000).fit(h, y)
        pred = clf.predict(h)
        how = "fitted LogisticRegression"
    note = "; ".join(x for x in (how, s.note) if x)
    return result(np.mean(pred == ncc), note=note, n_evaluated=len(h))


def nc4(
    h: np.ndarray,
    labels: np.ndarray,
    classifier: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    seed: int = 0,
    max_rows: int = 20000,
) -> MeasureResult:
    """NC4 (Papyan et al. 2020): the fraction of rows of H (n, d) on which the nearest-class-centre
    rule argmin_c ||h - mu_c|| agrees with the classifier's argmax_c (W h + b)_c. ``classifier`` is
    (W (C, d), b (C,)) with labels indexing W's rows; without it a scikit-learn LogisticRegression
    (default settings, max_iter=1000) is fitted to the rows and labels. Class means use all rows; the
    agreement is evaluated on a seeded sample of at most ``max_rows`` rows (all rows when n is smaller)."""
    return run_one("nc4", h, labels=labels, classifier=classifier, seed=seed, max_rows=max_rows)


@register("cdnv", "labels", ("class_moments",), "class-distance normalised variance, mean over class pairs")
def _cdnv(states: Mapping[str, Any], p: Mapping[str, Any]) -> MeasureResult:
    c = _classes(states, "cdnv")
    i, j = _pairs(len(c.classes))
    mu = c.means_shifted
    dist2 = ((mu[i] - mu[j]) ** 2).sum(1)
    if (dist2 == 0).any():
        raise NeurometryError("cdnv: two classes have the same mean; their CDNV is infinite")
    v = c.variances
    return result(np.mean((v[i] + v[j]) / (2 * dist2)), class_variance=v)


def cdnv(h: np.ndarray, labels: np.ndarray) -> MeasureResult:
    """Class-distance normalised variance (Galanti et al. 2022, ICLR): the mean over class pairs i < j
    of (Var_i + Var_j) / (2 ||mu_i - mu_j||^2), with Var_c = mean ||h - mu_c||^2 over class c, for
    H (n, d) and labels (n,)."""
    return run_one("cdnv", h, labels=labels)
