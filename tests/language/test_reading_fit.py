"""Reading times regressed on surprisal: planted effects recovered, a null left alone, in-sample OLS and
held-out log-likelihood equal to statsmodels and scipy, spillover built within texts, exclusions counted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from neurometry.errors import NeurometryError
from neurometry.language import reading_fit
from neurometry.language.reading_fit import (
    ExclusionRules,
    baseline_residuals,
    fit_reading_times,
    fit_sources,
    has_attached_punctuation,
    prepare_design,
)

OPEN = ExclusionRules(first_last=False, min_target=None, max_target=None)


def simulated_reading(
    seed: int, surprisal_effect: float, spillover_effect: float, texts: int = 5, words: int = 400
) -> pd.DataFrame:
    """``texts`` x ``words`` words: length 1-11, log frequency falling with length, surprisal falling with
    frequency (correlated predictors, as in text), RT = 300 + 2 length - 5 log_frequency + effect x surprisal
    + spillover_effect x previous surprisal + N(0, 20^2)."""
    rng = np.random.default_rng(seed)
    parts = []
    for text in range(texts):
        length = rng.integers(1, 12, words).astype(float)
        log_frequency = 20 - 0.8 * length + rng.normal(0, 2, words)
        surprisal = 12 - 0.3 * log_frequency + rng.gamma(2.0, 2.0, words)
        previous = np.concatenate([[0.0], surprisal[:-1]])
        rt = (
            300 + 2 * length - 5 * log_frequency + surprisal_effect * surprisal + spillover_effect * previous
            + rng.normal(0, 20, words)
        )
        parts.append(
            pd.DataFrame(
                {
                    "item": text + 1,
                    "zone": np.arange(1, words + 1),
                    "word": "w",
                    "length": length,
                    "log_frequency": log_frequency,
                    "surprisal": surprisal,
                    "meanItemRT": rt,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def interval(fit, column: str) -> tuple[float, float]:
    half = stats.t.ppf(0.975, fit.words - len(fit.coefficients)) * fit.standard_errors[column]
    return fit.coefficients[column] - half, fit.coefficients[column] + half


def test_planted_surprisal_and_spillover_are_recovered():
    fit = fit_reading_times(simulated_reading(1, 8.0, 4.0), permutations=300, seed=0)
    low, high = fit.slope_ci
    assert low <= 8.0 <= high and high - low < 1.5  # the planted slope, to within about 0.7 ms/bit
    spill_low, spill_high = interval(fit, "surprisal_prev1")
    assert fit.spillover_slope_ms_per_bit == fit.coefficients["surprisal_prev1"]
    assert spill_low <= 4.0 <= spill_high and spill_high - spill_low < 1.5
    assert fit.delta_loglik_per_word > 0.1  # nats/word: with 20 ms noise the surprisal terms gain a lot
    assert fit.delta_r2 > 0.1
    assert fit.p_value < 0.01
    assert fit.p_value == pytest.approx(1 / 301)  # no shuffle beats the real column
    assert set(fit.per_group) == {1, 2, 3, 4, 5} and min(fit.per_group.values()) > 0
    assert fit.words == 5 * 400 - 5 * 2 - 5  # first and last words, then the second words (no lag-2 word)
    assert fit.excluded == {"first_last": 10, "punctuation": 0, "missing": 5, "target_range": 0}


def test_without_an_effect_the_fit_finds_none():
    fit = fit_reading_times(simulated_reading(2, 0.0, 0.0), permutations=300, seed=0)
    low, high = fit.slope_ci
    assert low <= 0.0 <= high and high - low < 1.5
    assert fit.p_value > 0.05
    assert fit.delta_loglik_per_word < 0.005  # about 0 (the extra coefficients cost a little held out)
    assert abs(fit.delta_r2) < 0.01


def test_in_sample_fit_equals_statsmodels():
    frame = simulated_reading(3, 6.0, 2.0, texts=4, words=150)
    fit = fit_reading_times(frame, permutations=0)
    design = prepare_design(frame, "meanItemRT", ["surprisal"], ("length", "log_frequency", "position"), 2)
    columns = [*design.baseline_columns, *design.source_columns["surprisal"]]
    assert columns == [
        "length", "log_frequency", "zone", "length_prev1", "log_frequency_prev1", "length_prev2",
        "log_frequency_prev2", "surprisal", "surprisal_prev1", "surprisal_prev2",
    ]
    reference = sm.OLS(design.target_values(), sm.add_constant(design.values(columns))).fit()
    np.testing.assert_allclose(list(fit.coefficients.values()), reference.params, rtol=1e-8)
    np.testing.assert_allclose(list(fit.standard_errors.values()), reference.bse, rtol=1e-8)
    slope = 1 + len(design.baseline_columns)
    np.testing.assert_allclose(fit.slope_ci, reference.conf_int(0.05)[slope], rtol=1e-8)
    assert fit.p_value is None and fit.words == design.words == reference.nobs

    baseline = sm.OLS(design.target_values(), sm.add_constant(design.values(design.baseline_columns))).fit()
    np.testing.assert_allclose(fit.baseline_residuals.to_numpy(), baseline.resid, rtol=1e-8, atol=1e-9)
    assert fit.baseline_residuals.index.equals(design.rows.index)
    residuals = baseline_residuals(frame, sources=["surprisal"])
    pd.testing.assert_series_equal(residuals, fit.baseline_residuals)


def heldout_reference(design, columns, group: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-word held-out log-likelihood and prediction: statsmodels OLS on the other groups, scored with
    scipy's normal density at the training fold's maximum-likelihood sigma, sqrt(RSS / n_train)."""
    y = design.target_values()
    x = sm.add_constant(design.values(columns), has_constant="add")
    groups = design.rows[group].to_numpy()
    loglik, prediction = np.empty_like(y), np.empty_like(y)
    for label in np.unique(groups):
        test = groups == label
        train = sm.OLS(y[~test], x[~test]).fit()
        sigma = np.sqrt(train.ssr / (~test).sum())
        prediction[test] = x[test] @ train.params
        loglik[test] = stats.norm.logpdf(y[test], loc=prediction[test], scale=sigma)
    return loglik, prediction


def test_heldout_loglik_equals_scipy_normal_density():
    frame = simulated_reading(4, 5.0, 1.0, texts=4, words=150)
    fit = fit_reading_times(frame, permutations=0)
    design = prepare_design(frame, "meanItemRT", ["surprisal"], ("length", "log_frequency", "position"), 2)
    base_ll, base_pred = heldout_reference(design, design.baseline_columns, "item")
    full_columns = design.baseline_columns + design.source_columns["surprisal"]
    full_ll, full_pred = heldout_reference(design, full_columns, "item")
    assert fit.delta_loglik_per_word == pytest.approx((full_ll - base_ll).mean(), rel=1e-8)
    groups = design.rows["item"].to_numpy()
    for label, value in fit.per_group.items():
        assert value == pytest.approx((full_ll - base_ll)[groups == label].mean(), rel=1e-8)
    y = design.target_values()
    total = ((y - y.mean()) ** 2).sum()
    r2_gain = (((y - base_pred) ** 2).sum() - ((y - full_pred) ** 2).sum()) / total
    assert fit.delta_r2 == pytest.approx(r2_gain, rel=1e-8)

    # the batched engine behind the permutation test scores the real column the same way
    folds = pd.factorize(groups)[0]
    engine = reading_fit._HeldoutEngine(design.values(design.baseline_columns), y, folds)
    added = design.values(design.source_columns["surprisal"])[None]
    assert engine.baseline_loglik == pytest.approx(base_ll.sum(), rel=1e-9)
    assert engine.delta_loglik(added)[0] == pytest.approx(fit.delta_loglik_per_word, rel=1e-8)


def test_spillover_is_built_within_texts_from_the_word_positions():
    # two texts in shuffled row order; text "b" lacks position 3, so position 4 has no previous word
    frame = pd.DataFrame(
        {
            "item": ["b", "a", "a", "b", "a", "b", "a", "b"],
            "zone": [2, 3, 1, 1, 4, 4, 2, 5],
            "s": [20.0, 3.0, 1.0, 10.0, 4.0, 40.0, 2.0, 50.0],
            "length": [5.0, 3.0, 1.0, 2.0, 7.0, 4.0, 6.0, 8.0],
            "rt": [300.0, 310.0, 320.0, 330.0, 340.0, 350.0, 360.0, 370.0],
        },
        index=[10, 11, 12, 13, 14, 15, 16, 17],
    )
    design = prepare_design(frame, "rt", ["s"], ["length", "position"], spillover=1, rules=OPEN)
    # kept, in (text, position) order: a2, a3, a4, b2, b5; a1 and b1 start a text, b4 follows a gap
    assert list(design.rows.index) == [16, 11, 14, 10, 17]
    assert list(design.rows["s_prev1"]) == [1.0, 2.0, 3.0, 10.0, 40.0]
    assert list(design.rows["length_prev1"]) == [1.0, 6.0, 3.0, 2.0, 4.0]
    assert design.excluded == {"first_last": 0, "punctuation": 0, "missing": 3, "target_range": 0}
    # the position gets no spillover copy
    assert design.baseline_columns == ("length", "zone", "length_prev1")
    assert design.source_columns == {"s": ("s", "s_prev1")}

    two = prepare_design(frame, "rt", ["s"], ["length"], spillover=2, rules=OPEN)
    assert list(two.rows.index) == [11, 14]  # a3, a4: b5's lag-2 word (b3) is missing
    assert list(two.rows["s_prev2"]) == [1.0, 2.0]
    assert two.excluded["missing"] == 6


def test_exclusion_rules_count_each_word_once_in_order():
    frame = pd.DataFrame(
        {
            "item": [1] * 7 + [2] * 7,
            "zone": list(range(1, 8)) * 2,
            "word": ["'The", "cat,", "boar's", "x-ray", "sat.", "on", "it."]
            + ["A", "dog", "ran", "far", "away", "now", "then"],
            "rt": [500.0, 400, 300, 300, 50, 300, 300, 300, 300, np.nan, 4000, 300, 300, 300],
            "s": [1.0, 2, 3, 4, 5, 6, 7, 1, 2, 3, 4, 5, np.inf, 7],
        }
    )
    rules = ExclusionRules(first_last=True, punctuation=True, min_target=100.0, max_target=3000.0)
    design = prepare_design(frame, "rt", ["s"], [], spillover=0, rules=rules)
    # first_last: 4 ('The, it., A, then); punctuation: cat, and sat. ('The and it. went already; boar's and
    # x-ray keep their inner apostrophe and hyphen); missing: the NaN target and the inf surprisal;
    # target_range: 4000 ms (50 ms belonged to sat.)
    assert design.excluded == {"first_last": 4, "punctuation": 2, "missing": 2, "target_range": 1}
    assert list(design.rows["word"]) == ["boar's", "x-ray", "on", "dog", "away"]
    assert sum(design.excluded.values()) + design.words == len(frame)

    loose = prepare_design(frame, "rt", ["s"], [], spillover=0, rules=ExclusionRules(first_last=False))
    assert loose.excluded == {"first_last": 0, "punctuation": 0, "missing": 2, "target_range": 2}
    assert [has_attached_punctuation(w) for w in ("England,", "'It's", "boar's", "hedge-king", "-")] == [
        True, True, False, False, True,
    ]


def test_several_sources_share_words_and_baseline():
    frame = simulated_reading(5, 6.0, 2.0, texts=3, words=120)
    frame["noise"] = np.random.default_rng(0).normal(size=len(frame))
    frame.loc[7, "noise"] = np.nan  # a word without this source is dropped for both
    both = fit_sources(frame, ["surprisal", "noise"], permutations=50, seed=3)
    assert [fit.source for fit in both] == ["surprisal", "noise"]
    assert both[0].words == both[1].words
    assert both[0].baseline_residuals.equals(both[1].baseline_residuals)
    without_word_7 = frame.assign(surprisal=frame["surprisal"].mask(frame.index == 7))
    alone = fit_reading_times(without_word_7, permutations=0)
    expected = {**both[0].to_dict(), "p_value": None, "permutations": 0}
    assert alone.to_dict() == expected  # the same words, baseline and folds
    record = both[0].to_dict()
    assert list(record)[:8] == [
        "source", "slope_ms_per_bit", "slope_ci", "spillover_slope_ms_per_bit", "delta_loglik_per_word",
        "delta_r2", "p_value", "words",
    ]
    assert set(record["per_group"]) == {"1", "2", "3"}
    none = fit_reading_times(frame, spillover=0, permutations=0)
    assert none.spillover_slope_ms_per_bit is None and "surprisal_prev1" not in none.coefficients


def small_frame() -> pd.DataFrame:
    return simulated_reading(6, 5.0, 0.0, texts=3, words=30)


@pytest.mark.parametrize(
    "change, call, message",
    [
        (None, dict(source_column="surprise"), "did you mean surprisal"),
        (None, dict(group="story"), "column 'story' not in"),
        (lambda f: f.assign(item=1, zone=np.arange(len(f))), {}, "need >= 2 groups"),
        (lambda f: f[f["zone"] <= 6], {}, "9 words kept for 11 coefficients; need at least 13"),
        (lambda f: f.assign(length=4.0), {}, "predictor 'length' is constant"),
        (lambda f: f.assign(surprisal=f["length"] * 2 + 1), {}, "collinear"),
        (lambda f: f.assign(meanItemRT="slow"), {}, "not numeric"),
        (lambda f: f.assign(zone=1), {}, "repeats"),
        (lambda f: f.assign(zone=f["zone"] + 0.5), {}, "whole numbers"),
        (lambda f: f.assign(surprisal_prev1=0.0), {}, "already exists"),
        (None, dict(spillover=-1), "spillover must be"),
        (None, dict(permutations=-5), "permutations must be"),
    ],
)
def test_bad_input_is_a_one_line_error(change, call, message):
    frame = small_frame() if change is None else change(small_frame())
    with pytest.raises(NeurometryError, match=message) as caught:
        fit_reading_times(frame, **{"permutations": 10, **call})
    assert "\n" not in str(caught.value)


def test_bad_rules_are_one_line_errors():
    with pytest.raises(NeurometryError, match="not below max_target"):
        ExclusionRules(min_target=500.0, max_target=200.0)
    with pytest.raises(NeurometryError, match="punctuation rule"):
        prepare_design(small_frame().drop(columns="word"), "meanItemRT", ["surprisal"], [], 0,
                       rules=ExclusionRules(punctuation=True))
