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

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from neurometry.errors import NeurometryError
from neurometry.models import HookPoint, LoadedModel
from neurometry.record.checkpoints import run_name
from neurometry.record.data import check_data_path
from neurometry.record.recorder import record
from neurometry.store import open_store
from neurometry.store.writer import add_to_series, check_series_name, delete_run

PROBE_FOLDER = "probes"  # inside the store: the probe inputs of live series, as .npz


class Recorder:
    """Record ``points`` of a model in training over ``probe_data`` into ``store``, one run per recorded step.

    ``model``: an ``nn.Module`` taking numeric inputs, or a ``LoadedModel`` (text or image models, whose
    ``probe_data`` is then a data file). ``points``: module paths, or alias -> module path. ``probe_data``:
    an array or tensor of inputs (rows, ...), an ``(inputs, metadata DataFrame)`` pair, or a data file.
    ``every``: :meth:`step` records steps that are multiples of it. ``series``: the series' name (runs
    are ``SERIES-stepN``). ``options`` go to :func:`neurometry.record.record` (``reduce``, ``dtype``,
    ``batch_size``).
    """

    def __init__(
        self,
        model: nn.Module | LoadedModel,
        points: list[str] | dict[str, str],
        probe_data: Any,
        store: str | os.PathLike,
        every: int = 100,
        series: str = "training",
        **options: Any,
    ):
        if every < 1:
            raise NeurometryError(f"every={every} must be at least 1")
        self.store = Path(store)
        self.series = check_series_name(series)
        self.every = every
        self.options = {"progress": False, **options}
        self.data = self._probe_file(probe_data)
        self.model = model if isinstance(model, LoadedModel) else self._wrap(model, probe_data)
        self.points = self._points(points)
        self.runs: list[str] = []
        self._last_seen: int | None = None
        self._last_recorded: int | None = None

    # -- setting up --------------------------------------------------------------------------
    def _probe_file(self, probe_data: Any) -> Path:
        if isinstance(probe_data, str | os.PathLike):
            return check_data_path(probe_data).resolve()
        inputs, metadata = probe_data if isinstance(probe_data, tuple) else (probe_data, None)
        inputs = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
        columns = {} if metadata is None else {str(c): pd.Series(metadata[c]).to_numpy() for c in metadata.columns}
        bad = [c for c, v in columns.items() if v.dtype == object]
        if bad:
            raise NeurometryError(f"metadata column {bad[0]!r} is not numeric or text of one dtype; convert it")
        open_store(self.store, create=True).close()
        folder = self.store / PROBE_FOLDER
        folder.mkdir(exist_ok=True)
        path = folder / f"{self.series}.npz"
        # written beside and renamed: a kill never leaves half a probe file that later runs would read
        handle, partial = tempfile.mkstemp(dir=folder, suffix=".npz")
        os.close(handle)
        np.savez(partial, inputs=inputs, **{k: v for k, v in columns.items() if k not in ("inputs", "row_id")})
        os.replace(partial, path)
        return path

    def _wrap(self, module: nn.Module, probe_data: Any) -> LoadedModel:
        inputs = probe_data[0] if isinstance(probe_data, tuple) else probe_data
        if isinstance(probe_data, str | os.PathLike):
            raise NeurometryError("a data file goes with a LoadedModel (text or image); give a plain module arrays")
        example = torch.as_tensor(np.asarray(inputs[:1]) if not isinstance(inputs, torch.Tensor) else inputs[:1])
        if example.dtype in (torch.int32, torch.int16, torch.uint8):
            example = example.long()
        try:
            device = next(module.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
        return LoadedModel(name=self.series, module=module, modality="tensor", tokenizer=None, preprocess=None,
                           points={}, info={"source": "live"}, example_input=example.to(device))

    def _points(self, points: list[str] | dict[str, str]) -> list[str]:
        if isinstance(points, dict):  # aliases become the model's own point names, so runs store them
            for alias, path in points.items():
                found = self.model.module_point(path)
                self.model.points[alias] = HookPoint(alias, path, found.kind, found.capture, found.index)
            return list(points)
        self.model.resolve(points)  # unknown points fail now, not at the first recorded step
        return list(points)

    # -- recording ---------------------------------------------------------------------------
    def record(self, step: int) -> str:
        """Record the model as it is now as checkpoint ``step`` of the series; returns the run's name."""
        module = self.model.module
        was_training = module.training
        module.eval()
        run_id = run_name(self.series, step)
        store = open_store(self.store)
        try:  # the same step of an earlier training run: its weights were others, so it is replaced
            if any(r.run_id == run_id for r in store.runs()):
                delete_run(store, run_id)
        finally:
            store.close()
        try:
            record(self.model, self.data, self.points, self.store, run=run_id, **self.options)
        finally:
            module.train(was_training)
        store = open_store(self.store)
        try:
            add_to_series(store, run_id, self.series, step, "live")
        finally:
            store.close()
        self.runs.append(run_id)
        self._last_recorded = step
        return run_id

    def step(self, step: int) -> bool:
        """Record ``step`` when it is a multiple of ``every``; returns whether it recorded."""
        self._last_seen = step
        if step % self.every == 0 and step != self._last_recorded:
            self.record(step)
            return True
        return False

    __call__ = step

    def finish(self, step: int | None = None) -> None:
        """Record the last step seen (or ``step``) when it was not recorded yet: a series ends at its final model."""
        step = self._last_seen if step is None else step
        if step is not None and step != self._last_recorded:
            self.record(step)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.finish()

    def trainer_callback(self) -> Any:
        """A Hugging Face ``TrainerCallback`` that records step 0 at the start, every ``every`` optimiser steps,
        and the final step."""
        return make_trainer_callback(self)


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
