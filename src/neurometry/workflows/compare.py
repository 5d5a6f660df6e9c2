"""`compare` as a library: turn stores (with point globs), .npy arrays and precomputed RDMs (.npy / .mat)
into named representations, compare every pair with :func:`neurometry.compare.matrix.compare_matrix` and
save the results in A's store (kind :data:`~neurometry.store.results.COMPARE`, one result set per
comparison: the metric, the B side and the settings); :func:`compare_records` reads them back."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from neurometry.compare.matrix import compare_matrix
from neurometry.compare.rdm import RDM, is_rdm_array, load_rdms
from neurometry.compare.registry import get_metric
from neurometry.errors import NeurometryError
from neurometry.files import read_npy
from neurometry.models.devices import stage_device
from neurometry.store import Store, open_store
from neurometry.store.results import COMPARE, Result, depth_ranks, set_name
from neurometry.store.store import is_store


@dataclass
class Side:
    """One side of a comparison: named representations, and the store they came from (if any)."""

    label: str
    reps: dict[str, Any]
    store: Any = None
    run: str | None = None
    subjects: list[RDM] = field(default_factory=list)


def _select(names: list[str], patterns: list[str] | None, where: str) -> list[str]:
    if not patterns:
        return names
    for pat in patterns:
        if not any(fnmatch.fnmatchcase(n, pat) for n in names):
            raise NeurometryError(f"no point matches {pat!r} in {where}; it has: {', '.join(names[:12])}")
    return [n for n in names if any(fnmatch.fnmatchcase(n, pat) for pat in patterns)]


def load_side(
    source: str, patterns: list[str] | None, run: str | None, rdm_key: str | None, label: str
) -> Side:
    """A store (points by glob, one run), a .npy (activations or RDMs) or a .mat (RDMs under ``rdm_key``)."""
    path = Path(source)
    if not path.exists():
        raise NeurometryError(f"{source} does not exist; give a store, a .npy array or a .mat file of RDMs")
    if path.is_dir():
        if not is_store(path):
            raise NeurometryError(f"{source} is a folder but not a neurometry store; record into it first")
        store = open_store(path)
        runs = [r.run_id for r in store.runs()]
        if run is None:
            if not runs:
                raise NeurometryError(f"{source} holds no runs yet; record into it first")
            if len(runs) != 1:
                raise NeurometryError(f"{source} holds runs {', '.join(runs)}; choose one with --run-{label.lower()}")
            run = runs[0]
        points = [p.point for p in store.points(run)]
        chosen = _select(points, patterns, f"{source} (run {run})")
        reps = {name: store.activations(name, run=run) for name in chosen}
        return Side(label, reps, store, run)
    if path.suffix == ".mat":
        rdms = load_rdms(path, rdm_key)
    elif path.suffix == ".npy":
        array = read_npy(path)
        if not is_rdm_array(array):
            if array.ndim < 2:
                raise NeurometryError(f"{path} has shape {array.shape}; give stimuli x features (or an RDM)")
            _select([path.stem], patterns, source)
            return Side(label, {path.stem: array})
        rdms = load_rdms(path)
    else:
        raise NeurometryError(f"{source}: unknown file type; give a store folder, a .npy or a .mat file")
    names = _select(list(rdms), patterns, source)
    return Side(label, {n: rdms[n] for n in names})


def run_compare(
    source_a: str,
    source_b: str | None,
    metric: str,
    *,
    points_a: list[str] | None = None,
    points_b: list[str] | None = None,
    run_a: str | None = None,
    run_b: str | None = None,
    rdm_key: str | None = None,
    subjects: bool = False,
    permutations: int = 0,
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Load both sides, compare every pair, save the results in A's store; returns the JSON document.
    ``device``: where cka, rsa and the kNN metrics do their products (:func:`stage_device`; the other
    metrics run on the CPU); it is not part of the result set (the values agree)."""
    device = stage_device(device)
    m = get_metric(metric)
    a = load_side(source_a, points_a, run_a, rdm_key, "A")
    source_b = source_b or source_a
    if run_b is None and Path(source_b).resolve() == Path(source_a).resolve():
        run_b = a.run  # the same store: the same run unless told otherwise
    same = (
        Path(source_b).resolve() == Path(source_a).resolve()
        and points_b in (None, points_a)
        and run_b in (None, run_a, a.run)
    )
    b = a if same else load_side(source_b, points_b, run_b, rdm_key, "B")
    ceiling = None
    if subjects:
        ceiling, b = pool_subjects(b, m.name, params)
    results = compare_matrix(
        a.reps,
        None if b is a else b.reps,
        m.name,
        permutations=permutations,
        bootstrap=bootstrap,
        confidence=confidence,
        seed=seed,
        progress=progress,
        device=device,
        **params,
    )
    records = [r.to_dict() for r in results]
    if a.store is not None:
        result_set = compare_set_name(
            metric, source_b, points_b=points_b, run_b=run_b, rdm_key=rdm_key, subjects=subjects,
            permutations=permutations, bootstrap=bootstrap, confidence=confidence, seed=seed, **params,
        )
        COMPARE.save(a.store, a.run, [
            Result(
                r.point_a, r.metric, r.value,
                params={**r.params, "point_b": r.point_b, "source_b": str(source_b), "seed": seed},
                extra={k: getattr(r, k) for k in ("p_value", "null_mean", "ci_low", "ci_high", "n_stimuli", "note")},
                result_set=result_set,
            )
            for r in results
        ])
    document: dict[str, Any] = {"results": records}
    if ceiling is not None:
        document["noise_ceiling"] = ceiling
    return document


def compare_set_name(
    metric: str, source_b: str, *, points_b: list[str] | None = None, run_b: str | None = None,
    rdm_key: str | None = None, subjects: bool = False, permutations: int = 0, bootstrap: int = 0,
    confidence: float = 0.95, seed: int = 0, **params: Any,
) -> str:
    """The result set of one comparison: the metric, the B side (resolved path, run, points, .mat key) and
    every setting, so a reader finds these rows and not another comparison's."""
    return set_name(
        metric=metric, b=str(Path(source_b).resolve()), run_b=run_b, points_b=points_b, rdm_key=rdm_key,
        subjects=subjects or None, permutations=permutations, bootstrap=bootstrap,
        confidence=confidence if bootstrap else None, seed=seed, params=params or None,
    )


def pool_subjects(side: Side, metric: str, params: dict[str, Any]) -> tuple[dict[str, Any], Side]:
    """B's RDMs are subjects of one region: compare against their pooled RDM, with its noise ceiling."""
    from neurometry.compare.rdm_comparison import noise_ceiling, pool_rdms

    if metric != "rsa":
        raise NeurometryError("--subjects pools subject RDMs, so it needs --metric rsa")
    rdms = [r for r in side.reps.values() if isinstance(r, RDM)]
    if len(rdms) != len(side.reps) or len(rdms) < 2:
        raise NeurometryError(
            "--subjects needs B to be two or more subject RDMs (a stacked .npy or a .mat key)"
        )
    method = params.get("compare", get_metric("rsa").params["compare"])
    lower, upper = noise_ceiling(rdms, method=method)
    pooled = pool_rdms(rdms, method=method)
    name = f"pooled({len(rdms)} subjects)"
    return {"point_b": name, "lower": lower, "upper": upper, "subjects": len(rdms), "compare": method}, Side(
        side.label, {name: pooled}
    )


def compare_records(store: Store, results: pd.DataFrame, order_b: list[str] | None = None) -> list[dict]:
    """`neurometry compare` records from decoded ``compare`` rows: A points by depth, and within each, B
    points by depth in the same store (else in ``order_b``, e.g. the RDM order of a .mat file, else by
    natural order of their names)."""
    ranks_b = depth_ranks(store, results["run_id"], results["params"].map(lambda p: str(p.get("point_b"))))
    if order_b is not None:
        index = {name: i for i, name in enumerate(order_b)}
        points_b = results["params"].map(lambda p: p.get("point_b"))
        ranks_b = [(index.get(b, len(index)), n) for b, (_, n) in zip(points_b, ranks_b, strict=True)]
    rows = sorted(
        zip(results.itertuples(), ranks_b, strict=True),
        key=lambda pair: (pair[0].run_id, pair[0].depth_rank, pair[0].name_rank, pair[1]),
    )
    return [
        {"point_a": r.point, "point_b": r.params.get("point_b"), "metric": r.name, "value": r.value,
         "params": r.params, **r.extra}
        for r, _ in rows
    ]
