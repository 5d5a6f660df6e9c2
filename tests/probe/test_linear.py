"""Linear probes: agreement with scikit-learn, planted answers, grouped folds, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from neurometry.errors import NeurometryError
from neurometry.folds import fold_assignment
from neurometry.probe.linear import LinearProbe, ProbeResult, probe


def _shifted_scaled(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """Features with very different offsets and scales, so standardisation matters."""
    return rng.normal(size=(n, d)) * rng.uniform(0.01, 100.0, d) + rng.normal(size=d) * 50.0


def _standardised(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=0)) / x.std(axis=0)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_logistic_probe_equals_sklearn_on_standardised_data(n_classes: int) -> None:
    rng = np.random.default_rng(n_classes)
    x = _shifted_scaled(rng, 300, 8)
    y = rng.integers(0, n_classes, 300)
    x[:, 0] += 40.0 * y  # some signal so the coefficients are not all near zero
    reference = LogisticRegression(C=0.5, max_iter=1000).fit(_standardised(x), y)
    fitted = LinearProbe("logistic", C=0.5).fit(x, y)
    z = _standardised(x)
    np.testing.assert_allclose(fitted.predict_proba(x), reference.predict_proba(z), rtol=0, atol=1e-8)
    np.testing.assert_array_equal(fitted.predict(x), reference.predict(z))
    np.testing.assert_array_equal(fitted.classes_, np.arange(n_classes))
    # coef_ and intercept_ in the original units reproduce the decision function
    logits = x @ fitted.coef_.T + fitted.intercept_
    expected = reference.decision_function(z)
    np.testing.assert_allclose(logits.reshape(expected.shape), expected, rtol=0, atol=1e-8)
    assert fitted.score(x, y) == pytest.approx(reference.score(z, y), abs=1e-12)


def test_ridge_probe_equals_closed_form_and_sklearn() -> None:
    rng = np.random.default_rng(1)
    x = _shifted_scaled(rng, 200, 6)
    y = _standardised(x) @ rng.normal(size=6) + rng.normal(size=200)
    alpha = 3.0
    fitted = LinearProbe("ridge", alpha=alpha).fit(x, y)
    z = _standardised(x)
    # ridge with an unpenalised intercept on standardised features (already centred)
    w = np.linalg.solve(z.T @ z + alpha * np.eye(6), z.T @ (y - y.mean()))
    np.testing.assert_allclose(fitted.predict(x), z @ w + y.mean(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(fitted.predict(x), Ridge(alpha=alpha).fit(z, y).predict(z), rtol=0, atol=1e-8)
    np.testing.assert_allclose(x @ fitted.coef_ + fitted.intercept_, fitted.predict(x), rtol=0, atol=1e-8)
    np.testing.assert_allclose(fitted.coef_, w / x.std(axis=0), rtol=1e-8)
    with pytest.raises(NeurometryError, match="logistic"):
        fitted.predict_proba(x)


def test_linear_probe_in_cross_val_score_and_clone() -> None:
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1, 2], 40)  # sorted: unstratified KFold would hold out whole classes
    x = rng.normal(size=(120, 5)) + y[:, None]
    estimator = LinearProbe("logistic", C=2.0)
    assert is_classifier(estimator) and not is_regressor(estimator)
    ours = cross_val_score(estimator, x, y, cv=4)
    theirs = cross_val_score(
        make_pipeline(StandardScaler(), LogisticRegression(C=2.0, max_iter=1000)), x, y, cv=4
    )
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    assert ours.min() > 0.6  # stratified folds; held-out whole classes would score 0

    target = x @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + rng.normal(size=120)
    ridge = LinearProbe("ridge", alpha=0.7)
    assert is_regressor(ridge) and not is_classifier(ridge)
    ours = cross_val_score(ridge, x, target, cv=3)
    theirs = cross_val_score(make_pipeline(StandardScaler(), Ridge(alpha=0.7)), x, target, cv=3)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-10)

    copy = clone(ridge)
    assert copy.get_params() == {"kind": "ridge", "C": 1.0, "alpha": 0.7, "max_iter": 1000}
    assert not hasattr(copy, "coef_")


def test_separable_classes_score_one_with_interval_in_range() -> None:
    rng = np.random.default_rng(3)
    y = np.repeat(["cat", "dog", "eel"], 30)
    x = rng.normal(size=(90, 3)) * 0.1 + 10.0 * (y[:, None] == np.array(["cat", "dog", "eel"]))
    result = probe(x, y)
    assert result.kind == "logistic" and result.n_classes == 3
    assert result.score == 1.0 and result.fold_scores == (1.0,) * 5
    assert 0.0 <= result.ci_low <= result.score <= result.ci_high <= 1.0
    assert result.baseline == pytest.approx(1 / 3, abs=0.02)  # balanced: the majority class is a third


def test_labels_independent_of_x_score_the_majority_baseline() -> None:
    rng = np.random.default_rng(4)
    y = (rng.random(1000) < 0.7).astype(int)
    result = probe(rng.normal(size=(1000, 10)), y)
    assert result.baseline == pytest.approx(np.mean(y), abs=0.01)  # stratified folds: every fold ~ 70 %
    # no signal: the probe predicts the majority class; tolerance ~ 3 SE of an accuracy at n = 1000
    assert abs(result.score - result.baseline) < 0.03


def test_interval_is_the_t_interval_of_the_fold_scores() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 400)
    x = rng.normal(size=(400, 3)) + 0.8 * y[:, None]
    for confidence in (0.8, 0.95):
        result = probe(x, y, confidence=confidence)
        scores = np.array(result.fold_scores)
        half = stats.t.ppf((1 + confidence) / 2, 4) * scores.std(ddof=1) / np.sqrt(5)
        assert result.score == pytest.approx(scores.mean(), abs=1e-12)
        assert (result.ci_low, result.ci_high) == pytest.approx((scores.mean() - half, scores.mean() + half))
        assert result.params["confidence"] == confidence


def test_planted_linear_target_gets_its_closed_form_r2() -> None:
    rng = np.random.default_rng(6)
    n, d, noise = 2000, 5, 0.5
    x = rng.normal(size=(n, d))
    w = rng.normal(size=d)
    w /= np.linalg.norm(w)  # signal variance 1
    y = x @ w + noise * rng.normal(size=n)
    result = probe(x, y)
    assert result.kind == "ridge" and result.n_classes is None
    expected = 1.0 - noise**2 / (1.0 + noise**2)  # 0.8
    # tolerance: a few SE of a fold R^2 at 400 held-out rows (~0.02), plus the d / n estimation loss
    assert result.score == pytest.approx(expected, abs=0.03)
    assert -0.02 < result.baseline <= 0.0  # the training mean misses the held-out mean slightly
    assert result.ci_high <= 1.0


def test_grouped_folds_stop_an_input_leaking_into_its_own_test() -> None:
    # many token rows per input share the input's random vector and its random label: a probe can
    # only memorise inputs, so held-out inputs are at chance unless their rows leak into training
    rng = np.random.default_rng(7)
    n_inputs, per_input, d = 150, 6, 200
    groups = np.repeat(np.arange(n_inputs), per_input)
    y = rng.integers(0, 2, n_inputs)[groups]
    x = rng.normal(size=(n_inputs, d))[groups] + 0.3 * rng.normal(size=(len(groups), d))
    grouped = probe(x, y, groups=groups)
    leaky = probe(x, y)
    assert grouped.n_groups == n_inputs and leaky.n_groups == len(groups)
    # chance 0.5 with SE ~ sqrt(0.25 / 150) = 0.04 over the inputs: 3 SE
    assert abs(grouped.score - 0.5) < 0.12
    assert leaky.score > 0.9


def test_auto_kind_rule() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(size=(60, 3))
    assert probe(x, np.tile([True, False], 30)).kind == "logistic"
    assert probe(x, np.tile(["a", "b", "c"], 20)).kind == "logistic"
    assert probe(x, np.tile([0.0, 1.0], 30)).kind == "logistic"  # whole-number floats, <= 10 values
    assert probe(x, rng.normal(size=60)).kind == "ridge"
    assert probe(x, np.tile([0.0, 1.0], 30), kind="ridge").kind == "ridge"


def test_to_dict_is_json_ready_with_the_documented_keys() -> None:
    rng = np.random.default_rng(9)
    result = probe(rng.normal(size=(40, 3)), np.tile([0, 1], 20), folds=4, seed=3)
    d = result.to_dict()
    assert list(d) == [
        "kind",
        "score",
        "ci_low",
        "ci_high",
        "baseline",
        "fold_scores",
        "n_rows",
        "n_groups",
        "n_classes",
        "k",
        "units",
        "params",
        "note",
    ]
    assert json.loads(json.dumps(d)) == d
    assert d["params"] == {"folds": 4, "seed": 3, "confidence": 0.95, "C": 1.0}
    assert isinstance(result, ProbeResult) and len(d["fold_scores"]) == 4


def test_seeded_and_deterministic() -> None:
    rng = np.random.default_rng(10)
    y = rng.integers(0, 2, 200)
    x = rng.normal(size=(200, 4)) + 0.5 * y[:, None]
    assert probe(x, y, seed=1) == probe(x, y, seed=1)
    assert probe(x, y, seed=1).fold_scores != probe(x, y, seed=2).fold_scores


@pytest.mark.parametrize(
    ("x_rows", "y", "kind", "folds", "message"),
    [
        (20, np.r_[np.nan, np.nan, np.nan, np.arange(17.0)], "auto", 5, "3 missing"),
        (20, np.zeros(20, dtype=int), "auto", 5, "single class"),
        (20, np.r_[np.zeros(17, dtype=int), 1, 1, 1], "auto", 5, "class 1 of y has 3 rows.*folds=3"),
        (21, np.tile([0, 1], 10), "auto", 5, "21 rows but y has 20"),
        (20, np.tile([0, 1], 10), "logistc", 5, "did you mean logistic"),
        (20, np.tile(["a", "b"], 10), "ridge", 5, "numeric"),
        (20, np.tile([0, 1], 10), "auto", 1, "folds must be"),
        (6, np.tile([0, 1], 3), "auto", 5, "at least 10 rows"),
    ],
)
def test_errors_are_one_line(x_rows: int, y: np.ndarray, kind: str, folds: int, message: str) -> None:
    x = np.random.default_rng(0).normal(size=(x_rows, 3))
    with pytest.raises(NeurometryError, match=message) as caught:
        probe(x, y, kind, folds=folds)
    assert "\n" not in str(caught.value)


def test_nan_activations_and_bad_confidence_are_errors() -> None:
    x = np.random.default_rng(0).normal(size=(20, 3))
    y = np.tile([0, 1], 10)
    with pytest.raises(NeurometryError, match="confidence"):
        probe(x, y, confidence=1.5)
    x[4, 1] = np.nan
    with pytest.raises(NeurometryError, match="row 4"):
        probe(x, y)


@pytest.mark.parametrize("kind", ["logistic", "ridge"])
def test_fold_scores_equal_a_manual_loop_standardising_each_training_fold(kind: str) -> None:
    rng = np.random.default_rng(11)
    groups = np.repeat(np.arange(60), 3)
    x = _shifted_scaled(rng, 180, 6)
    signal = _standardised(x) @ rng.normal(size=6)
    y = (signal > 0).astype(int) if kind == "logistic" else signal + rng.normal(size=180)
    result = probe(x, y, kind, groups=groups, folds=4, seed=5, C=0.3, alpha=2.0)
    fold = fold_assignment(180, 4, 5, groups=groups, stratify=y if kind == "logistic" else None)
    expected = []
    for f in range(4):
        train, test = fold != f, fold == f
        model = LogisticRegression(C=0.3, max_iter=1000) if kind == "logistic" else Ridge(alpha=2.0)
        model.fit(_standardised_by(x[train], x[train]), y[train])
        expected.append(model.score(_standardised_by(x[test], x[train]), y[test]))
    np.testing.assert_allclose(result.fold_scores, expected, rtol=0, atol=1e-12)
    assert result.n_groups == 60


def _standardised_by(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return (x - reference.mean(axis=0)) / reference.std(axis=0)


def test_a_training_fold_without_a_second_class_is_an_error() -> None:
    # class 1 lives in a single group, so the fold holding that group trains on class 0 only
    x = np.random.default_rng(12).normal(size=(40, 3))
    y = np.r_[np.zeros(34, dtype=int), np.ones(6, dtype=int)]
    groups = np.r_[np.arange(34), np.full(6, 99)]
    with pytest.raises(NeurometryError, match="training rows of fold .* hold only class 0"):
        probe(x, y, groups=groups)
