"""Record hook points of a model over a dataset into a store: resumable, chunk-committed, padding-aware."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from neurometry import clusters
from neurometry.errors import NeurometryError
from neurometry.memory import keep_freed_heap
from neurometry.models import HookPoint, LoadedModel, load_model
from neurometry.models.devices import dtype_name, inputs_to, resolve_device, resolve_model_dtype
from neurometry.models.hooks import capture
from neurometry.record import batching
from neurometry.record.data import check_data_path, dataset_id, load_arrays, load_table
from neurometry.record.ray_engine import RecordJob, import_ray, record_units
from neurometry.record.reduce import (
    IMAGE_REDUCTIONS,
    TENSOR_REDUCTIONS,
    TEXT_REDUCTIONS,
    TokenMask,
    attention_as_tokens,
    reduce_spatial,
    reduce_tokens,
)
from neurometry.record.transfer import DISK_DTYPES, HostCopies, to_disk
from neurometry.store import catalog, open_store
from neurometry.store.chunks import is_disk_full
from neurometry.store.store import RunInfo, SeriesStep, Store, check_store_path
from neurometry.store.writer import (
    PointSpec,
    RunLock,
    RunWriter,
    chunk_rows_for,
    create_run_arrays,
    delete_run,
    huge_page_empty,
    insert_dataset,
    insert_series_step,
)

DTYPES = tuple(DISK_DTYPES)
SORTED_PROBE_INPUTS = 8  # with --max-batch-tokens: inputs of the first, unsorted batch that finds the shapes


@dataclass(frozen=True)
class RecordResult:
    """What a call to :func:`record` left in the store."""

    store: Path
    run_id: str
    points: list[str]
    n_inputs: int
    n_rows: int
    resumed_at: int  # inputs already stored before this call (0 for a fresh run)
    already_complete: bool


def default_run_name(model_name: str) -> str:
    """A run id from the model's name: ``minilm``, ``my-model`` (folder name), ``mymod.factory``,
    ``superposition`` (``lab:superposition:test``)."""
    if model_name.startswith("lab:"):
        base = model_name.split(":")[1]
    else:
        base = Path(model_name.rstrip("/")).name if ":" not in model_name else model_name.split(":")[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.") or "run"


def _check_run_name(run_id: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", run_id):
        raise NeurometryError(f"run name {run_id!r} may hold only letters, digits, '.', '_' and '-'; choose another --run")
    return run_id


def _check_out(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise NeurometryError(f"--out {out} is a file; give a folder for the store")
        check_store_path(out, create=True)  # a store, and writable: found out before the model loads
        return
    parent = out.parent.resolve()
    if not parent.is_dir():
        raise NeurometryError(f"folder {parent} does not exist; create it or choose another --out")
    try:  # a real write: permission bits do not tell the whole story (root, read-only mounts)
        os.rmdir(tempfile.mkdtemp(prefix=".neurometry-probe-", dir=parent))
    except OSError:
        raise NeurometryError(f"cannot write in {parent}; choose an --out folder you can write to") from None


class InputBatches:
    """Model inputs for data rows ``[start, stop)``, and how many stored rows each input yields.

    Text is tokenised once, up front, into one flat int32 array of token ids (4 bytes a token, so
    memory stays small); batches are padded from it, which is what the tokenizer would return.
    """

    TOKENIZE_ROWS = 2048

    def __init__(self, model: LoadedModel, table: pd.DataFrame, max_tokens: int, reduce: str,
                 arrays: np.ndarray | None = None):
        self.model = model
        self.table = table
        self.arrays = arrays  # a tensor model's inputs, (inputs, ...)
        if model.modality == "text":
            tokenizer = model.tokenizer
            texts = table["text"]
            ids, lengths = [], []
            for lo in range(0, len(table), self.TOKENIZE_ROWS):
                encoded = tokenizer(texts.iloc[lo : lo + self.TOKENIZE_ROWS].tolist(), truncation=True,
                                    max_length=max_tokens)["input_ids"]
                lengths.append(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)))
                ids.append(np.fromiter(itertools.chain.from_iterable(encoded), dtype=np.int32))
            self.token_ids = np.concatenate(ids)
            self.lengths = np.concatenate(lengths)
            self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
            self.key_width = int(self.lengths.max())
            self.left_padding = getattr(tokenizer, "padding_side", "right") == "left"
            self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            self.with_token_types = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
        elif reduce == "steps":  # every input is a sequence of the same length: one row per time step
            if arrays is None or arrays.ndim < 2:
                raise NeurometryError(
                    "--reduce steps records a row per time step of (trials, time, features) inputs (or "
                    f"(trials, time) token ids); these inputs have shape {None if arrays is None else arrays.shape}"
                )
            self.lengths = np.full(len(table), arrays.shape[1], dtype=np.int64)
            self.key_width = int(arrays.shape[1])  # the time steps each point must have
        else:
            self.lengths = np.ones(len(table), dtype=np.int64)
            self.key_width = 0
        rows_per_input = self.lengths if reduce in ("tokens", "steps") else np.ones(len(table), dtype=np.int64)
        self.input_row_ends = np.cumsum(rows_per_input)

    def inputs(self, start: int, stop: int) -> tuple[object, torch.Tensor | None]:
        if self.model.modality == "tensor":
            block = self.arrays[start:stop]  # read-only: copied (ids widened to int64) for torch
            return torch.from_numpy(block.astype(np.int64 if block.dtype.kind in "iu" else block.dtype)), None
        if self.model.modality != "text":
            return self.model.preprocess(self.table["image"].iloc[start:stop].tolist()), None
        return self._padded(self.lengths[start:stop], self.token_ids[self.offsets[start] : self.offsets[stop]])

    def inputs_at(self, indices: np.ndarray) -> tuple[object, torch.Tensor]:
        """Text inputs ``indices`` (any order), padded together: row ``k`` is input ``indices[k]``."""
        ids = np.concatenate([self.token_ids[self.offsets[i] : self.offsets[i + 1]] for i in indices])
        return self._padded(self.lengths[indices], ids)

    def _padded(self, lengths: np.ndarray, flat_ids: np.ndarray) -> tuple[object, torch.Tensor]:
        width = int(lengths.max())
        positions = np.arange(width)
        if self.left_padding:
            mask = positions >= (width - lengths)[:, None]
        else:
            mask = positions < lengths[:, None]
        ids = np.full(mask.shape, self.pad_id, dtype=np.int64)
        ids[mask] = flat_ids  # batch-major, like the mask
        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask.astype(np.int64))}
        if self.with_token_types:
            batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
        return batch, torch.from_numpy(mask)

    def token_rows(self) -> Iterator[tuple[int, int, int, int, str]]:
        """(row, input_row, position, token_id, token) for every token row, generated lazily."""
        convert = self.model.tokenizer.convert_ids_to_tokens
        for input_row in range(len(self.table)):
            begin, end = int(self.offsets[input_row]), int(self.offsets[input_row + 1])
            ids = self.token_ids[begin:end].tolist()
            for position, (token_id, token) in enumerate(zip(ids, convert(ids), strict=True)):
                yield begin + position, input_row, position, token_id, str(token)


@dataclass
class RowMaker:
    """The stored rows of a table's inputs: the model run over a batch, each point reduced."""

    loaded: LoadedModel
    hook_points: list[HookPoint]
    batches: InputBatches
    reduce: str
    dtype: str  # on disk

    def on_device(self, start: int, stop: int, indices: np.ndarray | None = None) -> dict[str, torch.Tensor]:
        """The reduced rows of inputs [start, stop) (or ``indices``), float32 or wider, where the model ran."""
        device = self.loaded.device
        inputs, real = self.batches.inputs(start, stop) if indices is None else self.batches.inputs_at(indices)
        mask = TokenMask(real.to(device)) if real is not None else None
        _, captured = capture(self.loaded, inputs_to(inputs, device, self.loaded.dtype), self.hook_points,
                              stop_early=True)
        return {p.name: _reduce(p, _widen(captured[p.name]).to(device), mask, self.reduce, self.batches.key_width)
                for p in self.hook_points}

    def on_host(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """:meth:`on_device` rows as numpy in the on-disk dtype, waited for; NaN/Inf refused."""
        model_dtype = dtype_name(self.loaded.dtype)
        return {name: to_disk(v, self.dtype, name, start, model_dtype)
                for name, v in self.on_device(start, stop).items()}


def _widen(value: torch.Tensor) -> torch.Tensor:
    """Half-precision activations as float32, so reductions and the finiteness check run in float32."""
    return value.float() if value.dtype in (torch.float16, torch.bfloat16) else value


def _reduce(point: HookPoint, value: torch.Tensor, mask: TokenMask | None, reduce: str, key_width: int):
    if point.kind == "attention":
        return reduce_tokens(attention_as_tokens(value, key_width), mask, reduce)
    if point.kind == "tokens":
        if mask is None and value.dim() >= 3:  # a tensor model's positions are all real: no mask to read
            if reduce == "none":
                return value
            if reduce == "steps":
                if value.shape[1] != key_width:
                    raise NeurometryError(
                        f"point {point.name} has {value.shape[1]} positions for inputs of {key_width} time steps; "
                        "record a point with one output per time step (e.g. the RNN module), or --reduce last"
                    )
                return value.flatten(0, 1)
            if reduce in ("first", "last"):
                return value[:, 0 if reduce == "first" else -1].contiguous()
            mask = TokenMask(torch.ones(value.shape[:2], dtype=torch.bool, device=value.device))
        if value.dim() < 3 or mask is None or value.shape[:2] != mask.mask.shape:
            raise NeurometryError(f"point {point.name} is not (batch, seq, ...) shaped; record another point")
        return reduce_tokens(value, mask, reduce)
    if point.kind == "spatial":
        if reduce not in IMAGE_REDUCTIONS:
            raise NeurometryError(f"point {point.name} is a spatial map; record it with --reduce mean or none")
        return reduce_spatial(value, reduce)
    return value


def check_record_options(dtype: str, batch_size: int, max_tokens: int, chunk_rows: int | None) -> None:
    """Refuse, in one line, an on-disk dtype, batch size, token limit or chunk size that cannot be recorded."""
    if dtype not in DTYPES:
        raise NeurometryError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if batch_size < 1 or max_tokens < 1:
        raise NeurometryError("--batch-size and --max-tokens must be at least 1")
    if chunk_rows is not None and chunk_rows < 1:
        raise NeurometryError(f"--chunk-rows {chunk_rows} must be at least 1 (leave it out for about 2 MiB a chunk)")


def run_chunk_rows(requested: int | None, specs: list[PointSpec], dtype: str, n_rows: int) -> int:
    """Rows per chunk of a new run: ``requested`` (at most the run's rows), or about 2 MiB a chunk."""
    return min(requested, n_rows) if requested else chunk_rows_for(specs, dtype, n_rows)


def open_store_to_write(out: Path) -> Store:
    """The store at ``out``, made if missing; a full disk is one line."""
    try:
        return open_store(out, create=True)
    except OSError as exc:
        if is_disk_full(exc):
            raise NeurometryError(f"the disk holding {out} is full ({exc.strerror}); free some space and run again") from None
        raise


@dataclass
class RecordingSetup:
    """What recording ``points`` of a model over a data file needs, checked, before the store is touched."""

    loaded: LoadedModel
    table: pd.DataFrame
    hook_points: list[HookPoint]
    batches: InputBatches
    rows: RowMaker
    reduce: str
    run_id: str
    probe: dict[str, np.ndarray]  # the rows of inputs [0, probe_stop), from the weights the model had
    probe_stop: int
    specs: list[PointSpec]
    settings: dict  # what the run's catalog row keeps, and what a resumed run must match


def _probe_rows(rows_maker: RowMaker, stop: int, loaded: LoadedModel, data: Path, arrays: Any) -> dict[str, np.ndarray]:
    """The first batch's rows. A tensor model that cannot take the data's rows (another width, a missing axis)
    fails inside its own layers; that is said in one line naming both shapes."""
    try:
        return rows_maker.on_host(0, stop)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        if loaded.modality != "tensor":
            raise
        takes = "" if loaded.example_input is None else f"; it takes rows of shape {tuple(loaded.example_input.shape[1:])}"
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise NeurometryError(
            f"{loaded.name} cannot run on the rows of {data.name} (each of shape {tuple(np.shape(arrays)[1:])}"
            f"{takes}): {reason}; give data whose rows the model takes"
        ) from None


def setup_recording(model: str | LoadedModel, data: Path, points: list[str], out: Path, reduce: str | None,
                    dtype: str, batch_size: int, max_tokens: int, run: str | None, max_batch_tokens: int | None,
                    device: str | torch.device | None, model_dtype: str | None, engine: str,
                    text_column: str = "text") -> RecordingSetup:
    """Load and place the model, read the data, resolve the points and run one probe batch: feature shapes,
    and errors surface with nothing written."""
    cast = resolve_model_dtype(model_dtype) if model_dtype is not None else None
    _check_out(out)
    # the device as given: "auto" on a sharded folder lets accelerate spread the model over GPUs and CPU
    loaded = load_model(model, device=device, dtype=cast) if isinstance(model, str) else model.place(device, cast)
    allowed = {"text": TEXT_REDUCTIONS, "image": IMAGE_REDUCTIONS, "tensor": TENSOR_REDUCTIONS}[loaded.modality]
    reduce = reduce or ("none" if loaded.modality == "tensor" else "mean")
    if reduce not in allowed:
        raise NeurometryError(f"--reduce {reduce!r} does not apply to a {loaded.modality} model; use one of {', '.join(allowed)}")
    arrays = None
    if loaded.modality == "tensor":
        if engine == "ray":
            raise NeurometryError("--ray records text and image models; record a tensor model without --ray")
        arrays, table = load_arrays(data)
    else:
        table = load_table(data, loaded.modality, text_column)
    hook_points = loaded.resolve(points)
    run_id = _check_run_name(run or default_run_name(loaded.name))
    if max_batch_tokens is not None and loaded.modality != "text":
        raise NeurometryError("--max-batch-tokens applies to text models; use --batch-size for images")
    if any(p.kind == "attention" for p in hook_points) and hasattr(loaded, "enable_attention_probs"):
        loaded.enable_attention_probs()

    batches = InputBatches(loaded, table, max_tokens, reduce, arrays)
    n_inputs = len(table)

    rows_maker = RowMaker(loaded, hook_points, batches, reduce, dtype)
    if max_batch_tokens is None:
        probe_stop = min(batch_size, n_inputs)
    else:  # a short prefix within the budget (at least one input): it runs unsorted, so its padding is wasted
        probe_stop = max(1, min(SORTED_PROBE_INPUTS, int(np.searchsorted(
            np.arange(1, n_inputs + 1) * np.maximum.accumulate(batches.lengths) > max_batch_tokens, True))))
    probe = _probe_rows(rows_maker, probe_stop, loaded, data, arrays)
    specs = [PointSpec(p.name, p.module_path, p.kind, tuple(probe[p.name].shape[1:])) for p in hook_points]
    settings = {
        "model": loaded.name,
        "dataset_id": dataset_id(data),
        "points": [[s.point, s.module_path, list(s.shape)] for s in specs],
        "reduce": reduce,
        "dtype": dtype,
        "max_tokens": max_tokens,
        "device": loaded.placement,
        "model_dtype": dtype_name(loaded.dtype),
    }
    if reduce == "steps":  # rows are (trial, time) pairs in order: the store reads them back from this
        settings["time_steps"] = batches.key_width
    if loaded.modality == "text" and text_column != "text":
        settings["text_column"] = text_column
    return RecordingSetup(loaded, table, hook_points, batches, rows_maker, reduce, run_id, probe, probe_stop, specs, settings)


def record(
    model: str | LoadedModel,
    data: str | os.PathLike,
    points: list[str],
    out: str | os.PathLike,
    *,
    reduce: str | None = None,
    dtype: str = "float32",
    batch_size: int = 32,
    max_tokens: int = 128,
    run: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    chunk_rows: int | None = None,
    repair_from_row: int | None = None,
    max_batch_tokens: int | None = None,
    device: str | torch.device | None = None,
    model_dtype: str | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    actors: int = 1,
    series_step: SeriesStep | None = None,
    text_column: str = "text",
) -> RecordResult:
    """Record ``points`` of ``model`` over the rows of ``data`` into the store at ``out``.

    ``reduce``: text models ``tokens`` (one row per real token), ``mean``, ``first`` or ``last``
    (one row per input; default ``mean``); image models ``mean`` (spatial average, default) or
    ``none`` (whole maps). ``chunk_rows`` overrides the rows per on-disk chunk (about 2 MiB by
    default), which is also the unit of commit. Rerunning the same call resumes an interrupted run,
    with or without ``overwrite``; a complete run with the same settings is left as it is, and only
    a run recorded with other settings is replaced (with ``overwrite``).

    ``max_batch_tokens`` (text models) replaces ``batch_size``: batches hold as many inputs as fit
    in that many padded tokens (inputs x longest length), with the inputs of each window of up to
    4,096 consecutive inputs sorted by length so padding is small; rows are stored in input order
    and equal those of file-order batches, so the choice is not part of the run's settings.

    ``repair_from_row`` records an existing run again from the chunk holding that row on (what
    ``neurometry verify --repair-by-rerecording`` does for a damaged chunk); the settings must be the
    run's own, its catalog rows and results are kept.

    ``device`` (``cpu|cuda|cuda:N|mps|auto``) and ``model_dtype`` (``float32|bfloat16|float16``) place
    the model; ``None`` leaves a given ``LoadedModel`` where it is (a model named by a string loads as
    float32 on the CPU). The device and precision the model ran in are saved in the run's settings
    (``device``, ``model_dtype``); reductions and the finiteness check run in float32 or wider whatever
    the model's precision, and NaN/Inf (half-precision overflow) is refused before anything is stored.
    A run is resumed on any device, but only in the precision it was recorded in (runs saved before
    these keys existed count as float32).

    ``engine="ray"`` records on a Ray cluster (``ray_address``; None starts a local Ray): ``actors``
    actors, each with its own copy of ``model`` (a name or folder, not a ``LoadedModel``), write chunk-aligned
    row ranges straight into the store, which must lie on a filesystem every node sees; this process
    owns the catalog. The stored rows equal those of ``engine="local"``. See ``record.ray_engine``.

    ``series_step`` (its ``run_id`` this run's) makes the run a step of a series in the commit that completes
    it, so a complete run of a series is never without its step; a run already complete is added then.

    ``text_column`` names the column a text model reads (stored as the rows' ``text``; kept in the run's
    settings when it is not ``text``).
    """
    if series_step is not None and series_step.run_id != run:
        raise ValueError(f"series_step names run {series_step.run_id!r}, not {run!r}")
    out = Path(out)
    data = Path(data)
    check_data_path(data)
    keep_freed_heap()  # batches free and reallocate the same buffers: keep the pages rather than refault them
    check_record_options(dtype, batch_size, max_tokens, chunk_rows)
    if max_batch_tokens is not None and max_batch_tokens < 1:
        raise NeurometryError(f"--max-batch-tokens {max_batch_tokens} must be at least 1 (leave it out for --batch-size)")
    if engine not in ("local", "ray"):
        raise NeurometryError(f"engine {engine!r} is not one of local, ray")
    if engine == "ray":
        import_ray()  # the missing extra, or a cluster that takes no connection, named before any work
        clusters.check_address(ray_address)
        if not isinstance(model, str):
            raise NeurometryError("engine='ray' loads the model in each actor: give it by name, folder or module:attribute")
        if max_batch_tokens is not None:
            raise NeurometryError("--max-batch-tokens does not work with --ray yet; use --batch-size")
        if repair_from_row is not None:
            raise NeurometryError("repairs record in one process; run verify --repair-by-rerecording without --ray")
        if actors < 1:
            raise NeurometryError(f"--actors {actors} must be at least 1")
    if device is not None:
        resolve_device(device, announce=False)  # a missing GPU: one line, nothing made
    setup = setup_recording(model, data, points, out, reduce, dtype, batch_size, max_tokens, run, max_batch_tokens, device,
                            model_dtype, engine, text_column)
    loaded, table, hook_points, batches = setup.loaded, setup.table, setup.hook_points, setup.batches
    reduce, run_id, specs, settings = setup.reduce, setup.run_id, setup.specs, setup.settings
    run_device, run_dtype, n_inputs = loaded.device, dtype_name(loaded.dtype), len(table)
    probe, probe_stop = setup.probe, setup.probe_stop
    device_rows = setup.rows.on_device

    created = not out.exists()
    store = open_store_to_write(out)
    lock = RunLock(store, run_id)
    writer = None
    try:
        plan = _prepare_run(store, run_id, settings, specs, batches, table, data, overwrite, chunk_rows, repair_from_row)
        n_rows = int(batches.input_row_ends[-1])
        if plan.done:
            if series_step is not None:
                with store.transaction() as tx:
                    insert_series_step(tx, series_step)
            return RecordResult(out, run_id, [s.point for s in specs], n_inputs, n_rows, n_inputs, True)
        first_input = plan.first_input
        writer = RunWriter(
            store, run_id, specs, dtype, batches.input_row_ends, plan.chunk_rows,
            committed_rows=plan.committed_rows, first_input=first_input, register=plan.register,
        )
        bar = tqdm(
            total=n_inputs, initial=first_input, unit="row", desc=f"record {run_id}",
            file=sys.stderr, disable=not progress, dynamic_ncols=True,
        )
        try:
            copies = HostCopies(run_device, dtype, run_dtype)  # on CUDA: copies overlap the next forward
            if first_input == 0 and engine == "local":
                writer.add(probe)
                bar.update(probe_stop)
            if engine == "ray":
                job = RecordJob(
                    model=model, points=[p.name for p in hook_points], reduce=reduce, dtype=dtype,
                    max_tokens=max_tokens, batch_size=batch_size, key_width=batches.key_width, store=str(out.resolve()),
                    run_id=run_id, chunk_rows=writer.chunk_rows, device=None if device is None else str(device),
                    model_dtype=model_dtype, column="text" if loaded.modality == "text" else "image",
                )
                record_units(job, table, batches.input_row_ends, writer.committed_rows, writer, bar, ray_address,
                             actors)
            elif max_batch_tokens is None:
                for start in range(probe_stop if first_input == 0 else first_input, n_inputs, batch_size):
                    stop = min(start + batch_size, n_inputs)
                    for _, rows in copies.submit(device_rows(start, stop), start):
                        writer.add(rows)
                    bar.update(stop - start)
                for _, rows in copies.flush():
                    writer.add(rows)
            else:
                _record_windows(device_rows, copies, writer, bar, batches, specs, dtype, max_batch_tokens,
                                probe_stop if first_input == 0 else first_input)
            writer.finish(series_step)
        except NeurometryError:
            writer.close()
            if repair_from_row is None:
                # Bad values mid-run: remove the run (or the store this call made) rather than leave it half-written.
                delete_run(store, run_id)
                if created:
                    store.close()
                    shutil.rmtree(out, ignore_errors=True)
            raise
        finally:
            bar.close()
            writer.close()
        return RecordResult(out, run_id, [s.point for s in specs], n_inputs, n_rows, first_input, False)
    except (OSError, sqlite3.OperationalError) as exc:
        if not is_disk_full(exc):
            raise
        # What was committed stays valid (every chunk is whole, the failed one was removed): resume later.
        done = f" ({writer.committed_rows} of {writer.n_rows} rows are committed)" if writer is not None else ""
        raise NeurometryError(
            f"the disk holding {out} is full{done}; free some space and rerun the same command: it resumes "
            "from the last commit"
        ) from None
    finally:
        lock.release()
        store.close()


# Rows of one window held at most (about) before the writer takes them. Large windows sort better (at a
# 4,096-token budget 2,000 short sentences pad 1.9% in one window, 10.6% in windows of 372), so the
# window buffers are huge-page backed and reused from window to window: fresh 4 KiB pages cost ~2.8 ms
# of kernel time per MiB on these VMs.
WINDOW_BYTES = 256 * 2**20


def _record_windows(device_rows, copies: HostCopies, writer: RunWriter, bar, batches: InputBatches,
                    specs: list[PointSpec], dtype: str, max_batch_tokens: int, start: int) -> None:
    """Record inputs ``[start, n)`` window by window: batches by length, rows put back in input order.

    Each window goes to the writer whole and in input order, so commits stay a prefix of inputs."""
    row_ends = batches.input_row_ends
    rows_per_input = np.diff(row_ends, prepend=0)
    itemsize = 4 if dtype == "float32" else 2
    row_bytes = sum(int(np.prod(s.shape, dtype=np.int64)) * itemsize for s in specs)
    per_input = max(1.0, float(row_ends[-1]) / len(row_ends)) * max(row_bytes, 1)
    window = int(min(batching.DEFAULT_WINDOW, max(64, WINDOW_BYTES // per_input)))
    out: dict[str, np.ndarray] = {}  # one buffer per point, reused by every window (the writer copies rows)
    for win in batching.plan(batches.lengths, max_batch_tokens, window, start):
        base = int(row_ends[win.start - 1]) if win.start else 0
        n_rows = int(row_ends[win.stop - 1]) - base
        for indices in win.batches:
            first = int(indices.min())
            done = copies.submit(device_rows(first, int(indices.max()) + 1, indices), first, indices)
            _place(out, done, n_rows, rows_per_input, row_ends, base)
            bar.update(len(indices))
        _place(out, copies.flush(), n_rows, rows_per_input, row_ends, base)
        for lo in range(0, n_rows, writer.chunk_rows):  # a chunk at a time: the writer's buffers stay small
            writer.add({name: rows[lo : min(lo + writer.chunk_rows, n_rows)] for name, rows in out.items()})


def _place(out: dict[str, np.ndarray], blocks: list[tuple[np.ndarray, dict[str, np.ndarray]]], n_rows: int,
           rows_per_input: np.ndarray, row_ends: np.ndarray, base: int) -> None:
    """Put each block's rows (the inputs ``indices``, in that order) at those inputs' rows of a window of
    ``n_rows`` rows starting at store row ``base``; ``out`` holds one buffer per point, of at least
    ``n_rows`` rows (grown here when a window needs more)."""
    for indices, block in blocks:
        counts = rows_per_input[indices]
        firsts = row_ends[indices] - counts - base  # window row of each input's first row
        dest = np.repeat(firsts - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
        for name, rows in block.items():
            if name not in out or len(out[name]) < n_rows:
                out[name] = huge_page_empty((n_rows, *rows.shape[1:]), rows.dtype)
            out[name][dest] = rows


# Settings that runs saved before they existed hold implicitly; the device is saved but not compared:
# a run started on one device resumes on another (values agree to rounding), while another model
# precision changes the values and so makes another run.
_IMPLIED_SETTINGS = {"device": "cpu", "model_dtype": "float32"}
_UNCOMPARED_SETTINGS = ("device",)


def _changed_settings(old: dict, new: dict) -> list[str]:
    """Keys whose values differ between a stored run's settings and this call's, missing keys of older
    runs read as their implied defaults."""
    old, new = {**_IMPLIED_SETTINGS, **old}, {**_IMPLIED_SETTINGS, **new}
    return sorted(k for k in set(old) | set(new) if k not in _UNCOMPARED_SETTINGS and old.get(k) != new.get(k))


@dataclass(frozen=True)
class _RunPlan:
    first_input: int  # first input to record
    committed_rows: int
    done: bool  # already complete with the same settings
    chunk_rows: int
    register: Callable[[sqlite3.Connection], None] | None = None  # catalog rows of a new run


def _prepare_run(
    store: Store,
    run_id: str,
    settings: dict,
    specs: list[PointSpec],
    batches: InputBatches,
    table: pd.DataFrame,
    data: Path,
    overwrite: bool,
    chunk_rows: int | None,
    repair_from_row: int | None = None,
) -> _RunPlan:
    """Resume, skip, repair or replace an existing run, or create the arrays of a new one.

    The same settings resume (or leave a complete run as it is), with or without ``overwrite``: only
    other settings replace a run. A new run's catalog rows are inserted later, in one transaction, by
    ``register``: until then the run does not exist for readers, and a kill leaves only arrays that
    the next call replaces.
    """
    existing = store.find_run(run_id)
    if repair_from_row is not None:
        if existing is None:
            raise NeurometryError(f"no run {run_id!r} in {store.path} to record again")
        changed = _changed_settings(existing.settings, settings)
        if changed:
            raise NeurometryError(
                f"run {run_id!r} was recorded with other settings than this model and data give now (they differ "
                f"in {', '.join(changed)}); nothing was changed: give the model that recorded it, or record the "
                "data again under another --run"
            )
        return _rewind(store, existing, repair_from_row, batches.input_row_ends)
    if existing is not None:
        if not _changed_settings(existing.settings, settings):
            return _RunPlan(existing.committed_inputs, existing.committed_rows, existing.complete,
                            existing.chunk_rows)
        if existing.complete and not overwrite:
            raise NeurometryError(
                f"run {run_id!r} in {store.path} was recorded with other settings; "
                "choose another --run name or pass --overwrite to replace it"
            )
        if not existing.complete:
            print(f"note: replacing the unfinished run {run_id!r}, which was recorded with other settings",
                  file=sys.stderr)
        delete_run(store, run_id)

    n_rows = int(batches.input_row_ends[-1])
    chunk_rows = run_chunk_rows(chunk_rows, specs, settings["dtype"], n_rows)
    create_run_arrays(store, run_id, specs, settings["dtype"], n_rows, chunk_rows)

    register = new_run_rows(run_id, settings, specs, batches, table, data, chunk_rows)
    return _RunPlan(0, 0, False, chunk_rows, register)


def new_run_rows(run_id: str, settings: dict, specs: list[PointSpec], batches: InputBatches, table: pd.DataFrame,
                 data: Path, chunk_rows: int) -> Callable[[sqlite3.Connection], None]:
    """The catalog rows of a new run (its dataset, the run, its points, its token rows), as a function that
    inserts them inside a transaction: until then the run does not exist for readers."""
    n_rows = int(batches.input_row_ends[-1])

    def register(conn: sqlite3.Connection) -> None:
        insert_dataset(conn, settings["dataset_id"], str(data.resolve()), table)
        conn.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'recording', ?, NULL)",
            (
                run_id, settings["model"], settings["dataset_id"], settings["reduce"], settings["dtype"],
                catalog.dumps(settings), len(table), n_rows, chunk_rows, pd.Timestamp.now("UTC").isoformat(),
            ),
        )
        conn.executemany(
            "INSERT INTO points VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(run_id, s.point, i, s.module_path, s.kind, catalog.dumps(list(s.shape)), settings["dtype"])
             for i, s in enumerate(specs)],
        )
        conn.execute("INSERT INTO commits VALUES (?, 0, 0)", (run_id,))
        if settings["reduce"] == "tokens":
            conn.executemany("INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?)",
                             ((run_id, *row) for row in batches.token_rows()))

    return register


def _rewind(store: Store, run: RunInfo, row: int, input_row_ends: np.ndarray) -> _RunPlan:
    """Move the commit mark of ``run`` back to the start of the chunk holding ``row`` (and forget the
    checksums from there on), so that recording resumes there and writes those chunks again.

    From row 0 the arrays are made afresh (their metadata may be what was damaged), after the commit
    mark has moved: readers never see committed rows without their files."""
    chunk = min(row, run.committed_rows) // run.chunk_rows
    rows = chunk * run.chunk_rows
    inputs = int(np.searchsorted(input_row_ends, rows, side="right"))
    with store.transaction() as tx:
        tx.execute("UPDATE commits SET input_end = ?, row_end = ? WHERE run_id = ?", (inputs, rows, run.run_id))
        tx.execute("UPDATE runs SET status = 'recording', finished = NULL WHERE run_id = ?", (run.run_id,))
        tx.execute("DELETE FROM chunks WHERE run_id = ? AND chunk >= ?", (run.run_id, chunk))
    if rows == 0:
        specs = [PointSpec(p.point, p.module_path, p.kind, p.shape) for p in store.points(run.run_id)]
        create_run_arrays(store, run.run_id, specs, run.dtype, run.n_rows, run.chunk_rows)
    return _RunPlan(inputs, rows, False, run.chunk_rows)


def rerecord(
    store_path: str | os.PathLike,
    run_id: str,
    from_row: int,
    model: str | LoadedModel | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> RecordResult:
    """Record run ``run_id`` of a store again from the chunk holding ``from_row`` on (to repair damaged
    chunks), with the run's own recorded settings: its data file (which must still hold what was
    recorded), points, reduction, dtype, model precision and token limit. The model is ``model``, or the name the run
    recorded when that loads. The run's catalog rows and saved results are kept.
    """
    store = open_store(store_path)
    try:
        info = store.run_info(run_id)
        source = store.dataset_source(info.dataset_id)
    finally:
        store.close()
    settings = info.settings
    if info.dataset_id == f"import-{run_id}":
        raise NeurometryError(
            f"run {run_id!r} was imported from {source}, not recorded: import that file again under another "
            "--run name with `neurometry import`"
        )
    data = Path(source) if source else None
    if data is None or not data.is_file():
        raise NeurometryError(
            f"the data file of run {run_id!r} ({source}) is gone; put it back there to record the run again"
        )
    if dataset_id(data) != settings["dataset_id"]:
        raise NeurometryError(
            f"the data file {data} of run {run_id!r} has changed since the run was recorded; put the recorded "
            "version back there to record the run again"
        )
    spec = model if model is not None else settings["model"]
    try:
        loaded = load_model(spec)
    except NeurometryError as exc:
        hint = "" if model is not None else "; name the model that recorded it with --model (zoo name, folder or module:attribute)"
        raise NeurometryError(f"cannot load model {spec!r} to record run {run_id!r} again ({exc}){hint}") from None
    return record(
        loaded, data, [point for point, _, _ in settings["points"]], store_path, reduce=settings["reduce"],
        dtype=settings["dtype"], batch_size=batch_size, max_tokens=settings["max_tokens"], run=run_id,
        progress=progress, repair_from_row=from_row, model_dtype=settings.get("model_dtype", "float32"),
    )
