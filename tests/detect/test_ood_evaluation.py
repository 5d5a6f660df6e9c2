"""AUROC, AUPR and FPR at 95% TPR against closed forms, scikit-learn, pytorch-ood's ``fpr_at_tpr`` rule,
the DeLong variance, and a brute-force bootstrap."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import auc, precision_recall_curve, roc_auc_score, roc_curve

from neurometry.detect import OODEvaluation, aupr, auroc, evaluate, fpr_at_95_tpr
from neurometry.detect import roc_curve as our_roc_curve
from neurometry.errors import NeurometryError


def sklearn_metrics(in_scores, out_scores):
    """AUROC, AUPR-OUT and FPR95 as pytorch-ood's OODMetrics computes them (torchmetrics' curves, re-done with
    scikit-learn's: OOD = 1, trapezoidal PR area, first ROC point with TPR >= 0.95)."""
    y = np.r_[np.zeros(len(in_scores)), np.ones(len(out_scores))]
    s = np.r_[in_scores, out_scores]
    precision, recall, _ = precision_recall_curve(y, s)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return roc_auc_score(y, s), auc(recall, precision), fpr[np.searchsorted(tpr, 0.95)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_sklearn_and_pytorch_ood_with_ties(seed):
    rng = np.random.default_rng(seed)
    in_scores = np.round(rng.normal(0, 1, 300 + seed * 37), 1)  # rounded: many ties, across the classes too
    out_scores = np.round(rng.normal(1, 1.5, 200), 1)
    ref = sklearn_metrics(in_scores, out_scores)
    assert auroc(in_scores, out_scores) == pytest.approx(ref[0], abs=1e-12)
    assert aupr(in_scores, out_scores) == pytest.approx(ref[1], abs=1e-12)
    assert fpr_at_95_tpr(in_scores, out_scores) == ref[2]


def test_closed_forms():
    low, high = np.arange(10.0), np.arange(10.0) + 100
    assert (auroc(low, high), aupr(low, high), fpr_at_95_tpr(low, high)) == (1.0, 1.0, 0.0)
    assert (auroc(high, low), fpr_at_95_tpr(high, low)) == (0.0, 1.0)
    # every score tied: the ROC diagonal, one PR point (1, 20/30) joined to (0, 1)
    tied_in, tied_out = np.zeros(10), np.zeros(20)
    assert auroc(tied_in, tied_out) == 0.5
    assert aupr(tied_in, tied_out) == pytest.approx((1 + 20 / 30) / 2, abs=1e-15)
    assert fpr_at_95_tpr(tied_in, tied_out) == 1.0
    # OOD 0..19, ID 0..9 + 0.5: 19 of 20 OOD rows (95%) are >= 1, where the ID rows 1.5..9.5 (9 of 10) sit
    assert fpr_at_95_tpr(np.arange(10) + 0.5, np.arange(20.0)) == 0.9


def test_auroc_of_two_normals():
    """AUROC of N(delta, 1) against N(0, 1) is Phi(delta / sqrt 2)."""
    rng = np.random.default_rng(3)
    result = evaluate(rng.normal(0, 1, 20000), rng.normal(1, 1, 20000), bootstrap=100)
    assert result.auroc == pytest.approx(norm.cdf(1 / np.sqrt(2)), abs=0.01)
    assert result.auroc_interval[0] < norm.cdf(1 / np.sqrt(2)) < result.auroc_interval[1]


def test_bootstrap_interval_matches_the_delong_standard_error():
    rng = np.random.default_rng(4)
    in_scores, out_scores = rng.normal(0, 1, 400), rng.normal(1, 1, 300)
    # DeLong et al. (1988): the variance of the empirical AUROC from its placement values
    psi = (out_scores[:, None] > in_scores[None, :]) + 0.5 * (out_scores[:, None] == in_scores[None, :])
    se = np.sqrt(psi.mean(1).var(ddof=1) / len(out_scores) + psi.mean(0).var(ddof=1) / len(in_scores))
    result = evaluate(in_scores, out_scores, bootstrap=2000, seed=1)
    width = result.auroc_interval[1] - result.auroc_interval[0]
    assert 0.85 < width / (2 * norm.ppf(0.975) * se) < 1.15


def test_bootstrap_matches_explicit_resampling():
    """Same percentile intervals (within Monte-Carlo error) as resampling the rows and calling scikit-learn."""
    rng = np.random.default_rng(5)
    in_scores, out_scores = np.round(rng.normal(0, 1, 150), 1), np.round(rng.normal(1.2, 1, 100), 1)
    draws = np.array([
        sklearn_metrics(rng.choice(in_scores, len(in_scores)), rng.choice(out_scores, len(out_scores)))
        for _ in range(1000)
    ])
    brute = np.quantile(draws, [0.025, 0.975], axis=0).T
    result = evaluate(in_scores, out_scores, bootstrap=1000, seed=6)
    ours = [result.auroc_interval, result.aupr_interval, result.fpr_at_95_tpr_interval]
    for got, ref, tolerance in zip(ours, brute, (0.015, 0.02, 0.04), strict=True):
        np.testing.assert_allclose(got, ref, atol=tolerance)


def test_evaluate_is_seeded_brackets_its_estimate_and_serialises():
    rng = np.random.default_rng(7)
    in_scores, out_scores = rng.normal(0, 1, 300), rng.normal(0.8, 1, 250)
    first, again = evaluate(in_scores, out_scores, seed=3), evaluate(in_scores, out_scores, seed=3)
    assert first == again and evaluate(in_scores, out_scores, seed=4) != first
    for name in ("auroc", "aupr", "fpr_at_95_tpr"):
        low, high = getattr(first, f"{name}_interval")
        assert low <= getattr(first, name) <= high
    d = first.to_dict()
    assert json.loads(json.dumps(d)) == d and d["n_in"] == 300 and d["auroc_interval"] == list(first.auroc_interval)
    none = evaluate(in_scores, out_scores, bootstrap=0)
    assert isinstance(none, OODEvaluation) and none.auroc_interval is None and none.auroc == first.auroc


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: auroc([0.0, np.nan], [1.0]), "NaN"),
        (lambda: auroc(np.ones((2, 2)), [1.0]), "shape"),
        (lambda: aupr([], [1.0]), "empty"),
        (lambda: fpr_at_95_tpr(["a"], [1.0]), "real numbers"),
        (lambda: evaluate([0.0], [1.0], bootstrap=-1), "bootstrap"),
        (lambda: evaluate([0.0], [1.0], level=95), "level"),
    ],
)
def test_bad_input_raises_one_line(call, fragment):
    with pytest.raises(NeurometryError, match=fragment) as caught:
        call()
    assert "\n" not in str(caught.value)


def test_roc_curve_has_scikit_learns_vertices_and_the_auroc_as_its_area():
    rng = np.random.default_rng(3)
    inside, outside = np.round(rng.normal(size=300), 1), np.round(rng.normal(1.0, 1.0, size=200), 1)  # ties
    fpr, tpr = our_roc_curve(inside, outside, points=None)
    want_fpr, want_tpr, _ = roc_curve(np.r_[np.zeros(300), np.ones(200)], np.r_[inside, outside],
                                              drop_intermediate=False)
    np.testing.assert_allclose(fpr, want_fpr, atol=1e-15)
    np.testing.assert_allclose(tpr, want_tpr, atol=1e-15)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(inside, outside), abs=1e-12)
    grid, read = our_roc_curve(inside, outside, points=11)
    np.testing.assert_allclose(grid, np.linspace(0, 1, 11))
    np.testing.assert_allclose(read, np.interp(grid, fpr, tpr))
    # a vertical step is read at its top: perfectly separated scores reach TPR 1 at FPR 0
    assert our_roc_curve([0.0, 1.0], [2.0, 3.0], points=3)[1].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(NeurometryError, match="points must be"):
        our_roc_curve(inside, outside, points=1)
