"""Reading times regressed on word surprisal: does a language model's surprisal predict how long people read a
word, beyond the word's length, frequency and position?

The measure is the held-out gain in log-likelihood per word of a linear model of reading time that adds
surprisal (of the word and of the words before it, the "spillover") to a baseline model, as in Goodkind &
Bicknell 2018 ("Predictive power of word surprisal for reading times is a linear function of language model
quality", CMCL), Wilcox, Gauthier, Hu, Qian & Levy 2020 ("On the predictive power of neural language models
for human real-time comprehension behavior", CogSci) and Oh & Schuler 2023 ("Why does surprisal from larger
transformer-based language models provide a poorer fit to human reading times?", TACL). Reading times are
per-word means over subjects (e.g. Natural Stories, :func:`neurometry.datasets.naturalstories_words`).

Choices, fixed here so every number means one thing:

- Models are ordinary least squares with an intercept, in float64. The baseline holds the ``baseline``
  predictors of the word and, for each of them except the position, of the ``spillover`` words before it
  (length and frequency of the previous words slow reading too: Smith & Levy 2013, Wilcox et al. 2020); the
  full model adds the surprisal of the word and of the ``spillover`` words before it. The position gets no
  spillover copy: position - k is the position again, less a constant.
- Spillover values come from the word ``k`` positions earlier in the same text (the same ``text`` value,
  ``position - k``), looked up before any word is excluded: an excluded word still counts as the previous
  word of the next one. A word with no such word (the first words of a text, or a gap) has a missing
  spillover value and is dropped under the ``missing`` rule.
- Exclusions apply in the order of :data:`EXCLUSION_RULES`; each word is counted under the first rule that
  removes it, so the counts add up to the words dropped.
- The slope's interval is the 95% t interval from classical OLS standard errors (sigma^2 = RSS/(n-p), as
  statsmodels' ``OLS(...).fit()`` reports). Word-level residuals are autocorrelated within a text, so read
  it as descriptive; the permutation p-value on held-out log-likelihood is the test.
- Held-out log-likelihood: leave one ``group`` out; each fold fits both models by OLS on the other groups
  and scores the held-out words under a Gaussian with the fold's maximum-likelihood residual variance
  sigma^2 = RSS_train / n_train (what R's ``logLik`` and statsmodels' ``llf`` use in-sample).
- Permutation test: the surprisal column is shuffled within each text over all words of the input (excluded
  words too: they feed the spillover of kept ones), the spillover columns are rebuilt from the shuffled
  values, the baseline stays, and the held-out gain is recomputed. Shuffling also breaks surprisal's
  correlation with length and frequency and its order along the text; on simulated independent words the
  test holds its level (6% of 300 null simulations below 0.05), but with residuals autocorrelated along a
  text (real reading) it can be optimistic.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import linalg as sla
from scipy import stats

from neurometry.errors import NeurometryError, did_you_mean
from neurometry.folds import fold_assignment
from neurometry.threads import blas_threads

EXCLUSION_RULES = ("first_last", "punctuation", "missing", "target_range")
"""The exclusion rules in the order they apply; :attr:`Design.excluded` counts words under each."""

# what each rule means in the fit command's own terms, for the message when no word is left
EXCLUSION_HINTS = {
    "first_last": "the first/last-word rule (--keep-first-last)",
    "punctuation": "--exclude-punctuation",
    "missing": "a missing target or predictor",
    "target_range": "--min-target/--max-target",
}

POSITION = "position"
"""The baseline name that stands for the ``position`` column (the word's index in its text, e.g. ``zone``)."""

CONFIDENCE = 0.95
"""Level of :attr:`ReadingFit.slope_ci`."""

INTERCEPT = "intercept"

_PERMUTATION_BATCH = 128  # permutations scored at once: (batch, words, 1 + spillover) float64 temporaries

# an apostrophe or hyphen between two letters or digits ("boar's", "hedge-king") is part of the word
_INNER_JOINER = re.compile(r"(?<=[^\W_])['\u2019-](?=[^\W_])")


def spillover_column(column: str, lag: int) -> str:
    """Name of the column holding ``column`` of the word ``lag`` positions earlier: ``surprisal_prev1``."""
    return f"{column}_prev{lag}"


def has_attached_punctuation(word: str) -> bool:
    """Whether ``word`` holds a character other than a letter or digit, not counting an apostrophe or hyphen
    between two letters or digits: ``"England,"`` and ``"'It's"`` do, ``"boar's"`` and ``"x-ray"`` do not."""
    return not _INNER_JOINER.sub("", word).isalnum()


@dataclass(frozen=True)
class ExclusionRules:
    """Which words a reading-time fit leaves out (:data:`EXCLUSION_RULES`, applied in that order).

    Attributes:
        first_last: drop the first and last word of every text (the first word carries the start-up of
            reading, the last the wrap-up of the text).
        punctuation: drop words with attached punctuation (:func:`has_attached_punctuation`), whose reading
            times include clause and sentence wrap-up.
        min_target, max_target: keep words whose target lies in [min_target, max_target] (ms); ``None``
            leaves that side open. A stated outlier rule: the defaults drop implausibly fast and slow words.

    Words whose target or any predictor (current or spillover) is missing or not finite are always dropped
    and counted under ``missing``.
    """

    first_last: bool = True
    punctuation: bool = False
    min_target: float | None = 100.0
    max_target: float | None = 3000.0

    def __post_init__(self) -> None:
        for name in ("min_target", "max_target"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            ):
                raise NeurometryError(f"{name} must be a finite number or None, got {value!r}")
        if self.min_target is not None and self.max_target is not None and self.min_target >= self.max_target:
            raise NeurometryError(
                f"min_target {self.min_target} is not below max_target {self.max_target}; "
                "give a range that keeps words"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "first_last": self.first_last,
            "punctuation": self.punctuation,
            "min_target": self.min_target,
            "max_target": self.max_target,
        }


@dataclass(frozen=True)
class Design:
    """The words a fit uses and the predictors of its models (:func:`prepare_design`).

    Attributes:
        rows: the n kept words, in (text, position) order, with the input frame's index and columns plus the
            spillover columns (:func:`spillover_column`).
        target: the column predicted (ms).
        baseline_columns: (b,) predictors of the baseline model, intercept not included: the baseline
            columns, then their spillover copies lag by lag.
        source_columns: for each surprisal column, its (1 + spillover,) predictors: the word's own value,
            then lag 1, 2, ...
        spillover: how many previous words' values enter as predictors.
        excluded: words dropped under each of :data:`EXCLUSION_RULES`.
        lag_rows: (n, 1 + spillover) row numbers (``iloc``) in the input frame of each kept word and of the
            words 1 .. spillover positions before it; what a permutation test needs to rebuild spillover
            columns from shuffled surprisal.
        text_codes: (rows of the input frame,) the text of every input row, as integer codes.
    """

    rows: pd.DataFrame
    target: str
    baseline_columns: tuple[str, ...]
    source_columns: dict[str, tuple[str, ...]]
    spillover: int
    excluded: dict[str, int]
    lag_rows: np.ndarray = field(repr=False, compare=False)
    text_codes: np.ndarray = field(repr=False, compare=False)

    @property
    def words(self) -> int:
        return len(self.rows)

    def values(self, columns: Sequence[str]) -> np.ndarray:
        """(n, len(columns)) float64 values of the kept words."""
        return self.rows[list(columns)].to_numpy(dtype=np.float64).reshape(len(self.rows), len(columns))

    def target_values(self) -> np.ndarray:
        """(n,) float64 target of the kept words."""
        return self.rows[self.target].to_numpy(dtype=np.float64)


@dataclass(frozen=True)
class ReadingFit:
    """How much one surprisal source adds to the baseline model of reading times (:func:`fit_sources`).

    Attributes:
        source: the surprisal column (e.g. ``final`` or ``resid.3``).
        target: the reading-time column (ms).
        slope_ms_per_bit: in-sample OLS coefficient of the word's own surprisal in the full model on all
            kept words (ms per bit when surprisal is in bits).
        slope_ci: its 95% t interval from classical OLS standard errors.
        spillover_slope_ms_per_bit: coefficient of the previous word's surprisal; ``None`` with spillover 0.
        delta_loglik_per_word: held-out (leave one group out) Gaussian log-likelihood of the full model
            minus the baseline's, averaged over all held-out words, in nats per word (Goodkind & Bicknell
            2018; Wilcox et al. 2020; Oh & Schuler 2023).
        delta_r2: held-out R^2 of the full model minus the baseline's, pooled over folds: (SSE_baseline -
            SSE_full) / sum((y - mean y)^2) over the kept words.
        p_value: permutation p-value of ``delta_loglik_per_word``: surprisal shuffled within each text,
            spillover rebuilt, (1 + #{permuted >= observed}) / (1 + permutations); ``None`` with 0
            permutations.
        words: words kept (n).
        excluded: words dropped under each of :data:`EXCLUSION_RULES`.
        per_group: held-out delta log-likelihood per word within each left-out group.
        permutations: permutations behind ``p_value``.
        coefficients, standard_errors: every in-sample coefficient of the full model (``intercept``, the
            baseline columns, the source columns) and its classical OLS standard error.
        baseline_residuals: (n,) in-sample residuals of the baseline model, indexed like the kept rows of
            the input frame (target minus what length, frequency and position predict).
    """

    source: str
    target: str
    slope_ms_per_bit: float
    slope_ci: tuple[float, float]
    spillover_slope_ms_per_bit: float | None
    delta_loglik_per_word: float
    delta_r2: float
    p_value: float | None
    words: int
    excluded: dict[str, int]
    per_group: dict[Any, float]
    permutations: int
    coefficients: dict[str, float]
    standard_errors: dict[str, float]
    baseline_residuals: pd.Series = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the per-source record a ``fit`` command prints, then the details."""
        return {
            "source": self.source,
            "slope_ms_per_bit": self.slope_ms_per_bit,
            "slope_ci": list(self.slope_ci),
            "spillover_slope_ms_per_bit": self.spillover_slope_ms_per_bit,
            "delta_loglik_per_word": self.delta_loglik_per_word,
            "delta_r2": self.delta_r2,
            "p_value": self.p_value,
            "words": self.words,
            "target": self.target,
            "excluded": dict(self.excluded),
            "per_group": {str(group): value for group, value in self.per_group.items()},
            "permutations": self.permutations,
            "coefficients": dict(self.coefficients),
            "standard_errors": dict(self.standard_errors),
        }


@dataclass(frozen=True)
class OLSFit:
    """An in-sample least-squares fit with an intercept (:func:`ols`).

    Attributes:
        coefficients: (1 + c,) intercept, then one per predictor column.
        standard_errors: (1 + c,) classical OLS standard errors, sigma^2 = RSS / (n - 1 - c).
        residuals: (n,) target minus fitted values.
        dof: n - 1 - c, the residual degrees of freedom.
    """

    coefficients: np.ndarray
    standard_errors: np.ndarray
    residuals: np.ndarray
    dof: int


def ols(predictors: np.ndarray, target: np.ndarray) -> OLSFit:
    """Least squares of ``target`` (n,) on an intercept and ``predictors`` (n, c), in float64 through a QR
    decomposition (no normal equations: position columns reach the thousands). Needs n > 1 + c and
    predictors of full column rank (checked by the callers, which can name the culprit)."""
    design = _with_intercept(predictors)
    y = np.asarray(target, dtype=np.float64)
    q, r = sla.qr(design, mode="economic")
    coefficients = sla.solve_triangular(r, q.T @ y)
    residuals = y - design @ coefficients
    dof = design.shape[0] - design.shape[1]
    sigma2 = float(residuals @ residuals) / dof
    r_inverse = sla.solve_triangular(r, np.eye(r.shape[0]))
    standard_errors = np.sqrt(sigma2 * np.einsum("ij,ij->i", r_inverse, r_inverse))  # diag((R'R)^-1)
    return OLSFit(coefficients, standard_errors, residuals, dof)


def heldout_gaussian(
    predictors: np.ndarray, target: np.ndarray, folds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Held-out Gaussian log-likelihood and prediction of each word under OLS with an intercept.

    Args:
        predictors: (n, c) float64 (c may be 0: the intercept-only model).
        target: (n,) float64.
        folds: (n,) fold of each word; each fold is fit on the words of the other folds.

    Returns:
        ``(loglik, prediction)``, each (n,): log N(y_i; prediction_i, sigma^2) with the training fold's
        maximum-likelihood variance sigma^2 = RSS_train / n_train (nats), and the prediction itself.
    """
    design = _with_intercept(predictors)
    y = np.asarray(target, dtype=np.float64)
    loglik = np.empty_like(y)
    prediction = np.empty_like(y)
    for fold in np.unique(folds):
        test = folds == fold
        coefficients = np.linalg.lstsq(design[~test], y[~test], rcond=None)[0]
        train_residuals = y[~test] - design[~test] @ coefficients
        sigma2 = float(train_residuals @ train_residuals) / int((~test).sum())
        prediction[test] = design[test] @ coefficients
        loglik[test] = -0.5 * np.log(2 * np.pi * sigma2) - (y[test] - prediction[test]) ** 2 / (2 * sigma2)
    return loglik, prediction


def prepare_design(
    frame: pd.DataFrame,
    target: str,
    surprisal_columns: Sequence[str],
    baseline: Sequence[str] = ("length", "log_frequency", POSITION),
    spillover: int = 2,
    *,
    text: str = "item",
    position: str = "zone",
    word: str = "word",
    rules: ExclusionRules = ExclusionRules(),
) -> Design:
    """The kept words and model predictors of a reading-time fit.

    Args:
        frame: one row per word, already joined on (text, position): the target, the surprisal columns, the
            baseline columns, ``text``, ``position`` and (for the punctuation rule) ``word``.
        target: reading-time column (ms), e.g. ``meanItemRT``.
        surprisal_columns: one column per surprisal source (bits), possibly none (a baseline-only design);
            all must be present for a word to be kept, so several sources share one set of words and one
            baseline.
        baseline: baseline predictor columns; ``"position"`` stands for the ``position`` column. Each gets
            spillover copies except the position.
        spillover: previous words whose surprisal (and baseline values) enter as predictors (>= 0).
        text: column naming the text a word belongs to (spillover never crosses texts).
        position: column of the word's whole-number index within its text (e.g. ``zone``).
        word: column of the word's string, read by the punctuation rule only.
        rules: which words to leave out (:class:`ExclusionRules`).

    Raises NeurometryError (one line naming the fix) for a missing or non-numeric column, a bad spillover,
    positions that are not whole numbers or repeat within a text, or a spillover column name that is taken.
    """
    if isinstance(spillover, bool) or not isinstance(spillover, (int, np.integer)) or spillover < 0:
        raise NeurometryError(f"spillover must be a whole number >= 0, got {spillover!r}")
    spillover = int(spillover)
    if isinstance(surprisal_columns, str):
        surprisal_columns = [surprisal_columns]
    sources = list(dict.fromkeys(surprisal_columns))
    baseline_current = list(dict.fromkeys(position if name == POSITION else name for name in baseline))
    _require_columns(frame, [target, text, position, *sources, *baseline_current])
    if rules.punctuation:
        _require_columns(frame, [word], why=" (the punctuation rule reads it)")
    for column in [target, position, *sources, *baseline_current]:
        dtype = frame[column].dtype
        if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
            raise NeurometryError(f"column {column!r} is not numeric ({dtype}); give numbers")
    overlap = set(sources) & ({target} | set(baseline_current))
    if overlap:
        raise NeurometryError(
            f"{sorted(overlap)[0]!r} is both a surprisal source and the target or a baseline column; "
            "name it once"
        )

    spilled = [name for name in baseline_current if name != position] + sources
    taken = [spillover_column(c, k) for c in spilled for k in range(1, spillover + 1)]
    clash = [name for name in taken if name in frame.columns]
    if clash:
        raise NeurometryError(
            f"column {clash[0]!r} already exists and would be overwritten by a spillover column; rename it"
        )

    if frame[text].isna().any() or frame[position].isna().any():
        raise NeurometryError(
            f"columns {text!r} and {position!r} must be given for every word; fill or drop those rows"
        )
    positions = frame[position].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(positions)) or np.any(positions != np.round(positions)):
        raise NeurometryError(f"column {position!r} must hold whole numbers (each word's index in its text)")
    positions = positions.astype(np.int64)
    text_codes = pd.factorize(frame[text], sort=True)[0].astype(np.int64)
    keys = pd.MultiIndex.from_arrays([text_codes, positions])
    if keys.has_duplicates:
        raise NeurometryError(f"a ({text}, {position}) pair repeats; give one row per word")

    # row (iloc) of each word and of the words 1 .. spillover positions earlier in its text; -1: none
    lag_rows = np.stack(
        [
            keys.get_indexer(pd.MultiIndex.from_arrays([text_codes, positions - lag]))
            for lag in range(spillover + 1)
        ],
        axis=1,
    )
    rows = frame.copy()
    for column in spilled:
        values = frame[column].to_numpy(dtype=np.float64)
        for lag in range(1, spillover + 1):
            earlier = lag_rows[:, lag]
            rows[spillover_column(column, lag)] = np.where(earlier >= 0, values[earlier], np.nan)

    baseline_columns = tuple(baseline_current) + tuple(
        spillover_column(c, k) for k in range(1, spillover + 1) for c in baseline_current if c != position
    )
    source_columns = {s: (s, *(spillover_column(s, k) for k in range(1, spillover + 1))) for s in sources}

    n = len(frame)
    target_values = frame[target].to_numpy(dtype=np.float64)
    if n and not np.isfinite(target_values).any():
        raise NeurometryError(
            f"no word has a value in the target column {target!r} (empty or not finite in all {n} rows); "
            "check --target names the reading-time column, or fill it"
        )
    first = pd.Series(positions).groupby(text_codes).transform("min").to_numpy()
    last = pd.Series(positions).groupby(text_codes).transform("max").to_numpy()
    predictor_columns = list(baseline_columns) + [c for columns in source_columns.values() for c in columns]
    predictor_values = rows[predictor_columns].to_numpy(dtype=np.float64)
    finite = np.isfinite(target_values) & np.isfinite(predictor_values).all(axis=1)
    with np.errstate(invalid="ignore"):
        outside = np.zeros(n, dtype=bool)
        if rules.min_target is not None:
            outside |= target_values < rules.min_target
        if rules.max_target is not None:
            outside |= target_values > rules.max_target
    nothing = np.zeros(n, dtype=bool)
    drop_by_rule = {
        "first_last": (positions == first) | (positions == last) if rules.first_last else nothing,
        "punctuation": (
            frame[word].astype(str).map(has_attached_punctuation).to_numpy(dtype=bool)
            if rules.punctuation
            else nothing
        ),
        "missing": ~finite,
        "target_range": outside,
    }
    keep = np.ones(n, dtype=bool)
    excluded = {}
    for rule in EXCLUSION_RULES:
        dropped = keep & drop_by_rule[rule]
        excluded[rule] = int(dropped.sum())
        keep &= ~dropped

    order = np.lexsort((positions, text_codes))
    kept = order[keep[order]]
    return Design(
        rows=rows.iloc[kept],
        target=target,
        baseline_columns=baseline_columns,
        source_columns=source_columns,
        spillover=spillover,
        excluded=excluded,
        lag_rows=lag_rows[kept],
        text_codes=text_codes,
    )


def fit_sources(
    frame: pd.DataFrame,
    sources: Sequence[str],
    target: str = "meanItemRT",
    baseline: Sequence[str] = ("length", "log_frequency", POSITION),
    spillover: int = 2,
    group: str = "item",
    *,
    text: str = "item",
    position: str = "zone",
    word: str = "word",
    rules: ExclusionRules = ExclusionRules(),
    permutations: int = 1000,
    seed: int = 0,
) -> list[ReadingFit]:
    """Fit each surprisal source against one shared baseline of reading times.

    Every source is fit on the same words (those where all sources, the target and the baseline are
    present and no rule excludes them) and against the same baseline model and folds, so their numbers
    compare directly.

    Args:
        frame: one row per word, joined on (text, position) (see :func:`prepare_design`).
        sources: surprisal columns, in bits (one :class:`ReadingFit` each, in this order).
        target: reading-time column (ms).
        baseline: baseline predictors (``"position"``: the ``position`` column).
        spillover: previous words entering as predictors (>= 0).
        group: column whose values are the held-out folds (leave one group out); needs >= 2 groups.
        text, position, word, rules: see :func:`prepare_design`.
        permutations: shuffles behind each p-value (0: no test).
        seed: seeds the shuffles.

    Raises NeurometryError (one line naming the fix) for fewer than 2 groups, fewer words than predictors
    + 2, a constant or collinear predictor, and the input errors of :func:`prepare_design`.
    """
    if isinstance(permutations, bool) or not isinstance(permutations, (int, np.integer)) or permutations < 0:
        raise NeurometryError(f"permutations must be a whole number >= 0, got {permutations!r}")
    if isinstance(sources, str):
        sources = [sources]
    if not sources:
        raise NeurometryError("no surprisal column given; name at least one source column")
    _require_columns(frame, [group])
    design = prepare_design(
        frame, target, sources, baseline, spillover, text=text, position=position, word=word, rules=rules
    )
    with blas_threads():  # many small fits: one BLAS thread each (see neurometry.threads)
        return _fit_design(frame, design, group, int(permutations), seed)


def fit_reading_times(
    frame: pd.DataFrame,
    target: str = "meanItemRT",
    source_column: str = "surprisal",
    baseline: Sequence[str] = ("length", "log_frequency", POSITION),
    spillover: int = 2,
    group: str = "item",
    *,
    text: str = "item",
    position: str = "zone",
    word: str = "word",
    rules: ExclusionRules = ExclusionRules(),
    permutations: int = 1000,
    seed: int = 0,
) -> ReadingFit:
    """:func:`fit_sources` for one surprisal column."""
    return fit_sources(
        frame, [source_column], target, baseline, spillover, group,
        text=text, position=position, word=word, rules=rules, permutations=permutations, seed=seed,
    )[0]


def baseline_residuals(
    frame: pd.DataFrame,
    target: str = "meanItemRT",
    baseline: Sequence[str] = ("length", "log_frequency", POSITION),
    spillover: int = 2,
    sources: Sequence[str] = (),
    *,
    text: str = "item",
    position: str = "zone",
    word: str = "word",
    rules: ExclusionRules = ExclusionRules(),
) -> pd.Series:
    """In-sample residuals of the baseline OLS model of ``target``: reading time minus what length, frequency
    and position (and their spillover) predict, (n,) indexed like the kept rows of ``frame``, in (text,
    position) order, named ``<target>_residual``.

    With ``sources`` given, the kept words are those of :func:`fit_sources` on them (a word needs its
    surprisal too), so the residuals line up with :attr:`ReadingFit.baseline_residuals`; without, only the
    baseline and the rules decide.
    """
    design = prepare_design(
        frame, target, sources, baseline, spillover, text=text, position=position, word=word, rules=rules
    )
    _check_predictors(design, design.baseline_columns)
    with blas_threads():
        fit = ols(design.values(design.baseline_columns), design.target_values())
    return pd.Series(fit.residuals, index=design.rows.index, name=f"{target}_residual")


def _fit_design(
    frame: pd.DataFrame, design: Design, group: str, permutations: int, seed: int
) -> list[ReadingFit]:
    n = design.words
    if n == 0:
        dropped = ", ".join(f"{count} by {EXCLUSION_HINTS[rule]}" for rule, count in design.excluded.items() if count)
        raise NeurometryError(
            f"no word is left to fit (dropped: {dropped or 'none; no words given'}); "
            "check --target, --min-target and --max-target"
        )
    groups = design.rows[group]
    if groups.isna().any():
        raise NeurometryError(f"group column {group!r} is missing for some words; fill it or drop those rows")
    labels = [label.item() if isinstance(label, np.generic) else label for label in pd.unique(groups)]
    if len(labels) < 2:
        raise NeurometryError(
            f"the {n} kept words fall in {len(labels)} {group!r} group; held-out fits need >= 2 groups "
            "(give more texts or another --group)"
        )
    n_predictors = 1 + len(design.baseline_columns) + 1 + design.spillover
    if n < n_predictors + 2:
        raise NeurometryError(
            f"{n} words kept for {n_predictors} coefficients; need at least {n_predictors + 2} "
            "(give more words, fewer baseline predictors or less spillover)"
        )
    if n < 2 * len(labels):
        raise NeurometryError(
            f"{n} kept words in {len(labels)} {group!r} groups; leave-one-group-out needs 2 words per group "
            "on average (group by something coarser)"
        )
    # leave one group out: as many folds as groups, each group in its own fold
    folds = fold_assignment(n, folds=len(labels), seed=0, groups=groups.to_numpy())
    fold_sizes = np.bincount(folds)
    if n - fold_sizes.max() <= n_predictors:
        raise NeurometryError(
            f"leaving out the largest {group!r} group leaves {n - fold_sizes.max()} words for {n_predictors} "
            "coefficients; give more groups or fewer predictors"
        )
    fold_of_label = {label: int(f) for f, label in zip(folds, groups, strict=True)}

    y = design.target_values()
    baseline_values = design.values(design.baseline_columns)
    _check_predictors(design, design.baseline_columns)
    baseline_fit = ols(baseline_values, y)
    residuals = pd.Series(baseline_fit.residuals, index=design.rows.index, name=f"{design.target}_residual")
    baseline_loglik, baseline_prediction = heldout_gaussian(baseline_values, y, folds)
    total_squares = float(((y - y.mean()) ** 2).sum())
    baseline_sse = float(((y - baseline_prediction) ** 2).sum())

    engine = _HeldoutEngine(baseline_values, y, folds) if permutations else None
    results = []
    for source, source_columns in design.source_columns.items():
        columns = design.baseline_columns + source_columns
        _check_predictors(design, columns)
        values = design.values(columns)
        full = ols(values, y)
        names = (INTERCEPT, *columns)
        slope_index = 1 + len(design.baseline_columns)
        slope, slope_se = float(full.coefficients[slope_index]), float(full.standard_errors[slope_index])
        half_width = float(stats.t.ppf(0.5 + CONFIDENCE / 2, full.dof)) * slope_se
        full_loglik, full_prediction = heldout_gaussian(values, y, folds)
        gain = full_loglik - baseline_loglik
        per_group = {label: float(gain[folds == fold_of_label[label]].mean()) for label in labels}
        p_value = None
        if engine is not None:
            observed = engine.delta_loglik(values[None, :, len(design.baseline_columns):])[0]
            shuffled = _shuffled_source_values(frame, design, source, engine, permutations, seed)
            p_value = float((1 + np.count_nonzero(shuffled >= observed)) / (1 + permutations))
        results.append(
            ReadingFit(
                source=source,
                target=design.target,
                slope_ms_per_bit=slope,
                slope_ci=(slope - half_width, slope + half_width),
                spillover_slope_ms_per_bit=(
                    float(full.coefficients[slope_index + 1]) if design.spillover else None
                ),
                delta_loglik_per_word=float(gain.mean()),
                delta_r2=(baseline_sse - float(((y - full_prediction) ** 2).sum())) / total_squares,
                p_value=p_value,
                words=n,
                excluded=dict(design.excluded),
                per_group=per_group,
                permutations=permutations,
                coefficients=dict(zip(names, map(float, full.coefficients), strict=True)),
                standard_errors=dict(zip(names, map(float, full.standard_errors), strict=True)),
                baseline_residuals=residuals,
            )
        )
    return results


def _shuffled_source_values(
    frame: pd.DataFrame, design: Design, source: str, engine: _HeldoutEngine, permutations: int, seed: int
) -> np.ndarray:
    """(permutations,) held-out delta log-likelihood per word with ``source`` shuffled within each text.

    Every word of the input frame takes part in the shuffle (the spillover of a kept word may be the
    surprisal of an excluded one); words without a finite surprisal keep their place, so kept words still
    receive finite values. The spillover columns are rebuilt from the shuffled values."""
    rng = np.random.default_rng(seed)
    values = frame[source].to_numpy(dtype=np.float64)
    finite = np.isfinite(values)
    members = [np.flatnonzero((design.text_codes == t) & finite) for t in np.unique(design.text_codes)]
    out = np.empty(permutations)
    for start in range(0, permutations, _PERMUTATION_BATCH):
        batch = min(_PERMUTATION_BATCH, permutations - start)
        shuffled = np.tile(values, (batch, 1))
        for rows in members:
            shuffled[:, rows] = rng.permuted(shuffled[:, rows], axis=1)
        out[start : start + batch] = engine.delta_loglik(shuffled[:, design.lag_rows])
    return out


class _HeldoutEngine:
    """Held-out log-likelihood gain of adding q columns to a fixed baseline, for a batch of candidate column
    sets at once (the permutation test scores ~1,000 of them on the same folds).

    Each fold's fit comes from the normal equations of its training words, assembled as (all words) minus
    (the fold's words), with the baseline block computed once; training RSS and held-out SSE are quadratic
    forms in the same sums. Columns are centred and scaled first (an affine change of predictors: with an
    intercept, fits and predictions are unchanged) to keep the Gram matrices well conditioned in float64.
    The baseline's held-out log-likelihood is computed by the same route, so gains compare like with like.
    """

    def __init__(self, baseline: np.ndarray, target: np.ndarray, folds: np.ndarray) -> None:
        order = np.argsort(folds, kind="stable")
        self.order = order
        self.bounds = np.concatenate([[0], np.cumsum(np.bincount(folds))])
        mean, scale = baseline.mean(axis=0), baseline.std(axis=0)
        self.base = _with_intercept((baseline[order] - mean) / scale)  # (n, pb), sorted by fold
        self.y = target[order] - target.mean()
        self.n = len(target)
        pieces = [self._fold_slices(f) for f in range(len(self.bounds) - 1)]
        self.bb = np.stack([b.T @ b for b, _ in pieces])  # (F, pb, pb)
        self.by = np.stack([b.T @ y for b, y in pieces])  # (F, pb)
        self.yy = np.array([y @ y for _, y in pieces])  # (F,)
        self.counts = np.diff(self.bounds)
        self.baseline_loglik = self._loglik(self.bb[None], self.by[None], self.yy[None]).sum(axis=1)[0]

    def _fold_slices(self, fold: int) -> tuple[np.ndarray, np.ndarray]:
        rows = slice(self.bounds[fold], self.bounds[fold + 1])
        return self.base[rows], self.y[rows]

    def _loglik(self, gram: np.ndarray, cross: np.ndarray, squares: np.ndarray) -> np.ndarray:
        """(B, F) held-out log-likelihood per fold from per-fold sums: gram (B, F, p, p), cross (B, F, p),
        squares (B, F) (or broadcastable)."""
        train_gram = gram.sum(axis=1, keepdims=True) - gram
        train_cross = cross.sum(axis=1, keepdims=True) - cross
        train_squares = squares.sum(axis=1, keepdims=True) - squares
        try:
            beta = np.linalg.solve(train_gram, train_cross[..., None])[..., 0]
        except np.linalg.LinAlgError:  # a column constant within some training fold: least-norm solution
            beta = (np.linalg.pinv(train_gram, hermitian=True) @ train_cross[..., None])[..., 0]

        def quadratic(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:  # sum of (y - X beta)^2
            linear = np.einsum("...i,...i->...", beta, b)
            return c - 2 * linear + np.einsum("...i,...ij,...j->...", beta, a, beta)

        sigma2 = quadratic(train_gram, train_cross, train_squares) / (self.n - self.counts)
        test_sse = quadratic(gram, cross, squares)
        return -0.5 * self.counts * np.log(2 * np.pi * sigma2) - test_sse / (2 * sigma2)

    def delta_loglik(self, added: np.ndarray) -> np.ndarray:
        """(B,) held-out log-likelihood gain per word of adding ``added`` (B, n, q) (rows in the caller's
        order) to the baseline."""
        added = added[:, self.order, :]
        mean, scale = added[0].mean(axis=0), added[0].std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        added = (added - mean) / scale
        batch, _, q = added.shape
        pb = self.base.shape[1]
        folds = len(self.counts)
        gram = np.empty((batch, folds, pb + q, pb + q))
        cross = np.empty((batch, folds, pb + q))
        gram[:, :, :pb, :pb] = self.bb
        cross[:, :, :pb] = self.by
        for fold in range(folds):
            base, y = self._fold_slices(fold)
            block = added[:, self.bounds[fold] : self.bounds[fold + 1], :]  # (B, n_f, q)
            base_added = np.einsum("np,bnq->bpq", base, block, optimize=True)
            gram[:, fold, :pb, pb:] = base_added
            gram[:, fold, pb:, :pb] = base_added.transpose(0, 2, 1)
            gram[:, fold, pb:, pb:] = np.einsum("bnq,bnr->bqr", block, block, optimize=True)
            cross[:, fold, pb:] = np.einsum("bnq,n->bq", block, y, optimize=True)
        full = self._loglik(gram, cross, self.yy[None]).sum(axis=1)
        return (full - self.baseline_loglik) / self.n


def _with_intercept(predictors: np.ndarray) -> np.ndarray:
    """(n, c) -> (n, 1 + c) float64 with a leading column of ones."""
    x = np.asarray(predictors, dtype=np.float64).reshape(len(predictors), -1)
    return np.hstack([np.ones((len(x), 1)), x])


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], why: str = "") -> None:
    for column in columns:
        if column not in frame.columns:
            names = [str(name) for name in frame.columns]
            raise NeurometryError(
                f"column {column!r} not in the reading-time table{why}{did_you_mean(str(column), names)}; "
                f"columns: {', '.join(names)}"
            )


def _check_predictors(design: Design, columns: Sequence[str]) -> None:
    """A constant predictor, or predictors that are linear combinations of each other, leave the
    coefficients undetermined: name them rather than fit."""
    values = design.values(columns)
    for name, column in zip(columns, values.T, strict=True):
        if np.ptp(column) == 0:
            raise NeurometryError(
                f"predictor {name!r} is constant over the {design.words} kept words; "
                "drop it from the baseline"
            )
    standardised = _with_intercept((values - values.mean(axis=0)) / values.std(axis=0))
    if np.linalg.matrix_rank(standardised) < standardised.shape[1]:
        raise NeurometryError(
            f"predictors {', '.join(columns)} are collinear over the kept words; "
            "drop one that the others determine"
        )
