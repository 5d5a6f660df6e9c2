"""Recording during training: every ``every`` steps the model's points over fixed probe inputs become one
run of a series, from a plain PyTorch loop (:class:`Recorder`) or a Hugging Face ``Trainer``
(:meth:`Recorder.trainer_callback`)::

    with Recorder(model, ["embed", "blocks.0"], probe_inputs, "runs/store", every=100, series="mine") as rec:
        for step in range(steps):
            ...  # one optimiser step
            rec.step(step)

Each recording runs under ``torch.no_grad`` in eval mode and puts the model back in the mode it was in;
it draws no random numbers, so training goes on exactly as it would without it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from neurometry.errors import NeurometryError
from neurometry.models import HookPoint, LoadedModel
from neurometry.record.background import ProcessWorker, ThreadWorker, can_fork, weights_copy
from neurometry.record.checkpoints import run_name
from neurometry.record.data import ARRAY_SUFFIXES, check_data_path, dataset_id, load_arrays, load_table
from neurometry.record.recorder import record
from neurometry.store import Store, open_store
from neurometry.store.store import SeriesStep
from neurometry.store.writer import check_series_name, delete_run

PROBE_FOLDER = "probes"  # inside the store: the probe inputs of live series, as .npz
# what may go on to record(): the rest would move or cast the model in training, or name the run itself
BACKGROUNDS = (False, True, "thread", "process")
RECORD_OPTIONS = ("reduce", "dtype", "batch_size", "max_tokens", "chunk_rows", "max_batch_tokens", "progress")


@contextlib.contextmanager
def _untouched(module: nn.Module) -> Iterator[None]:
    """Run ``module`` in eval mode without drawing from the random generators training uses; afterwards every
    submodule is back in its own mode (a frozen layer kept in eval inside a training model stays so) and the
    generators are where they were."""
    modes = [(m, m.training) for m in module.modules()]
    devices = sorted({p.device.index or 0 for p in module.parameters() if p.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=devices):
            module.eval()
            yield
    finally:
        for m, training in modes:
            m.training = training


class Recorder:
    """Record ``points`` of a model in training over ``probe_data`` into ``store``, one run per recorded step.

    ``model``: an ``nn.Module`` taking numeric inputs, or a ``LoadedModel`` (text or image models, whose
    ``probe_data`` is then a data file). ``points``: module paths, or alias -> module path. ``probe_data``:
    an array or tensor of inputs (rows, ...), an ``(inputs, metadata DataFrame)`` pair (numeric, boolean or
    text columns), or a data file (a .npy/.npz for a plain module). Everything is checked here, before
    training starts. ``every``: :meth:`step` records steps that are multiples of it. ``series``: the
    series' name (runs are ``SERIES-stepN``). ``options`` go to :func:`neurometry.record.record`
    (:data:`RECORD_OPTIONS`: ``reduce``, ``dtype``, ``batch_size``, ...; not ``device`` or ``model_dtype``,
    which would move or cast the model in training). ``background``: where recordings run
    (:mod:`neurometry.record.background`): ``False`` in the training thread; ``"process"`` in a child forked
    at the first recorded step (a model on the CPU, where the OS forks); ``"thread"`` on a worker thread
    from a copy of the model; ``True`` a process for a plain module of numeric inputs on the CPU, else a
    thread. In the background, training waits only for a copy of the weights (a bounded number stay queued),
    and errors surface at the next :meth:`record` or at :meth:`wait`.
    """

    def __init__(
        self,
        model: nn.Module | LoadedModel,
        points: list[str] | dict[str, str],
        probe_data: Any,
        store: str | os.PathLike,
        every: int = 100,
        series: str = "training",
        background: bool | str = False,
        **options: Any,
    ):
        if background not in BACKGROUNDS:
            raise NeurometryError(f"background={background!r} is not one of False, True, 'thread', 'process'")
        if isinstance(every, bool) or not isinstance(every, int | np.integer) or every < 1:
            raise NeurometryError(f"every={every!r} must be a whole number of steps, at least 1")
        unknown = sorted(set(options) - set(RECORD_OPTIONS))
        if unknown:
            raise NeurometryError(
                f"Recorder takes no option {unknown[0]!r} (it records the model where and as it trains); "
                f"its record options: {', '.join(RECORD_OPTIONS)}"
            )
        if not isinstance(model, nn.Module | LoadedModel):
            raise NeurometryError(f"model is a {type(model).__name__}; give the torch.nn.Module in training or a LoadedModel")
        self.store = Path(store)
        self.series = check_series_name(series)
        self.every = int(every)
        self.options = {"progress": False, **options}
        self.data = self._probe_file(probe_data)
        self.model = model if isinstance(model, LoadedModel) else self._wrap(model)
        if self.model.modality == "tensor":  # the probe data as the first recorded step reads it, checked now
            load_arrays(self.data)
        else:
            load_table(self.data, self.model.modality)
        with _untouched(self.model.module):  # the probe forward of the points runs the model once
            self.points = self._points(points)
        self.runs: list[str] = []
        self._held: Store | None = None
        if background is True:
            background = "process" if self.model.modality == "tensor" and can_fork(self.model) else "thread"
        self.background: str | None = background or None
        if self.background == "process" and not can_fork(self.model):
            raise NeurometryError("background='process' needs os.fork and a model on the CPU; use background='thread'")
        self._worker: ThreadWorker | ProcessWorker | None = None
        self._failure: BaseException | None = None
        self._last_seen: int | None = None
        self._last_recorded: int | None = None

    # -- setting up --------------------------------------------------------------------------
    def _probe_file(self, probe_data: Any) -> Path:
        if isinstance(probe_data, str | os.PathLike):
            return check_data_path(probe_data).resolve()
        inputs, metadata = probe_data if isinstance(probe_data, tuple) else (probe_data, None)
        inputs = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
        columns = {} if metadata is None else {str(c): _column(c, metadata[c]) for c in metadata.columns}
        with tempfile.TemporaryDirectory() as scratch:  # checked before the store is made or touched
            checked = Path(scratch) / "probe.npz"
            np.savez(checked, inputs=inputs, **{k: v for k, v in columns.items() if k not in ("inputs", "row_id")})
            try:  # what the first recorded step would refuse, refused now
                load_arrays(checked)
            except NeurometryError as error:
                raise NeurometryError(str(error).replace(f"{checked}: ", "probe data: ")) from None
            open_store(self.store, create=True).close()
            folder = self.store / PROBE_FOLDER
            folder.mkdir(exist_ok=True)
            # named by its content, so the probe inputs of an earlier session's runs stay where those runs point;
            # copied beside and renamed, so a kill never leaves half a probe file that later runs would read
            path = folder / f"{self.series}-{dataset_id(checked)}.npz"
            handle, partial = tempfile.mkstemp(dir=folder, suffix=".npz")
            os.close(handle)
            try:
                shutil.copyfile(checked, partial)
                os.replace(partial, path)
            except BaseException:
                Path(partial).unlink(missing_ok=True)
                raise
        return path

    def _wrap(self, module: nn.Module) -> LoadedModel:
        if self.data.suffix.lower() not in ARRAY_SUFFIXES:
            raise NeurometryError(
                f"{self.data.name} is a table for a text or image model: give a LoadedModel with it, or give a plain "
                "module its inputs as an array (or a .npy/.npz file)"
            )
        arrays, _ = load_arrays(self.data)
        example = torch.from_numpy(np.array(arrays[:1]))  # as record() batches them (a copy: the inputs are read-only)
        if arrays.dtype.kind in "iu":
            example = example.long()
        try:
            device = next(module.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
        loaded = LoadedModel(name=self.series, module=module, modality="tensor", tokenizer=None, preprocess=None,
                             points={}, info={"source": "live"}, example_input=example.to(device))
        with _untouched(module):
            root = loaded.module_point("")
        loaded.points = {"output": HookPoint("output", "", root.kind, "output", root.index)}
        return loaded

    def _points(self, points: list[str] | dict[str, str]) -> list[str]:
        if isinstance(points, dict):  # aliases become the model's own point names, so runs store them
            self.model.add_aliases(points)
            return list(points)
        self.model.resolve(points)  # unknown points fail now, not at the first recorded step
        return list(points)

    # -- recording ---------------------------------------------------------------------------
    def record(self, step: int) -> str:
        """Record the model as it is now as checkpoint ``step`` of the series; returns the run's name.

        In the background this copies the weights and returns; the worker records the copy while training
        goes on. :meth:`wait` (and :meth:`finish`, and leaving the context) waits for every recording to be
        stored, and raises the first error one met."""
        self._raise_failure()
        run_id = run_name(self.series, step)
        if self.background:
            state = weights_copy(self.model)
            self._start_worker()
            self._worker.submit(step, state)
        else:
            self._record_now(self.model, step)
        if run_id not in self.runs:
            self.runs.append(run_id)
        self._last_recorded = step
        return run_id

    def _record_now(self, model: LoadedModel, step: int, untouched: bool = True) -> None:
        """Record ``model`` as ``step``; ``untouched``: keep its modes and the random generators as they were
        (the model in training; a worker's own copy needs neither, and forking the generators on a worker
        thread would rewind those the training thread draws from meanwhile)."""
        run_id = run_name(self.series, step)
        store = self._store()
        # the same step of an earlier training run: its weights were others, so it is replaced
        if store.find_run(run_id) is not None:
            delete_run(store, run_id)
        attention = model.attention_probs_enabled
        guard = _untouched(model.module) if untouched else contextlib.nullcontext()
        try:
            with guard:
                record(model, self.data, self.points, self.store, run=run_id,
                       series_step=SeriesStep(self.series, step, run_id, "live", None), **self.options)
        finally:
            if not attention and model.attention_probs_enabled:  # attention points switch it to eager
                model.enable_attention_probs(False)

    # -- the background worker ---------------------------------------------------------------
    def _start_worker(self) -> None:
        if self._worker is not None:
            return
        worker = ProcessWorker if self.background == "process" else ThreadWorker
        self.close_store()  # a forked child opens its own; a thread's connection must be the thread's
        self._worker = worker(self.model, partial(self._record_now, untouched=False), self.close_store,
                              f"neurometry-recorder-{self.series}")
        atexit.register(self.wait)

    def wait(self) -> None:
        """Wait until every recording asked for is stored; raise the first error a background recording met."""
        if self._worker is not None:
            worker, self._worker = self._worker, None
            atexit.unregister(self.wait)
            worker.wait()
            self._failure = self._failure or worker.take_failure()
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._worker is not None:
            self._failure = self._failure or self._worker.take_failure()
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    def step(self, step: int) -> bool:
        """Record ``step`` when it is a multiple of ``every``; returns whether it recorded."""
        self._last_seen = step
        if step % self.every == 0 and step != self._last_recorded:
            self.record(step)
            return True
        return False

    __call__ = step

    def finish(self, step: int | None = None) -> None:
        """Record the last step seen (or ``step``) when it was not recorded yet, and wait until every recording
        is stored: a series ends at its final model."""
        step = self._last_seen if step is None else step
        if step is not None and step != self._last_recorded:
            self.record(step)
        self.wait()

    def _store(self) -> Store:
        # Held open between recordings: SQLite checkpoints its write-ahead log (and syncs) whenever the last
        # connection to a catalog closes, which cost ~7 ms for each of record()'s own opens and closes.
        if self._held is None:
            self._held = open_store(self.store, create=True)
        return self._held

    def close_store(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None

    def close(self) -> None:
        """Wait for the recordings and let go of the store (leaving the context does this); recording again
        opens it again."""
        try:
            self.wait()
        finally:
            self.close_store()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if kind is None:
                self.finish()
        finally:
            self.close()

    def trainer_callback(self) -> Any:
        """A Hugging Face ``TrainerCallback`` that records step 0 at the start, every ``every`` optimiser steps,
        and the final step."""
        return make_trainer_callback(self)


def _column(name: Any, values: Any) -> np.ndarray:
    """A probe metadata column as a numpy array of one dtype: numbers, booleans or text."""
    array = pd.Series(values).to_numpy()
    if array.dtype == object:
        if all(isinstance(v, str) for v in array):
            return array.astype(str)
        raise NeurometryError(f"metadata column {name!r} is not numeric or text of one dtype; convert it")
    return array


def make_trainer_callback(recorder: Recorder) -> Any:
    from transformers import TrainerCallback

    class RecorderCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            recorder.step(state.global_step)

        def on_step_end(self, args, state, control, **kwargs):
            recorder.step(state.global_step)

        def on_train_end(self, args, state, control, **kwargs):
            recorder.finish(state.global_step)

    return RecorderCallback()
