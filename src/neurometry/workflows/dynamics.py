"""Fixed points and Lyapunov spectra of a recurrent model over the inputs of a run in a store, saved there.

The run's data file (a (trials, time, features) array recorded with ``neurometry record``) drives the model;
its whole state trajectories (every layer, and an LSTM's cell state) give the initial states of the fixed
point search and the path of the Lyapunov spectrum. Results go to the run as ``fixed_point_search`` and
``lyapunov`` results.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neurometry.dynamics.fixed_points import FixedPoints, find_fixed_points, sample_states
from neurometry.dynamics.lyapunov import LyapunovSpectrum, lyapunov_spectrum
from neurometry.dynamics.recurrent import analysed_map, trajectories
from neurometry.errors import NeurometryError
from neurometry.files import read_npy
from neurometry.models import LoadedModel
from neurometry.record.data import load_arrays
from neurometry.store import Store
from neurometry.store.results import FIXED_POINTS, LYAPUNOV, Result


@dataclass(frozen=True)
class FixedPointAnalysis:
    """What :func:`fixed_points_of_run` found: the points, and the trajectories (trials, time, state) they were
    searched from (for plots), on ``run`` of the store."""

    run: str
    found: FixedPoints
    trajectories: np.ndarray
    input_label: str


def run_inputs(store: Store, run: str | None) -> tuple[str, np.ndarray]:
    """The run (the store's only one when None) and its data file's inputs, (trials, time, features)."""
    info = store.run_info(store.one_run(run))
    source = store.dataset_source(info.dataset_id)
    if source is None or not Path(source).is_file():
        raise NeurometryError(
            f"run {info.run_id}'s data file {source} is not there any more; put it back or record the inputs again"
        )
    inputs, _ = load_arrays(source)
    if inputs.ndim != 3:
        raise NeurometryError(
            f"run {info.run_id} was recorded on inputs of shape {inputs.shape}; the dynamics need (trials, time, "
            "features) sequences: record the model on such an array"
        )
    return info.run_id, inputs


def fixed_points_of_run(
    model: LoadedModel,
    store: Store,
    run: str | None = None,
    *,
    fixed_input: str | os.PathLike | None = None,
    initial_states: int = 1024,
    noise: float = 0.0,
    seed: int = 0,
    module: str | None = None,
    save: bool = True,
) -> FixedPointAnalysis:
    """Fixed and slow points of ``model`` at x* = ``fixed_input`` (a .npy vector; None is zero input), searched
    from ``initial_states`` states drawn from its trajectories over the run's inputs, saved on the run."""
    run, inputs = run_inputs(store, run)
    dynamics = analysed_map(model.module, module)
    visited = trajectories(dynamics, torch.from_numpy(np.array(inputs))).numpy()
    x_star = None if fixed_input is None else read_npy(Path(fixed_input), fix="save x* as a 1-D array with numpy.save")
    found = find_fixed_points(dynamics, sample_states(visited, initial_states, seed=seed), x_star, noise=noise,
                              seed=seed)
    label = "zero" if fixed_input is None else str(Path(fixed_input).resolve())
    if save:
        params = {"model": model.name, "input": label, "initial_states": initial_states, "noise": noise, "seed": seed}
        FIXED_POINTS.save(store, run, [
            Result(dynamics.name, f"point.{i}", float(found.q[i]), params, {
                "kind": str(found.kind[i]), "stability": str(found.stability[i]),
                "unstable_directions": int(found.unstable_directions[i]), "outlier": bool(found.outlier[i]),
                "eigenvalues": [[float(v.real), float(v.imag)] for v in found.eigenvalues[i]],
                "state": found.states[i].tolist(),
            }, result_set=f"fixed-points:{label}")
            for i in range(len(found))
        ])
    return FixedPointAnalysis(run, found, visited, label)


def lyapunov_of_run(model: LoadedModel, store: Store, run: str | None = None, *, discard: int = 0,
                    trials: int | None = None, module: str | None = None, save: bool = True) -> LyapunovSpectrum:
    """The Lyapunov spectrum of ``model`` along its trajectories over the run's inputs (the first ``trials``
    of them, or all), the first ``discard`` steps left out; saved on the run."""
    run, inputs = run_inputs(store, run)
    if trials is not None:
        inputs = inputs[:trials]
    spectrum = lyapunov_spectrum(model.module, inputs, module=module, discard=discard)
    if save:
        params = {"model": model.name, "discard": discard, "trials": len(inputs)}
        LYAPUNOV.save(store, run, [
            Result("state", f"exponent.{i}", float(value), params,
                   {"per_trial": spectrum.per_trial[:, i].tolist(),
                    "kaplan_yorke_dimension": spectrum.kaplan_yorke_dimension}, result_set="lyapunov")
            for i, value in enumerate(spectrum.exponents)
        ])
    return spectrum


def saved_fixed_point_searches(store: Store, results: pd.DataFrame) -> list[dict]:
    """The fixed point searches in ``results`` (``FIXED_POINTS`` rows), one per run and result set, for the
    report and dashboard: ``run``, ``input``, ``model``, ``states`` (k, state), ``stability``, ``kind``,
    ``q``, ``unstable_directions``, ``outlier`` (k,), ``eigenvalues`` (k, state) complex, ``continuous``
    False, and ``trajectories`` (trials, time, state): the run's recorded states when one of its points is
    the whole state (``--reduce steps``, same width), else None."""
    searches = []
    for (run, result_set), group in results.groupby(["run_id", "result_set"], sort=False):
        extra = list(group["extra"])
        states = np.array([e["state"] for e in extra], dtype=float)
        searches.append({
            "run": run, "result_set": result_set, "input": group["params"].iloc[0]["input"],
            "model": group["params"].iloc[0]["model"], "states": states,
            "stability": [e["stability"] for e in extra], "kind": [e["kind"] for e in extra],
            "q": group["value"].to_numpy(dtype=float), "unstable_directions": [e["unstable_directions"] for e in extra],
            "outlier": [e["outlier"] for e in extra],
            "eigenvalues": np.array([[complex(re, im) for re, im in e["eigenvalues"]] for e in extra]),
            "continuous": False, "trajectories": recorded_trajectories(store, run, states.shape[1]),
        })
    return searches


def run_trajectories(store: Store, run: str) -> dict[str, np.ndarray]:
    """Every vector point of a ``--reduce steps`` run as (trials, time, width) trajectories, in depth order."""
    info = store.run_info(run)
    if info.reduce != "steps":
        raise NeurometryError(f"run {run} holds one row per {'token' if info.reduce == 'tokens' else 'input'}, not "
                              "per time step; record (trials, time, features) inputs with --reduce steps")
    steps = int(info.settings["time_steps"])
    return {p.point: store.activations(p.point, run=run).astype(float).reshape(-1, steps, p.shape[0])
            for p in store.points(run) if len(p.shape) == 1}


def recorded_trajectories(store: Store, run: str, width: int) -> np.ndarray | None:
    """A ``--reduce steps`` run's recorded states as (trials, time, width), from its first point of that width;
    None when the run has none (its points are part of the state only, or not per step)."""
    info = store.run_info(run)
    if info.reduce != "steps":
        return None
    for point in store.points(run):
        if point.shape == (width,):
            return store.activations(point.point, run=run).astype(float).reshape(-1, info.settings["time_steps"], width)
    return None


def dsa_sides(path: str | os.PathLike, points: list[str] | None, run: str | None) -> dict[str, np.ndarray]:
    """The trajectories (trials, time, units) one side of a DSA comparison names: a .npy array (its file name as
    the point), or the points of a store's ``--reduce steps`` run (``points``: names; default all)."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        array = np.asarray(read_npy(path, fix="save (trials, time, units) trajectories with numpy.save"), dtype=float)
        if array.ndim != 3:
            raise NeurometryError(f"{path.name} has shape {array.shape}; DSA compares (trials, time, units) trajectories")
        return {path.name: array}
    if not path.is_dir():
        raise NeurometryError(f"{path} is neither a .npy array nor a store; give (trials, time, units) trajectories")
    from neurometry.store import open_store

    store = open_store(path, read_only=True)
    try:
        every = run_trajectories(store, store.one_run(run))
    finally:
        store.close()
    unknown = [p for p in points or [] if p not in every]
    if unknown:
        raise NeurometryError(f"no point {unknown[0]!r} in {path}; its points: {', '.join(every)}")
    return {p: every[p] for p in points} if points else every


def compare_dynamics(a: str | os.PathLike, b: str | os.PathLike, *, points_a: list[str] | None = None,
                     points_b: list[str] | None = None, run_a: str | None = None, run_b: str | None = None,
                     n_delays: int = 10, delay_interval: int = 1, rank: int | None = None, score: str = "angular",
                     seed: int = 0) -> dict:
    """DSA (:func:`neurometry.dynamics.dsa.dsa`) between every point of A and every point of B, as
    ``{"results": [{"point_a", "point_b", "metric": "dsa", "value", "params"}]}``."""
    from neurometry.dynamics.dsa import dsa

    side_a, side_b = dsa_sides(a, points_a, run_a), dsa_sides(b, points_b, run_b)
    params = {"n_delays": n_delays, "delay_interval": delay_interval, "rank": rank, "score": score}
    results = [{"point_a": name_a, "point_b": name_b, "metric": "dsa",
                "value": dsa(x, y, n_delays=n_delays, delay_interval=delay_interval, rank=rank, score=score, seed=seed),
                "params": params}
               for name_a, x in side_a.items() for name_b, y in side_b.items()]
    return {"metric": "dsa", "results": results}
