"""Per-unit statistics and top-activating rows of one stored point, for the dashboard's neuron pages.

One streaming pass over the committed rows gives, per unit (column of the point's (rows, F) array):
mean, standard deviation, minimum, maximum, the fraction of rows where it is positive, and the
``top`` rows of largest activation. Memory is O(F * top) plus one block of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from neurometry.errors import NeurometryError
from neurometry.features.examples import TokenContexts, display_token, readable_context
from neurometry.store.store import Store
from neurometry.threads import blas_threads

INPUT_COLUMNS = ("text", "image", "path", "stimulus", "name")
"""Data columns shown for a stored row of a per-input run (reduce mean/first/last/none), first found wins."""


@dataclass(frozen=True)
class NeuronTable:
    """Statistics of the F units of one point over its ``n_rows`` committed rows."""

    run: str
    point: str
    n_rows: int
    mean: np.ndarray  # (F,)
    std: np.ndarray  # (F,) population standard deviation
    min: np.ndarray  # (F,)
    max: np.ndarray  # (F,)
    active: np.ndarray  # (F,) fraction of rows with activation > 0
    top_rows: np.ndarray  # (F, top) rows of the largest activations, largest first
    top_values: np.ndarray  # (F, top)

    @property
    def n_units(self) -> int:
        return len(self.mean)


def neuron_table(store: Store, run: str, point: str, top: int = 10, chunk_rows: int = 16384) -> NeuronTable:
    """Stream a 1-D point's committed rows once; see the module docstring for what is kept."""
    info = store.point_info(point, run)
    if len(info.shape) != 1:
        raise NeurometryError(
            f"point {point!r} has rows of shape {info.shape}; neurons are the units of points with one "
            "feature axis (resid, mlp_act, embed, ...)"
        )
    if info.n_rows == 0:
        raise NeurometryError(f"run {run!r} has no committed rows yet; wait for `record` to commit its first chunk")
    width, keep = info.shape[0], min(top, info.n_rows)
    best_values = np.full((keep, width), -np.inf, dtype=np.float32)
    best_rows = np.zeros((keep, width), dtype=np.int64)
    shift = None
    s1 = np.zeros(width)
    s2 = np.zeros(width)
    low = np.full(width, np.inf)
    high = np.full(width, -np.inf)
    positive = np.zeros(width, dtype=np.int64)
    start = 0
    # pages are served from several threads at once on a shared machine: one BLAS thread (neurometry.threads)
    with blas_threads():
        for block in store.iter_chunks(point, run, chunk_rows=chunk_rows, stop=info.n_rows):
            values = block.astype(np.float64)
            if shift is None:
                shift = values.mean(0)  # power sums of a - shift keep the variance accurate for large means
            centred = values - shift
            s1 += centred.sum(0)
            s2 += np.einsum("ij,ij->j", centred, centred)
            low = np.minimum(low, block.min(0))
            high = np.maximum(high, block.max(0))
            positive += np.count_nonzero(block > 0, axis=0)
            # only rows that beat some unit's current last kept value can enter (few, once the tables fill)
            candidates = np.flatnonzero((block.astype(np.float32) > best_values[-1]).any(1))
            if len(candidates):
                best_values, best_rows = _merge_top(best_values, best_rows, block[candidates].astype(np.float32),
                                                    start + candidates)
            start += len(block)
    n = start
    mean_centred = s1 / n
    return NeuronTable(
        run=info.run_id,
        point=point,
        n_rows=n,
        mean=shift + mean_centred,
        std=np.sqrt(np.maximum(s2 / n - mean_centred**2, 0.0)),
        min=low,
        max=high,
        active=positive / n,
        top_rows=best_rows.T.copy(),
        top_values=best_values.T.copy(),
    )


def _merge_top(
    values: np.ndarray, rows: np.ndarray, new_values: np.ndarray, new_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``len(values)`` per unit of the kept (keep, F) and the new (m, F) rows: largest first,
    the earlier row first on a tie (the caller passes only rows that can enter, so m is small once
    the tables have filled)."""
    joined_values = np.concatenate([values, new_values])
    joined_rows = np.concatenate([rows, np.broadcast_to(new_rows[:, None], new_values.shape)])
    order = np.lexsort((joined_rows, -joined_values), axis=0)[: len(values)]
    return np.take_along_axis(joined_values, order, axis=0), np.take_along_axis(joined_rows, order, axis=0)


class RowExamples:
    """What a stored row shows: the token in its context (token runs) or the input's text (per-input runs)."""

    def __init__(self, store: Store, run: str, n_rows: int, window: int = 8):
        info = store.run_info(run)
        self.reduce = info.reduce
        if self.reduce == "tokens":
            self.contexts = TokenContexts(store, run, n_rows, window)
        else:
            inputs = store.inputs(info.dataset_id)
            column = next((c for c in INPUT_COLUMNS if c in inputs.columns), None)
            self.input_row = store.row_index(run)["input_row"].to_numpy()
            if column:
                self.texts = inputs[column].astype(str).to_numpy()
            else:
                self.texts = inputs.to_json(orient="records", lines=True).splitlines()

    def __call__(self, row: int, activation: float) -> dict[str, Any]:
        if self.reduce == "tokens":
            context = self.contexts(row, activation)
            left, token, right = readable_context(context.left, context.token, context.right)
            return {"row": row, "activation": activation, "left": left, "token": token, "right": right}
        return {"row": row, "activation": activation, "text": str(self.texts[self.input_row[row]])}

    def top_token(self, row: int) -> str:
        """The token of a token row, stripped for search and listing ('' for per-input runs)."""
        return display_token(self.contexts.token[row]) if self.reduce == "tokens" else ""
