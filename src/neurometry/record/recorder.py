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

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from neurometry.errors import NeurometryError
from neurometry.models import HookPoint, LoadedModel, load_model
from neurometry.models.hooks import capture
from neurometry.record.data import dataset_id, load_table
from neurometry.record.reduce import (
    IMAGE_REDUCTIONS,
    TEXT_REDUCTIONS,
    TokenMask,
    attention_as_tokens,
    reduce_spatial,
    reduce_tokens,
)
from neurometry.store import catalog, open_store
from neurometry.store.store import Store
from neurometry.store.writer import (
    PointSpec,
    RunLock,
    RunWriter,
    chunk_rows_for,
    create_run_arrays,
    delete_run,
    insert_dataset,
)

DTYPES = ("float32", "float16", "bfloat16")


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
    """A run id from the model's name: ``minilm``, ``my-model`` (folder name), ``mymod.factory``."""
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
        return
    parent = out.parent.resolve()
    if not parent.is_dir():
        raise NeurometryError(f"folder {parent} does not exist; create it or choose another --out")
    try:  # a real write: permission bits do not tell the whole story (root, read-only mounts)
        os.rmdir(tempfile.mkdtemp(prefix=".neurometry-probe-", dir=parent))
    except OSError:
        raise NeurometryError(f"cannot write in {parent}; choose an --out folder you can write to") from None


def to_disk(values: torch.Tensor, dtype: str, point: str, first_input: int) -> np.ndarray:
    """Convert rows to the on-disk dtype, refusing NaN/Inf and float16 overflow.

    One float64 sum of the converted rows is finite exactly when every value is (float16 overflow
    turns into inf on conversion), so the common case costs a single reduction.
    """
    converted = {"float32": values.float, "float16": values.half, "bfloat16": values.bfloat16}[dtype]()
    if not torch.isfinite(converted.sum(dtype=torch.float64)):
        if not torch.isfinite(values).all():
            raise NeurometryError(
                f"point {point} is NaN or Inf in the batch starting at input row {first_input}; "
                "check that input, or record in float32 with a model that runs in float32"
            )
        raise NeurometryError(
            f"point {point} exceeds the {dtype} range near input row {first_input}; record with --dtype float32"
            + (" or bfloat16" if dtype == "float16" else "")
        )
    if dtype == "bfloat16":
        return converted.view(torch.int16).numpy().view(np.uint16)
    return converted.numpy()


class _Batches:
    """Model inputs for data rows ``[start, stop)``, and how many stored rows each input yields.

    Text is tokenised once, up front, into one flat int32 array of token ids (4 bytes a token, so
    memory stays small); batches are padded from it, which is what the tokenizer would return.
    """

    TOKENIZE_ROWS = 2048

    def __init__(self, model: LoadedModel, table: pd.DataFrame, max_tokens: int, reduce: str):
        self.model = model
        self.table = table
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
        else:
            self.lengths = np.ones(len(table), dtype=np.int64)
            self.key_width = 0
        rows_per_input = self.lengths if reduce == "tokens" else np.ones(len(table), dtype=np.int64)
        self.input_row_ends = np.cumsum(rows_per_input)

    def inputs(self, start: int, stop: int) -> tuple[object, torch.Tensor | None]:
        if self.model.modality != "text":
            return self.model.preprocess(self.table["image"].iloc[start:stop].tolist()), None
        lengths = self.lengths[start:stop]
        width = int(lengths.max())
        positions = np.arange(width)
        if self.left_padding:
            mask = positions >= (width - lengths)[:, None]
        else:
            mask = positions < lengths[:, None]
        ids = np.full(mask.shape, self.pad_id, dtype=np.int64)
        ids[mask] = self.token_ids[self.offsets[start] : self.offsets[stop]]  # batch-major, like the mask
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


def _reduce(point: HookPoint, value: torch.Tensor, mask: TokenMask | None, reduce: str, key_width: int):
    if point.kind == "attention":
        return reduce_tokens(attention_as_tokens(value, key_width), mask, reduce)
    if point.kind == "tokens":
        if value.dim() < 3 or mask is None or value.shape[:2] != mask.mask.shape:
            raise NeurometryError(f"point {point.name} is not (batch, seq, ...) shaped; record another point")
        return reduce_tokens(value, mask, reduce)
    if point.kind == "spatial":
        return reduce_spatial(value, reduce)
    return value


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
) -> RecordResult:
    """Record ``points`` of ``model`` over the rows of ``data`` into the store at ``out``.

    ``reduce``: text models ``tokens`` (one row per real token), ``mean``, ``first`` or ``last``
    (one row per input; default ``mean``); image models ``mean`` (spatial average, default) or
    ``none`` (whole maps). ``chunk_rows`` overrides the rows per on-disk chunk (about 2 MiB by
    default), which is also the unit of commit. Rerunning the same call resumes an interrupted run;
    a complete run with the same settings is left as it is.
    """
    out = Path(out)
    data = Path(data)
    if not data.is_file():
        raise NeurometryError(f"data file {data} does not exist; give a .jsonl, .csv or .parquet file")
    if dtype not in DTYPES:
        raise NeurometryError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if batch_size < 1 or max_tokens < 1:
        raise NeurometryError("--batch-size and --max-tokens must be at least 1")
    _check_out(out)
    loaded = load_model(model) if isinstance(model, str) else model
    allowed = TEXT_REDUCTIONS if loaded.modality == "text" else IMAGE_REDUCTIONS
    reduce = reduce or "mean"
    if reduce not in allowed:
        raise NeurometryError(f"--reduce {reduce!r} does not apply to a {loaded.modality} model; use one of {', '.join(allowed)}")
    table = load_table(data, loaded.modality)
    hook_points = loaded.resolve(points)
    run_id = _check_run_name(run or default_run_name(loaded.name))
    if any(p.kind == "attention" for p in hook_points) and hasattr(loaded, "enable_attention_probs"):
        loaded.enable_attention_probs()

    batches = _Batches(loaded, table, max_tokens, reduce)
    n_inputs = len(table)

    def rows_of(start: int, stop: int) -> dict[str, np.ndarray]:
        inputs, real = batches.inputs(start, stop)
        mask = TokenMask(real) if real is not None else None
        _, captured = capture(loaded, inputs, hook_points, stop_early=True)
        return {
            p.name: to_disk(_reduce(p, captured[p.name], mask, reduce, batches.key_width), dtype, p.name, start)
            for p in hook_points
        }

    # One probe batch before touching the disk: feature shapes, and errors surface with nothing written.
    probe = rows_of(0, min(batch_size, n_inputs))
    specs = [PointSpec(p.name, p.module_path, p.kind, tuple(probe[p.name].shape[1:])) for p in hook_points]
    settings = {
        "model": loaded.name,
        "dataset_id": dataset_id(data),
        "points": [[s.point, s.module_path, list(s.shape)] for s in specs],
        "reduce": reduce,
        "dtype": dtype,
        "max_tokens": max_tokens,
    }

    created = not out.exists()
    store = open_store(out, create=True)
    lock = RunLock(store, run_id)
    try:
        plan = _prepare_run(store, run_id, settings, specs, batches, table, data, overwrite, chunk_rows)
        n_rows = int(batches.input_row_ends[-1])
        if plan.done:
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
            for start in range(first_input, n_inputs, batch_size):
                stop = min(start + batch_size, n_inputs)
                writer.add(probe if start == 0 else rows_of(start, stop))
                bar.update(stop - start)
            writer.finish()
        except NeurometryError:
            writer.close()
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
    finally:
        lock.release()
        store.close()


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
    batches: _Batches,
    table: pd.DataFrame,
    data: Path,
    overwrite: bool,
    chunk_rows: int | None,
) -> _RunPlan:
    """Resume, skip or replace an existing run, or create the arrays of a new one.

    A new run's catalog rows are inserted later, in one transaction, by ``register``: until then the
    run does not exist for readers, and a kill leaves only arrays that the next call replaces.
    """
    existing = {r.run_id: r for r in store.runs()}.get(run_id)
    if existing is not None:
        if existing.settings == settings and not overwrite:
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
    chunk_rows = min(chunk_rows, n_rows) if chunk_rows else chunk_rows_for(specs, settings["dtype"], n_rows)
    create_run_arrays(store, run_id, specs, settings["dtype"], n_rows, chunk_rows)

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

    return _RunPlan(0, 0, False, chunk_rows, register)
