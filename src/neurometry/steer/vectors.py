"""Steering vectors from contrastive prompts or labelled activations, and their file format.

A steering vector lives in the space of one hook point (e.g. ``resid.12``, shape (d,)) and is added
to that point's tensor by :func:`neurometry.steer.interventions.apply`. Three ways to build it from
paired prompts (positive_i, negative_i), each read at one token position (the last real token by
default, as steering-vectors and repeng do):

- ``"mean_diff"``: mean(pos) - mean(neg), NOT normalised (steering-vectors' ``mean_aggregator`` and
  the "diff-in-means" / ActAdd-style vectors keep the raw scale, so alpha = 1 adds one mean
  difference; Turner et al. 2023, Rimsky et al. 2024).
- ``"pca"``: the first principal component of the paired differences pos_i - neg_i (representation
  reading, Zou et al. 2023). The differences are CENTRED before the PCA, as repeng's ``pca_diff``
  does (it fits ``sklearn.decomposition.PCA``, which subtracts the mean; steering-vectors'
  ``pca_aggregator`` instead runs an uncentred PCA). The sign is chosen so that the mean difference
  projects positively on it (repeng uses a majority vote of per-pair comparisons; the two agree
  unless the pairs disagree), and the unit component u is scaled by that mean projection,
  ``u * mean_i((pos_i - neg_i) . u)``, so alpha has the same meaning as for ``mean_diff`` along u.
- ``"logistic"``: the direction of an L2 logistic-regression probe separating the positive from the
  negative activations (:func:`neurometry.probe.directions.direction` with method ``"probe"``),
  rescaled to the Euclidean norm of the ``mean_diff`` vector of the same activations.

File format: :func:`save_vector` / :func:`load_vector` wrap the direction format of
:mod:`neurometry.probe.directions` (safetensors tensor ``direction`` + JSON beside it). The vector
is stored as given (not normalised); the JSON records ``norm`` and the extra keys ``position`` and
``kind`` ("steering_vector").
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch

from neurometry.arrays import as_rows, check_same_rows
from neurometry.errors import NeurometryError, did_you_mean
from neurometry.models.devices import inputs_to
from neurometry.models.hooks import capture
from neurometry.models.loaded import LoadedModel, is_hf_model
from neurometry.steer.precision import check_finite

METHODS = ("mean_diff", "pca", "logistic")
POSITION_NAMES = ("last", "first", "mean")


def _check_position(position: int | str) -> None:
    if isinstance(position, str):
        if position not in POSITION_NAMES:
            raise NeurometryError(
                f"unknown position {position!r}{did_you_mean(position, POSITION_NAMES)}; "
                f"give an int (token index, negative from the end) or one of {', '.join(POSITION_NAMES)}"
            )
    elif isinstance(position, bool) or not isinstance(position, (int, np.integer)):
        raise NeurometryError(
            f"position must be an int or one of {', '.join(POSITION_NAMES)}, got {position!r}"
        )


def _run_batch(model: LoadedModel, encoded: dict[str, torch.Tensor], point_name: str) -> torch.Tensor:
    """The point's tensor (batch, tokens, d) for one padded batch, run on the model's device in its dtype, with
    position ids that ignore padding."""
    point = model.resolve(point_name)[0]
    encoded = inputs_to(encoded, model.device)
    mask = encoded["attention_mask"]
    module = model.module
    kwargs: dict[str, Any] = {"input_ids": encoded["input_ids"], "attention_mask": mask}
    params = inspect.signature(module.forward).parameters
    if (
        is_hf_model(module)
        and "position_ids" in params
        and not getattr(module.config, "is_encoder_decoder", False)
    ):
        # Left padding would otherwise shift every real token's position by the pad count; counting
        # real tokens makes a padded row see the positions it sees alone (rotary and learned alike).
        kwargs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
        if "use_cache" in params:
            kwargs["use_cache"] = False

        def forward() -> Any:
            return module(**kwargs)
    else:

        def forward() -> Any:
            return model.forward(dict(encoded))

    _, captured = capture(model, encoded, [point], stop_early=True, run=forward)
    value = captured[point.name]
    if value.ndim != 3:
        raise NeurometryError(
            f"point {point_name!r} gives a tensor of shape {tuple(value.shape)}; steering needs a "
            "(batch, tokens, features) point such as resid.i, attn_out.i or mlp_act.i"
        )
    return value


def activations_at(
    model: LoadedModel,
    prompts: list[str],
    point: str,
    position: int | str = -1,
    batch_size: int = 16,
) -> np.ndarray:
    """The point's activation at one token position of each prompt.

    Args:
        model: a text ``LoadedModel``.
        prompts: n strings, tokenised with the model's tokenizer (special tokens as it adds them).
        point: a hook point with a (batch, tokens, d) tensor, e.g. ``"resid.12"``.
        position: index among each prompt's real tokens (padding is never counted): ``-1`` (default,
            also ``"last"``) the last token, ``0`` (``"first"``) the first, negative from the end;
            ``"mean"`` averages over the real tokens.
        batch_size: prompts per forward pass. Results do not depend on it, nor on the tokenizer's
            padding side, beyond float32 round-off (position ids are derived from the attention mask).

    The model runs where it is (``model.device``) in its dtype; the activations are read in float64 on
    the CPU, so a half-precision model's values are kept exactly and only averaged in float64.

    Returns:
        (n, d) float64 array.
    """
    if model.modality != "text" or model.tokenizer is None:
        raise NeurometryError(f"{model.name} is not a text model; steering vectors need token activations")
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise NeurometryError("prompts must be a list of strings")
    if len(prompts) == 0:
        raise NeurometryError("no prompts given; give at least one")
    if batch_size < 1:
        raise NeurometryError(f"batch_size must be >= 1, got {batch_size}")
    _check_position(position)
    model.resolve(point)  # unknown point: a clear error before any forward pass
    rows = []
    for lo in range(0, len(prompts), batch_size):
        chunk = list(prompts[lo : lo + batch_size])
        encoded = dict(model.tokenizer(chunk, return_tensors="pt", padding=True))
        # to the CPU first: float64 exists on every device there, and (batch, tokens, d) of one batch is small
        value = _run_batch(model, encoded, point).cpu().to(torch.float64)
        mask = encoded["attention_mask"].bool()
        for i, text in enumerate(chunk):
            real = torch.nonzero(mask[i]).flatten()  # real token indices, left or right padded alike
            if position == "mean":
                rows.append(value[i, real].mean(dim=0))
                continue
            index = (
                {"last": -1, "first": 0}.get(position, position) if isinstance(position, str) else position
            )
            if not -len(real) <= index < len(real):
                raise NeurometryError(
                    f"position {position} is outside prompt {lo + i} ({text[:40]!r}, {len(real)} tokens); "
                    "use a smaller position or -1 (the last token)"
                )
            rows.append(value[i, real[index]])
    out = torch.stack(rows).reshape(len(prompts), -1)
    check_finite(out, model, f"the activation at {point}")
    return out.numpy()


def vector_from_activations(pos: Any, neg: Any, method: str = "mean_diff") -> np.ndarray:
    """A steering vector (d,) from paired activations ``pos`` and ``neg`` (n, d) (see the module docstring).

    ``mean_diff`` and ``logistic`` do not need the rows to be paired (only the same width);
    ``pca`` pairs row i of ``pos`` with row i of ``neg``.
    """
    if method not in METHODS:
        raise NeurometryError(
            f"unknown steering method {method!r}{did_you_mean(str(method), METHODS)}; "
            f"choose one of {', '.join(METHODS)}"
        )
    pos = as_rows(pos, "positive activations", min_rows=1)
    neg = as_rows(neg, "negative activations", min_rows=1)
    if pos.shape[1] != neg.shape[1]:
        raise NeurometryError(
            f"positive and negative activations have {pos.shape[1]} and {neg.shape[1]} features; "
            "read them at the same point"
        )
    mean_diff = pos.mean(axis=0) - neg.mean(axis=0)
    if method == "mean_diff":
        return mean_diff
    if method == "pca":
        check_same_rows(pos, neg, "prompt lists (positive and negative, paired)")
        if len(pos) < 2:
            raise NeurometryError("pca needs at least 2 pairs (it centres the differences); give more pairs")
        diffs = pos - neg
        centred = torch.from_numpy(diffs - diffs.mean(axis=0))
        _, s, vh = torch.linalg.svd(centred, full_matrices=False)
        if float(s[0]) == 0.0:
            raise NeurometryError(
                "all paired differences are equal, so they have no principal component; use mean_diff"
            )
        unit = vh[0].numpy()
        scale = float(diffs.mean(axis=0) @ unit)
        if scale == 0.0:
            raise NeurometryError(
                "the mean difference is orthogonal to the first principal component; use mean_diff"
            )
        # sign aligned with the mean difference, length = the mean difference's projection
        return unit * scale
    from neurometry.probe.directions import direction

    x = np.concatenate([pos, neg])
    y = np.concatenate([np.ones(len(pos), dtype=np.int64), np.zeros(len(neg), dtype=np.int64)])
    if len(pos) < 2 or len(neg) < 2:
        raise NeurometryError("logistic needs at least 2 positive and 2 negative prompts; give more pairs")
    unit = direction(x, y, "probe", positive=1)
    return unit * float(np.linalg.norm(mean_diff))


def build_vector(
    model: LoadedModel,
    positives: list[str],
    negatives: list[str],
    point: str,
    method: str = "mean_diff",
    position: int | str = -1,
    batch_size: int = 16,
) -> np.ndarray:
    """A steering vector (d,) at ``point`` from contrastive prompts (see the module docstring).

    Args:
        model: a text ``LoadedModel``.
        positives, negatives: prompts of the two sides, paired by index (``pca`` needs equal lengths).
        point: hook point with a (batch, tokens, d) tensor, e.g. ``"resid.12"``.
        method: ``"mean_diff"`` (raw scale), ``"pca"`` (centred PCA of paired differences, scaled
            to the mean difference's projection) or ``"logistic"`` (probe direction, scaled to the
            mean difference's norm).
        position: token position read in each prompt (see :func:`activations_at`).

    Returns:
        (d,) float64 vector; positive activations project higher on it on average.
    """
    if method not in METHODS:
        raise NeurometryError(
            f"unknown steering method {method!r}{did_you_mean(str(method), METHODS)}; "
            f"choose one of {', '.join(METHODS)}"
        )
    if method == "pca" and len(positives) != len(negatives):
        raise NeurometryError(
            f"pca pairs the prompts but there are {len(positives)} positives and {len(negatives)} negatives"
        )
    pos = activations_at(model, list(positives), point, position, batch_size)
    neg = activations_at(model, list(negatives), point, position, batch_size)
    return vector_from_activations(pos, neg, method)


def build_from_store(
    store: Any, run: str | None, point: str, label_column: str, positive_value: Any
) -> np.ndarray:
    """Mean activation of the rows whose ``label_column`` equals ``positive_value`` minus that of the rest.

    Args:
        store: a store path or an open ``Store`` (``neurometry.open_store``).
        run: run id (None when the store holds one run).
        point: a recorded point; its rows are flattened to (rows, d).
        label_column: a column of the run's metadata (a column of the recorded data file).
        positive_value: the value marking the positive group; every other row is the negative group.

    Returns:
        (d,) float64 vector, not normalised (like ``mean_diff``).
    """
    from neurometry.store import open_store

    if not hasattr(store, "activations"):
        store = open_store(store)
    meta = store.metadata(run)
    if label_column not in meta.columns:
        raise NeurometryError(
            f"the run has no column {label_column!r}{did_you_mean(label_column, list(meta.columns))}; "
            f"columns: {', '.join(map(str, meta.columns))}"
        )
    x = as_rows(store.activations(point, run=run), f"activations of {point}")
    labels = meta[label_column].to_numpy()
    check_same_rows(x, labels, "tables (activations and metadata)")
    missing = int(meta[label_column].isna().sum())
    if missing:
        raise NeurometryError(f"{missing} rows have no {label_column!r} value; fill or drop them")
    is_positive = labels == positive_value
    n_pos = int(is_positive.sum())
    if n_pos == 0 or n_pos == len(labels):
        shown = ", ".join(repr(v) for v in list(dict.fromkeys(labels.tolist()))[:5])
        raise NeurometryError(
            f"{label_column}={positive_value!r} matches {n_pos} of {len(labels)} rows; "
            f"pick a value that splits them (values: {shown})"
        )
    return x[is_positive].mean(axis=0) - x[~is_positive].mean(axis=0)


def save_vector(
    path: Any, vector: Any, *, model: str, point: str, method: str, position: int | str, **extra: Any
) -> Any:
    """Write a steering vector with :func:`neurometry.probe.directions.save_direction` (not normalised).

    The JSON gets ``position`` and ``kind="steering_vector"`` besides the standard keys (``norm``
    included). Returns the safetensors path.
    """
    from neurometry.probe.directions import save_direction

    if position != "all":  # "all": applies at every token (SAE features, token-level store vectors)
        _check_position(position)
    position = int(position) if not isinstance(position, str) else position
    return save_direction(
        path,
        vector,
        model=model,
        point=point,
        method=method,
        position=position,
        kind="steering_vector",
        **extra,
    )


def load_vector(path: Any) -> tuple[np.ndarray, dict]:
    """Read a vector written by :func:`save_vector` (or any direction file): (float32 (d,), metadata)."""
    from neurometry.probe.directions import load_direction

    return load_direction(path)
