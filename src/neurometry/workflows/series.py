"""Measures, comparisons and phases along a series of checkpoints (one run per training step).

Each step's results are saved on that step's run like any other (a series is runs ordered by step), so
``neurometry measure --run RUN`` and ``--series`` read and write the same rows; comparisons with the
reference step name it in their result set; phases are saved on the series' last run.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from neurometry.compare.matrix import compare_matrix
from neurometry.compare.registry import get_metric
from neurometry.errors import NeurometryError, did_you_mean
from neurometry.models.devices import stage_device
from neurometry.store import Store
from neurometry.store.results import COMPARE, MEASURE, PHASES, TRAINING, Result, set_name
from neurometry.store.store import SeriesStep
from neurometry.training import Phases, find_phases
from neurometry.workflows.measure import measure_store


def complete_steps(store: Store, series: str) -> list[SeriesStep]:
    """The checkpoints of ``series`` whose runs are complete, in step order (at least one)."""
    complete = {r.run_id for r in store.runs() if r.complete}
    steps = [s for s in store.series(series) if s.run_id in complete]
    if not steps:
        raise NeurometryError(f"series {series!r} has no complete run yet; record (or resume) its checkpoints first")
    return steps


def _series_points(store: Store, steps: list[SeriesStep], patterns: list[str] | None) -> list[str]:
    import fnmatch

    names = [p.point for p in store.points(steps[-1].run_id)]
    if not patterns:
        return names
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, pat) for pat in patterns)]
    for pat in patterns:
        if not any(fnmatch.fnmatchcase(n, pat) for n in names):
            raise NeurometryError(
                f"no point matches {pat!r} in series {steps[-1].series}{did_you_mean(pat, names)}; it has: "
                f"{', '.join(names)}"
            )
    return chosen


def measure_series(
    store: Store,
    series: str,
    points: list[str] | None = None,
    measures: list[str] | None = None,
    label: str | None = None,
    seed: int = 0,
    max_rows: int = 20000,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> list[dict]:
    """Measure every point at every step of ``series``; one record per (step, point, measure), each with its
    ``step`` and ``run``, saved on the step's run (as ``neurometry measure --run`` saves)."""
    store.check_writable()
    steps = complete_steps(store, series)
    names = _series_points(store, steps, points)
    records = []
    for step in tqdm(steps, desc=f"measure {series}", unit="step", file=sys.stderr, disable=not progress):
        found = measure_store(store, step.run_id, names, measures, label, None, seed, max_rows, progress=False,
                              device=device)
        records += [{"step": step.step, "run": step.run_id, **r} for r in found]
    return records


def measure_curve(store: Store, series: str, measure: str, point: str, label: str | None = None,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one measure at one point over a series, measured where not saved yet."""
    steps = complete_steps(store, series)
    _series_points(store, steps, [point])
    wanted = set_name(measure=measure, label=label, seed=seed)
    saved = MEASURE.load(store, result_set=wanted, point=point, name=measure)
    values = dict(zip(saved["run_id"], saved["value"], strict=True))
    if any(s.run_id not in values for s in steps):
        measure_series(store, series, [point], [measure], label=label, seed=seed, progress=False)
        saved = MEASURE.load(store, result_set=wanted, point=point, name=measure)
        values = dict(zip(saved["run_id"], saved["value"], strict=True))
    return (np.array([s.step for s in steps], dtype=float),
            np.array([np.nan if values[s.run_id] is None else values[s.run_id] for s in steps], dtype=float))


def training_curves(store: Store, series: str) -> pd.DataFrame:
    """The metrics saved while the series trained (kind ``training``): one row per step, one column per metric."""
    steps = store.series(series)
    frame = TRAINING.load(store)
    frame = frame[frame["params"].map(lambda p: p.get("series") == series)]
    if frame.empty:
        return pd.DataFrame({"step": [s.step for s in steps]})
    frame = frame.assign(step=frame["params"].map(lambda p: p["step"]))
    table = frame.pivot_table(index="step", columns="name", values="value", aggfunc="first").reset_index()
    table.columns.name = None
    return table.sort_values("step").reset_index(drop=True)


def save_training_metrics(store: Store, series: str, step: SeriesStep | Any, metrics: dict[str, float]) -> None:
    """Save one checkpoint's training metrics on its run (kind ``training``)."""
    TRAINING.save(store, step.run_id, [
        Result("", name, float(value), params={"series": series, "step": int(step.step)},
               result_set=set_name(series=series))
        for name, value in metrics.items()
    ])


def compare_series(
    store: Store,
    series: str,
    metric: str,
    points: list[str] | None = None,
    reference: int | None = None,
    pairwise: bool = False,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Compare each step of ``series`` with the ``reference`` step (default: the last), point by point; with
    ``pairwise``, every step with every step at one point (``points`` must name one).

    Returns ``{"results": [{"step", "point", "reference_step", "metric", "value"}, ...]}`` or, pairwise,
    ``{"point", "steps", "matrix"}`` (steps x steps). Per-step results are saved on each step's run.
    """
    device = stage_device(device)
    get_metric(metric)
    steps = complete_steps(store, series)
    names = _series_points(store, steps, points)
    if pairwise:
        if len(names) != 1:
            raise NeurometryError(
                f"--pairwise compares steps at one point; choose one of {', '.join(names)} with --points-a"
            )
        point = names[0]
        reps = {str(s.step): store.activations(point, run=s.run_id) for s in steps}
        results = compare_matrix(reps, None, metric, seed=seed, progress=progress, device=device, **params)
        matrix = np.array([r.value for r in results], dtype=float).reshape(len(steps), len(steps))
        return {"series": series, "point": point, "metric": metric, "steps": [s.step for s in steps],
                "matrix": matrix.tolist()}
    by_step = {s.step: s for s in steps}
    if reference is None:
        reference = steps[-1].step
    if reference not in by_step:
        raise NeurometryError(
            f"series {series!r} has no step {reference}; its steps run {steps[0].step}..{steps[-1].step} "
            f"({len(steps)} checkpoints)"
        )
    ref = by_step[reference]
    records = []
    for step in tqdm(steps, desc=f"compare {series}", unit="step", file=sys.stderr, disable=not progress):
        found = []
        for point in names:
            x = store.activations(point, run=step.run_id)
            y = store.activations(point, run=ref.run_id)
            (result,) = compare_matrix({point: x}, {point: y}, metric, seed=seed, device=device, **params)
            found.append(result)
            records.append({"step": step.step, "point": point, "reference_step": reference, "metric": metric,
                            "value": result.value})
        source = f"series:{series}@{reference}"
        COMPARE.save(store, step.run_id, [
            Result(r.point_a, r.metric, r.value,
                   params={**r.params, "point_b": r.point_b, "source_b": source, "seed": seed},
                   extra={k: getattr(r, k) for k in ("p_value", "null_mean", "ci_low", "ci_high", "n_stimuli", "note")},
                   result_set=set_name(metric=metric, reference=f"{series}@{reference}", seed=seed, **params))
            for r in found
        ])
    return {"series": series, "metric": metric, "reference_step": reference, "results": records}


def series_phases(
    store: Store,
    series: str,
    curve: str,
    point: str | None = None,
    *,
    method: str = "pelt",
    penalty: float | None = None,
    n_changes: int | None = None,
    transform: str | None = None,
    min_size: int = 2,
    label: str | None = None,
) -> tuple[Phases, np.ndarray, np.ndarray]:
    """Phases of ``curve`` over ``series``: a measure at ``point`` (measured where not saved yet) or, without
    a point, a training metric (``test_loss``, ...). Saved on the series' last run (kind ``phases``);
    returns the phases and the curve (steps, values) they were found on. ``transform`` defaults to
    ``log`` for losses and ``none`` otherwise."""
    if point is None:
        table = training_curves(store, series)
        metrics = [c for c in table.columns if c != "step"]
        if curve not in metrics:
            known = ", ".join(metrics) or "none saved"
            raise NeurometryError(
                f"series {series!r} has no training metric {curve!r}{did_you_mean(curve, metrics)} (metrics: "
                f"{known}); for a measure name its point with --point"
            )
        table = table.dropna(subset=[curve])
        steps, values = table["step"].to_numpy(float), table[curve].to_numpy(float)
    else:
        steps, values = measure_curve(store, series, curve, point, label=label)
        keep = np.isfinite(values)
        steps, values = steps[keep], values[keep]
    if transform is None:
        transform = "log" if "loss" in curve and np.all(values > 0) else "none"
    phases = find_phases(steps, values, method=method, penalty=penalty, n_changes=n_changes, transform=transform,
                         min_size=min_size)
    save_phases(store, series, curve, point, phases, steps, values, n_changes=n_changes, penalty=penalty)
    return phases, steps, values


def save_phases(store: Store, series: str, curve: str, point: str | None, phases: Phases, steps: np.ndarray,
                values: np.ndarray, *, n_changes: int | None = None, penalty: float | None = None) -> None:
    """Save the phases of ``curve`` (found on ``steps``, ``values``) on the series' last run (kind ``phases``),
    replacing the set of the same curve and settings."""
    last = complete_steps(store, series)[-1]
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    PHASES.save(store, last.run_id, [Result(
        point or "", curve, float(len(phases.phases)),
        params={"series": series, "curve": curve, "point": point, "method": phases.method,
                "transform": phases.transform, "n_changes": n_changes, "min_size": phases.min_size},
        extra={"phases": [p.__dict__ for p in phases.phases], "boundaries": phases.boundaries,
               "penalty": phases.penalty, "steps": steps.tolist(), "values": values.tolist()},
        result_set=set_name(series=series, curve=curve, point=point, method=phases.method, transform=phases.transform,
                            n_changes=n_changes, min_size=phases.min_size, penalty=penalty),
    )])


# -- readers: what the report's "Over training" section and the dashboard's page draw ----------------
def _value(value: Any) -> float | None:
    """A plain float, or None for a missing, NaN or infinite value."""
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def parse_series_source(source: Any) -> tuple[str, int] | None:
    """(series, reference step) of a comparison's ``source_b`` as :func:`compare_series` writes it
    (``series:NAME@STEP``); None for any other source."""
    if not isinstance(source, str) or not source.startswith("series:"):
        return None
    name, at, step = source[len("series:"):].rpartition("@")
    if not at or not name:
        return None
    try:
        return name, int(step)
    except ValueError:
        return None


def series_runs(store: Store) -> dict[str, SeriesStep]:
    """Every run recorded as a checkpoint of a series -> its :class:`SeriesStep`."""
    return {s.run_id: s for name in store.series_names() for s in store.series(name)}


def _grid(frame: pd.DataFrame, step_of: dict[str, int], order: list[str]) -> dict[str, Any]:
    """Points (in ``order``, then any others by name) x steps of ``frame``'s values, None where missing."""
    from neurometry.store.results import natural_key

    present = set(frame["point"])
    points = [p for p in order if p in present] + sorted(present - set(order), key=natural_key)
    steps = sorted({step_of[r] for r in frame["run_id"]})
    values: list[list[float | None]] = [[None] * len(steps) for _ in points]
    for r in frame.itertuples():
        values[points.index(r.point)][steps.index(step_of[r.run_id])] = _value(r.value)
    return {"points": points, "steps": steps, "values": values}


def series_overview(store: Store, name: str) -> dict[str, Any]:
    """Everything saved about series ``name``, as plain values (None where a value is missing):

    - ``steps``: its checkpoints ``{step, run, source, weights_hash, complete}`` in step order;
    - ``training``: ``{steps, metrics: {metric: values}}``, the metrics saved while it trained;
    - ``phases``: each saved phases result ``{curve, point, method, transform, penalty, boundaries, phases,
      steps, values, run, result_set}``;
    - ``measures``: per saved measure (and result set) ``{measure, label, seed, points, steps, values}``
      with ``values`` points x steps, from the MEASURE rows of its runs;
    - ``similarity``: per comparison with a reference step (``compare --series``) ``{metric,
      reference_step, params, points, steps, values}``;
    - ``labs``: what a lab found ``{lab, run, params, findings, seconds}``.

    An unknown name is refused with the series there are."""
    from neurometry.store.results import LAB

    steps = store.series(name)
    step_of = {s.run_id: s.step for s in steps}
    runs = {r.run_id: r for r in store.runs()}
    last = steps[-1].run_id
    order = [p.point for p in store.points(last)] if last in runs else []
    overview: dict[str, Any] = {
        "series": name,
        "model": runs[last].model if last in runs else None,
        "points": order,
        "steps": [{"step": s.step, "run": s.run_id, "source": s.source, "weights_hash": s.weights_hash,
                   "complete": bool(s.run_id in runs and runs[s.run_id].complete)} for s in steps],
    }
    table = training_curves(store, name)
    overview["training"] = {
        "steps": [int(s) for s in table["step"]],
        "metrics": {c: [_value(v) for v in table[c]] for c in table.columns if c != "step"},
    }
    phases = PHASES.load(store)
    phases = phases[phases["params"].map(lambda p: p.get("series") == name).astype(bool)]
    overview["phases"] = sorted((
        {"curve": r.params["curve"], "point": r.params.get("point"), "method": r.params["method"],
         "transform": r.params["transform"], "min_size": r.params.get("min_size"),
         "n_changes": r.params.get("n_changes"), "penalty": _value(r.extra.get("penalty")),
         "boundaries": [float(b) for b in r.extra["boundaries"]],
         "phases": [{"start_step": float(p["start_step"]), "end_step": float(p["end_step"]),
                     "mean": _value(p["mean"]), "n_points": int(p["n_points"])} for p in r.extra["phases"]],
         "steps": [float(s) for s in r.extra["steps"]], "values": [_value(v) for v in r.extra.get("values", [])],
         "run": r.run_id, "result_set": r.result_set}
        for r in phases.itertuples()
    ), key=lambda p: p["point"] is not None)  # phases of training metrics first, then of measures
    measures = MEASURE.load(store)
    measures = measures[measures["run_id"].isin(step_of)]
    overview["measures"] = []
    for (measure, result_set), group in measures.groupby(["name", "result_set"], sort=False):
        params = group["params"].iloc[0]
        overview["measures"].append({"measure": measure, "label": params.get("label"), "seed": params.get("seed"),
                                     "result_set": result_set, **_grid(group, step_of, order)})
    compared = COMPARE.load(store)
    compared = compared[compared["run_id"].isin(step_of)]
    references = compared["params"].map(lambda p: parse_series_source(p.get("source_b")))
    compared = compared[references.map(lambda ref: ref is not None and ref[0] == name).astype(bool)]
    overview["similarity"] = []
    for (metric, result_set), group in compared.groupby(["name", "result_set"], sort=False):
        params = {k: v for k, v in group["params"].iloc[0].items() if k not in ("point_b", "source_b")}
        source = group["params"].iloc[0]["source_b"]
        overview["similarity"].append({"metric": metric, "reference_step": parse_series_source(source)[1],
                                       "source": source, "params": params, "result_set": result_set,
                                       **_grid(group, step_of, order)})
    labs = LAB.load(store)
    labs = labs[labs["run_id"].isin(step_of)]
    overview["labs"] = [
        {"lab": r.params.get("lab", r.name), "run": r.run_id, "params": r.params,
         "findings": r.extra.get("findings", {}), "seconds": _value(r.extra.get("seconds"))}
        for r in labs.itertuples()
    ]
    return overview
