"""`neurometry lab NAME`: train a lab entry, save its checkpoints as safetensors, record each into the lab's
series with the live :class:`~neurometry.record.live.Recorder`, save the training metrics, measure the
geometry of every point over training, find the phases of its curve and save what it found."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from tqdm.auto import tqdm

from neurometry.errors import NeurometryError
from neurometry.lab import get_lab
from neurometry.lab.base import Lab
from neurometry.models import LoadedModel
from neurometry.models.load import wrap_module
from neurometry.record.live import Recorder
from neurometry.store import open_store
from neurometry.store.results import LAB, Result, set_name
from neurometry.store.store import check_store_path
from neurometry.store.writer import delete_run
from neurometry.threads import blas_threads
from neurometry.workflows.series import (
    complete_steps,
    measure_series,
    save_phases,
    save_training_metrics,
    series_phases,
)

MIN_CHECKPOINTS = 4  # two phases of at least two checkpoints each (series_phases' min_size)
GEOMETRY = ["effective_rank", "alpha_req"]  # of every point at every checkpoint (Tracing Representation Geometry)


def checkpoint_folder(out: Path, name: str) -> Path:
    """Where a lab's checkpoints go by default: ``STORE/../checkpoints/NAME``."""
    return out.resolve().parent / "checkpoints" / name


def run_lab(
    name: str,
    out: str | os.PathLike,
    *,
    size: str = "default",
    steps: int | None = None,
    seed: int = 0,
    checkpoints: str | os.PathLike | None = None,
    progress: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Train lab entry ``name`` and record it into the store ``out`` as series ``name``; returns
    ``{"results": [one record per checkpoint], "findings": {...}, "phases": ..., "geometry": [...], ...}``.

    A series of that name already in the store is replaced (its runs were this lab's earlier output)."""
    lab = get_lab(name)(size=size, steps=steps, seed=seed, **options)
    out = Path(out)
    check_store_path(out, create=True)
    folder = Path(checkpoints) if checkpoints is not None else checkpoint_folder(out, name)
    _clear(out, name, folder)
    new_store = not out.exists()
    new_folder = None  # the outermost folder made for the checkpoints, if any
    for made in (folder, *folder.parents):
        if made.exists():
            break
        new_folder = made
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return _train_and_record(lab, name, out, folder, size, steps, seed, progress)
    except Exception:
        # nothing half-written: a store or checkpoint folder this call made goes, else this lab's series and files
        if new_store:
            shutil.rmtree(out, ignore_errors=True)
        if new_folder is not None:
            shutil.rmtree(new_folder, ignore_errors=True)
        with contextlib.suppress(Exception):  # the error to report is the one raised
            _clear(out, name, folder, quiet=True)
        raise


def _train_and_record(lab: Lab, name: str, out: Path, folder: Path, size: str, steps: int | None, seed: int,
                      progress: bool) -> dict[str, Any]:
    """:func:`run_lab` once its store and checkpoint folder are ready."""
    model = lab.build()
    probe = lab.probe_data()
    recorder = Recorder(model, lab.points(), (probe.inputs, probe.metadata), out, every=1, series=name,
                        reduce=lab.reduce, batch_size=1024)
    results: list[dict[str, Any]] = []
    bar = tqdm(desc=f"lab {name}", unit="checkpoint", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    started = time.perf_counter()

    def checkpoint(step: int, metrics: dict[str, float]) -> None:
        state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(folder / f"step-{step:08d}.safetensors"))
        run_id = recorder.record(step)
        store = open_store(out)
        try:
            save_training_metrics(store, name, store.series_of(run_id), metrics)
        finally:
            store.close()
        results.append({"step": step, **{k: float(v) for k, v in metrics.items()}})
        bar.update(1)
        bar.set_postfix({k: f"{v:.3g}" for k, v in list(metrics.items())[:3]}, refresh=False)

    # the lab's models are small: a second thread waits more than it works (3 ms a step on one thread
    # against 95 ms on two for the collapse MLP on a busy 2-core machine); NEUROMETRY_BLAS_THREADS overrides
    with blas_threads(torch_threads=True):
        try:
            lab.train(model, checkpoint)
        finally:
            bar.close()
            recorder.close()
        seconds = time.perf_counter() - started
        if not results:
            raise NeurometryError(f"lab {name} reported no checkpoint; it must call checkpoint() at the start and end")
        if len(results) < MIN_CHECKPOINTS:
            raise NeurometryError(f"lab {name}: --steps {steps} gave {len(results)} checkpoints, too few to find "
                                  f"phases (at least {MIN_CHECKPOINTS}); give more --steps")
        findings = lab.findings(model, results)
    store = open_store(out)
    try:
        # a spectrum needs two dimensions: a one-unit point (a logit) has no effective rank or alpha-ReQ
        last = store.series(name)[-1].run_id
        wide = [p.point for p in store.points(last) if math.prod(p.shape) >= 2]
        geometry = measure_series(store, name, points=wide, measures=GEOMETRY, progress=progress) if wide else []
        own = lab.phases(results)
        if own is None:
            phases, _, _ = series_phases(store, name, lab.phase_curve, transform=lab.phase_transform)
            curve = lab.phase_curve
        else:
            phases, curve = own.phases, own.curve
            save_phases(store, name, curve, None, phases, own.steps, own.values)
        last = complete_steps(store, name)[-1]
        LAB.save(store, last.run_id, [Result(
            "", name, None, params={"lab": name, "size": size, "seed": seed, "steps": steps, **lab.settings},
            extra={"findings": findings, "seconds": seconds}, result_set=set_name(lab=name),
        )])
    finally:
        store.close()
    return {
        "lab": name, "title": lab.title, "series": name, "store": str(out), "checkpoints": str(folder),
        "size": size, "seed": seed, "seconds": round(seconds, 2), "results": results, "findings": findings,
        "describe": lab.describe(findings),
        "phases": {"curve": curve, **phases.to_dict()},
        "geometry": [{k: r[k] for k in ("step", "point", "measure", "value")} for r in geometry],
    }


def _clear(out: Path, name: str, folder: Path, quiet: bool = False) -> None:
    """Remove an earlier run of this lab: its series' runs in the store and its checkpoint files (the folder
    and anything else a user put there stay)."""
    if out.exists():
        store = open_store(out)
        try:
            if name in store.series_names():
                if not quiet:
                    print(f"note: replacing series {name!r} in {out} (an earlier run of this lab)", file=sys.stderr)
                for step in store.series(name):
                    delete_run(store, step.run_id)
        finally:
            store.close()
    if folder.is_dir():
        for old in folder.glob("step-*.safetensors"):
            old.unlink()
    elif folder.exists():
        raise NeurometryError(f"checkpoint folder {folder} is a file; choose another --checkpoints folder")


def lab_model(name: str, size: str = "default", seed: int = 0, **options: Any) -> LoadedModel:
    """The lab's model, freshly built, with its points' aliases: what its checkpoints load into when they are
    recorded again with ``record_checkpoints`` (``record lab:NAME``)."""
    lab = get_lab(name)(size=size, seed=seed, **options)
    model = lab.build().eval()
    model.example_input = lab.probe_data().inputs[:1]
    return wrap_module(model, f"lab:{name}" + (f":{size}" if size != "default" else "")).add_aliases(lab.points())
