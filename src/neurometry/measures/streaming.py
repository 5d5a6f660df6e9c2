"""``run_measures``: compute several measures over chunks of rows, reading the chunks once."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from neurometry.errors import NeurometryError, did_you_mean
from neurometry.measures.accumulators import ACCUMULATORS, MAX_COV_FEATURES, Block, Context
from neurometry.measures.registry import MeasureResult, get_measure

Chunks = Callable[[], Iterable[np.ndarray]]

BLOCK_BYTES = 16 << 20
"""Chunks are cut into row blocks of about this many float64 bytes before accumulation."""


def check_chunk(chunk: Any, start: int, feat_shape: tuple[int, ...] | None) -> np.ndarray:
    """Validate one chunk (rows, *feat) starting at global row ``start``: real numbers, the same
    feature shape as before, no NaN or Inf. Returns it as a NumPy array (no copy when possible)."""
    x = np.asarray(chunk)
    if x.dtype.kind not in "fiub":
        raise NeurometryError(
            f"activations must be real numbers, got dtype {x.dtype} at row {start}; convert to float32"
        )
    if x.ndim < 2:
        raise NeurometryError(
            f"activations must be shaped (rows, features...), got shape {x.shape} at row {start}; "
            "reshape a single vector to (1, d) or a 1-D series to (n, 1)"
        )
    if feat_shape is not None and x.shape[1:] != feat_shape:
        raise NeurometryError(
            f"chunk at row {start} has rows of shape {x.shape[1:]}, earlier chunks {feat_shape}; "
            "every chunk must have the same feature shape"
        )
    if x.dtype.kind == "f":
        finite = np.isfinite(x.reshape(len(x), int(np.prod(x.shape[1:])))).all(1)
        if not finite.all():
            row = start + int(np.flatnonzero(~finite)[0])
            raise NeurometryError(
                f"row {row} contains NaN or Inf; remove or fix that row (e.g. record in float32)"
            )
    return x


def _blocks(x: np.ndarray, block_rows: int) -> Iterator[tuple[int, np.ndarray]]:
    for lo in range(0, len(x), block_rows):
        yield lo, x[lo : lo + block_rows]


def _resolve(
    names: Sequence[str], params: dict[str, Any]
) -> tuple[list[Any], dict[str, dict[str, Any]], dict[str, Any]]:
    if isinstance(names, str) or not len(names):
        raise NeurometryError("give a list of one or more measure names, e.g. ['effective_rank', 'twonn']")
    measures = [get_measure(n) for n in dict.fromkeys(names)]
    known = {p for m in measures for p in m.params}
    unknown = sorted(set(params) - known)
    if unknown:
        raise NeurometryError(
            f"unknown parameter {unknown[0]!r} for {', '.join(m.name for m in measures)}"
            f"{did_you_mean(unknown[0], known)}; their parameters are: {', '.join(sorted(known)) or 'none'}"
        )
    per = {m.name: {k: params.get(k, v) for k, v in m.params.items()} for m in measures}
    merged = {k: v for p in per.values() for k, v in p.items()}
    return measures, per, merged


def run_measures(
    chunks: Chunks,
    names: Sequence[str],
    *,
    labels: np.ndarray | None = None,
    input_ids: np.ndarray | None = None,
    classifier: tuple[np.ndarray, np.ndarray] | None = None,
    other: Chunks | None = None,
    seed: int = 0,
    max_rows: int = 20000,
    device: torch.device | None = None,
    **params: Any,
) -> dict[str, MeasureResult]:
    """Compute the measures ``names`` over a stream of row chunks, reading the stream once.

    Args:
        chunks: a callable returning an iterable of arrays shaped (rows, *feat) (float16/32/64; other
            real dtypes are converted); rows are consecutive across chunks. Features are flattened,
            except for the attention measures, which need (rows, heads, keys).
        names: measure names (keys of ``MEASURES``).
        labels: (n,) class label of each row, for the neural-collapse measures.
        input_ids: (n,) input (sequence) id of each row, for ``rank_collapse``; each input's rows contiguous.
        classifier: ``(W, b)`` with W (C, d) and b (C,), the last linear layer, for ``nc3`` / ``nc4``;
            labels must then be integers in [0, C).
        other: for ``layer_cosine``, a callable returning chunks of a second representation of the
            same rows, chunked exactly like ``chunks``.
        seed: seed of every random choice (row subsamples).
        max_rows: rows kept in the seeded subsample used by the neighbour estimators and ``nc4``.
        device: a ``torch.device`` for the covariance accumulation, its eigenvalues and the kNN search
            (see :mod:`neurometry.measures.accumulators`); None: the CPU.
        **params: measure parameters (see each ``MEASURES[name].params``), e.g. ``n_neighbors=20``.

    Returns:
        ``{name: MeasureResult}`` in the order asked.

    Raises:
        NeurometryError: unknown measure or parameter, missing labels/ids/classifier, bad shapes,
            NaN or Inf (naming the row), too few rows or classes, covariance measures on more than
            8192 features.
    """
    measures, per_params, merged = _resolve(names, params)
    needs = list(dict.fromkeys(n for m in measures for n in m.needs))
    if int(max_rows) < 3:
        raise NeurometryError(f"max_rows (--max-rows) must be at least 3, got {max_rows}")
    ctx = Context(params=merged, seed=int(seed), max_rows=int(max_rows), device=device)
    ctx.knn_k = max(2, int(merged.get("n_neighbors", 2)))

    def require(what: str, given: Any, need: str) -> None:
        if need in needs and given is None:
            users = ", ".join(m.name for m in measures if need in m.needs)
            raise NeurometryError(f"{users} need{'s' if ',' not in users else ''} {what}")

    require("labels (one class label per row): --label COLUMN on the command line, labels= in Python", labels,
            "class_moments")
    require(
        "input ids (which input each row belongs to); pass input_ids= or a list of (T, d) matrices",
        input_ids,
        "groups",
    )
    require("a second representation of the same rows; pass other=", other, "pair")
    if any(m.name == "nc3" for m in measures) and classifier is None:
        raise NeurometryError(
            "nc3 needs the classifier weights; pass classifier=(W, b) with W shaped (classes, features)"
        )
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim != 1:
            raise NeurometryError(f"labels must be 1-D (one per row), got shape {labels.shape}")
        classes, codes = np.unique(labels, return_inverse=True)
        ctx.classes, ctx.labels = classes, codes.astype(np.int64)
    if input_ids is not None:
        input_ids = np.asarray(input_ids)
        if input_ids.ndim != 1:
            raise NeurometryError(f"input_ids must be 1-D (one per row), got shape {input_ids.shape}")
        ctx.input_ids = input_ids
    if classifier is not None:
        classifier = _check_classifier(classifier, ctx.classes)
        ctx.classifier = classifier

    accs: dict[str, Any] = {}
    feat: tuple[int, ...] | None = None
    start = 0
    others = iter(other()) if (other is not None and "pair" in needs) else None
    for chunk in chunks():
        x = check_chunk(chunk, start, feat)
        y = None
        if others is not None:
            nxt = next(others, None)
            if nxt is None:
                raise NeurometryError(
                    "the second stream has fewer rows than the first; pass the same rows for both"
                )
            y = check_chunk(nxt, start, None)
            if y.shape[0] != x.shape[0] or y[:1].size != x[:1].size:
                raise NeurometryError(
                    f"the second stream's chunk at row {start} is {y.shape}, the first {x.shape}; "
                    "pass the same rows with the same width, chunked alike"
                )
        if feat is None:
            feat = x.shape[1:]
            _check_features(int(np.prod(feat)), measures)
            accs = {n: ACCUMULATORS[n](ctx) for n in needs}
        if len(x) == 0:
            continue
        _check_aligned(start + len(x), labels, input_ids)
        block_rows = max(1, BLOCK_BYTES // (8 * max(1, int(np.prod(feat)))))
        for lo, xb in _blocks(x, block_rows):
            b = Block(xb, start + lo, ctx, None if y is None else y[lo : lo + len(xb)])
            if ctx.shift is None:
                ctx.shift = b.f64.mean(0)
            for acc in accs.values():
                acc.update(b)
        start += len(x)
    if start == 0:
        raise NeurometryError("no rows to measure: the activations are empty; record some inputs first")
    if others is not None and next(others, None) is not None:
        raise NeurometryError("the second stream has more rows than the first; pass the same rows for both")
    for what, arr in (("labels", labels), ("input_ids", input_ids)):
        if arr is not None and len(arr) != start:
            raise NeurometryError(
                f"{what} has {len(arr)} entries but the activations have {start} rows; pass one per row"
            )

    states = {n: acc.finalize() for n, acc in accs.items()}
    out: dict[str, MeasureResult] = {}
    for m in measures:
        r = m.compute({n: states[n] for n in m.needs}, {**per_params[m.name], "_ctx": ctx})
        out[m.name] = dataclasses.replace(r, name=m.name, params=per_params[m.name], n_rows=start)
    return out


def _check_features(f: int, measures: list[Any]) -> None:
    quad = [m.name for m in measures if any(ACCUMULATORS[n].quadratic for n in m.needs)]
    if quad and f > MAX_COV_FEATURES:
        raise NeurometryError(
            f"{', '.join(quad)} need a {f} x {f} covariance ({f} features > {MAX_COV_FEATURES}); "
            "store a spatially averaged point (--reduce mean) or measure fewer features"
        )


def _check_aligned(rows: int, labels: np.ndarray | None, input_ids: np.ndarray | None) -> None:
    for what, arr in (("labels", labels), ("input_ids", input_ids)):
        if arr is not None and len(arr) < rows:
            raise NeurometryError(
                f"{what} has {len(arr)} entries but the activations have more rows; pass one per row"
            )


def _check_classifier(classifier: Any, classes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    try:
        w, b = classifier
    except (TypeError, ValueError):
        raise NeurometryError(
            "classifier must be a pair (W, b): W shaped (classes, features), b shaped (classes,)"
        ) from None
    w = np.asarray(w, dtype=np.float64)
    b = np.zeros(len(w)) if b is None else np.asarray(b, dtype=np.float64)
    if w.ndim != 2 or b.shape != (len(w),):
        raise NeurometryError(
            f"classifier W must be (classes, features) and b (classes,), got {w.shape} and {b.shape}; "
            "pass the last linear layer's weight and bias"
        )
    if not (np.isfinite(w).all() and np.isfinite(b).all()):
        raise NeurometryError("the classifier weights contain NaN or Inf; pass a trained classifier")
    if classes is not None:
        if classes.dtype.kind not in "iu" or classes.min() < 0 or classes.max() >= len(w):
            raise NeurometryError(
                f"with a classifier of {len(w)} classes the labels must be integers in [0, {len(w)}); "
                "map the labels to the classifier's output indices"
            )
    return w, b


def run_one(name: str, x: Any, **kwargs: Any) -> MeasureResult:
    """One measure on an in-memory array ``x`` (rows, *feat): ``run_measures`` over a single chunk."""
    return run_measures(lambda: [x], [name], **kwargs)[name]
