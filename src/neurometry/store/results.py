"""The kinds of analysis result a store keeps, and the one way to save, load, list and delete them.

Every saved result is a catalog row: the run it belongs to, its kind, its *result set*, the point, a
name, ``params`` and ``extra`` (JSON objects) and a value. The result set names what produced the rows
(the settings, the other side of a comparison, the SAE, the prompt pair), so a reader finds a producer's
rows and nobody else's, and saving a set again replaces it in one transaction: either the rows of the
points saved (``replaces="points"``: re-measuring one point keeps the others) or the whole set
(``replaces="set"``: a patching trace over other points leaves none of the old ones behind).

Each kind below is a :class:`ResultKind` with a schema version (stored on every row; a reader refuses
rows a newer layout wrote) and the ``params`` and ``extra`` keys every record of it holds, checked when
saved, so readers can rely on them. This module is the only place a kind's name is spelled: writers and
readers use ``MEASURE.save(...)``, ``COMPARE.load(...)`` and so on.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from neurometry.errors import NeurometryError
from neurometry.store.store import Store


@dataclass(frozen=True)
class Result:
    """One record to save: a value (or None) at a point, under a name, with its settings and details."""

    point: str
    name: str
    value: float | None
    params: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    result_set: str = ""


@dataclass(frozen=True)
class ResultKind:
    """A kind of saved result: its catalog name, layout version, replacement rule and required keys."""

    name: str
    version: int
    doc: str
    replaces: Literal["points", "set"]
    params: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()

    def save(self, store: Store, run: str, results: Iterable[Result]) -> int:
        """Save ``results`` into ``run`` in one transaction, replacing what their sets held (see the module
        docstring); returns how many records were written."""
        rows = []
        for result in results:
            missing = [k for k in self.params if k not in result.params]
            missing += [k for k in self.extra if k not in result.extra]
            if missing:
                raise TypeError(f"a {self.name!r} result at {result.point} lacks {', '.join(missing)}")
            value = result.value
            if value is not None and not math.isfinite(float(value)):
                value = None  # SQLite has no NaN: a missing value reads back as None either way
            rows.append({"result_set": result.result_set, "point": result.point, "name": result.name,
                         "params": result.params, "value": value, "extra": result.extra})
        if rows:
            store.replace_results(self.name, run, self.version, rows, whole_sets=self.replaces == "set")
        return len(rows)

    def load(self, store: Store, run: str | None = None, result_set: str | None = None, **match: Any) -> pd.DataFrame:
        """Saved results of this kind (of one run and set, or all) as a table with columns ``run_id``,
        ``result_set``, ``point``, ``name``, ``params`` and ``extra`` (decoded dicts), ``value``, and the
        ``depth_rank`` and ``name_rank`` they are sorted by (points in recording depth, not by name).
        ``match`` keeps the rows whose column equals a value (``point=``, ``name=``, ``params={...}``)."""
        frame = store.result_rows(self.name, run, result_set)
        newer = frame[frame["schema"] > self.version]
        if len(newer):
            raise NeurometryError(
                f"{store.path} holds {self.name!r} results of layout {int(newer['schema'].max())}, newer than this "
                f"neurometry reads ({self.version}); upgrade neurometry"
            )
        frame = _decode(store, frame)
        for column, value in match.items():
            # element by element: `==` on a column of dicts would not compare each row with one dict
            frame = frame[frame[column].map(lambda cell, value=value: cell == value).astype(bool)]
        return frame

    def delete(self, store: Store, run: str | None = None, result_set: str | None = None) -> int:
        """Delete this kind's results (of one run and set, or all); returns how many rows went."""
        return store.delete_results(self.name, run, result_set)


MEASURE = ResultKind(
    "measure", 1, "geometry and neuron statistics per point (`neurometry measure`)", "points",
    params=("label", "seed"), extra=("n_rows",),
)
COMPARE = ResultKind(
    "compare", 1, "similarity of a point with a point of the other side (`neurometry compare`)", "points",
    params=("point_b", "source_b", "seed"), extra=("p_value", "null_mean", "ci_low", "ci_high", "n_stimuli", "note"),
)
PROBE = ResultKind(
    "probe", 1, "decoding accuracy of a label per point (`neurometry probe`)", "points",
    params=("label", "folds", "seed", "kind"), extra=("kind",),
)
ENCODE = ResultKind(
    "encode", 1, "encoding-model correlation per point (`neurometry probe encode`)", "points",
    params=("targets", "folds", "seed"), extra=("median_r", "target_scores", "alphas"),
)
STEER_SWEEP = ResultKind(
    "steer_sweep", 1, "a steering vector's effect per alpha (`neurometry steer eval`)", "points",
    params=("alpha", "pairs"), extra=("n_pairs", "vector"),
)
READING_FIT = ResultKind(
    "reading_fit", 1, "reading times regressed on a surprisal source per source (`neurometry fit`)", "set",
    params=("target", "baseline", "spillover", "group"),
    extra=("slope_ms_per_bit", "slope_ci", "spillover_slope_ms_per_bit", "delta_loglik_per_word", "delta_r2",
           "p_value", "words", "excluded", "settings", "notes"),
)
PATCH = ResultKind(
    "patch", 1, "activation patching scores per point and position (`neurometry patch`)", "set",
    extra=("scores", "order"),
)
DIFF = ResultKind(
    "diff", 1, "activation differences of a finetune per point (`neurometry diff`)", "set",
    params=("first_k", "skip_first", "texts"), extra=("n_positions", "order"),
)
SAE_EVAL = ResultKind(
    "sae_eval", 1, "reconstruction quality of an SAE (`neurometry sae eval`)", "points",
)
SAE_FEATURES = ResultKind(
    "sae_features", 1, "top examples and logit tokens per SAE latent (`neurometry sae features`)", "set",
)

TRAINING = ResultKind(
    "training", 1, "metrics of a checkpoint while it trained: losses, accuracies, progress measures", "points",
    params=("series", "step"),
)
PHASES = ResultKind(
    "phases", 1, "phases of a curve over a series, saved on its last run (`neurometry phases`)", "set",
    params=("series", "curve", "point", "method", "transform"), extra=("phases", "boundaries", "penalty", "steps"),
)
LAB = ResultKind(
    "lab", 1, "what a lab found, saved on its series' last run (`neurometry lab`)", "set",
    params=("lab", "size", "seed"), extra=("findings",),
)
FIXED_POINTS = ResultKind(
    "fixed_point_search", 1, "fixed and slow points of a recurrent model over a run's inputs (`neurometry dynamics`)",
    "set", params=("model", "input", "initial_states", "noise", "seed"),
    extra=("kind", "stability", "unstable_directions", "outlier", "eigenvalues", "state"),
)
LYAPUNOV = ResultKind(
    "lyapunov", 1, "the Lyapunov spectrum of a recurrent model along a run's inputs (`neurometry dynamics`)",
    "set", params=("model", "discard", "trials"), extra=("per_trial", "kaplan_yorke_dimension"),
)

TRUTH_PROBE = ResultKind(
    "truth_probe", 1, "held-out truth decoding per point and method (`neurometry detect truth`)", "points",
    params=("label", "group", "folds", "seed"), extra=("auroc", "n"),
)
TRUTH_TRANSFER = ResultKind(
    "truth_transfer", 1, "truth directions trained on one statement set, tested on another (`detect truth --transfer`)",
    "set", params=("label",), extra=("names", "accuracy", "auroc"),
)
TRUTH_CAUSAL = ResultKind(
    "truth_causal", 1, "the truth direction added while the model judges held-out statements (`detect causal`)",
    "points", params=("label", "alphas", "statements", "shots", "seed"), extra=("gap_true", "gap_false", "n"),
)
TRUTH_BASELINE = ResultKind(
    "truth_baseline", 1, "truth read without the activations: output baselines and column controls "
    "(`detect truth --baselines --control`)", "set", params=("label", "seed"), extra=("auroc", "n"),
)

OOD = ResultKind(
    "ood", 1, "out-of-distribution detection per score at one point (`neurometry detect ood`)", "set",
    params=("label", "in", "seed"), extra=("aupr", "fpr95", "auroc_interval", "n_in", "n_out", "roc"),
)
OOD_SERIES = ResultKind(
    "ood_series", 1, "OOD AUROC at every checkpoint of a series against NC1 (`detect ood --series`)", "set",
    params=("series", "label", "in", "seed"),
    extra=("steps", "auroc", "nc1", "train_error", "terminal_start", "terminal_spearman"),
)

KINDS: dict[str, ResultKind] = {
    k.name: k
    for k in (MEASURE, COMPARE, PROBE, ENCODE, STEER_SWEEP, PATCH, DIFF, SAE_EVAL, SAE_FEATURES, TRAINING, PHASES, LAB,
              FIXED_POINTS, LYAPUNOV, READING_FIT, TRUTH_PROBE, TRUTH_TRANSFER, TRUTH_CAUSAL, TRUTH_BASELINE,
              OOD, OOD_SERIES)
}


def set_name(**settings: Any) -> str:
    """A result set's name from the settings that produced it: ``key=value`` pairs in key order, leaving out
    those that are None, e.g. ``label=topic seed=0``."""
    parts = []
    for key in sorted(settings):
        value = settings[key]
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def listing(store: Store) -> pd.DataFrame:
    """One row per saved result set: ``run_id``, ``kind``, ``result_set``, ``points``, ``records`` and
    ``created`` (the latest save), sorted by run and kind."""
    return store.result_sets()


def natural_key(name: str) -> tuple:
    """Sort key that compares the numbers inside a name as numbers: resid.2 before resid.10."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def depth_ranks(store: Store, run_ids: Iterable[str], points: Iterable[str]) -> list[tuple[int, int]]:
    """(depth, natural rank) of each (run, point): depth in the recorded run; a point that is no recorded
    point of its run (a steering result's run is the model's name) sorts after them, by natural order."""
    run_ids, points = list(run_ids), list(points)
    depth = {(p.run_id, p.point): i for i, p in enumerate(store.points())}
    natural = {name: i for i, name in enumerate(sorted(set(points), key=natural_key))}
    return [(depth.get((r, p), len(depth)), natural[p]) for r, p in zip(run_ids, points, strict=True)]


def _decode(store: Store, frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.drop(columns=["kind", "schema", "created"]).copy()
    frame["params"] = frame["params"].map(lambda s: json.loads(s) if s else {})
    frame["extra"] = frame["extra"].map(lambda s: json.loads(s) if s else {})
    ranks = depth_ranks(store, frame["run_id"], frame["point"])
    frame["depth_rank"] = [d for d, _ in ranks]
    frame["name_rank"] = [n for _, n in ranks]
    return frame.sort_values(["run_id", "depth_rank", "name_rank"], kind="stable").reset_index(drop=True)
