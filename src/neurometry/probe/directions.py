"""Directions in activation space that separate two classes, and their file format.

:func:`direction` returns a unit vector (d,) pointing from the negative class to the positive class:

- ``"mean_difference"``: mu_pos - mu_neg, the difference of the class means (the "diff-in-means"
  direction of steering work, e.g. Marks & Tegmark 2023).
- ``"lda"``: Fisher's linear discriminant, Sigma_w^-1 (mu_pos - mu_neg), with the pooled within-class
  covariance Sigma_w (each row centred on its class mean, divided by n: scikit-learn's
  ``LinearDiscriminantAnalysis`` with class priors n_k / n) shrunk towards a multiple of the identity,
  (1 - lambda) Sigma_w + lambda (trace(Sigma_w) / d) I, so it exists when rows are fewer than features.
  ``shrinkage="auto"`` takes lambda from the Ledoit-Wolf formula (Ledoit & Wolf 2004) on the pooled
  class-centred rows; a number in [0, 1] fixes it (with a fixed lambda the direction is that of
  ``LinearDiscriminantAnalysis(solver="lsqr", shrinkage=lambda).coef_``; its ``"auto"`` differs,
  applying Ledoit-Wolf per class on standardised features).
- ``"probe"``: the weights of an L2 logistic regression (scikit-learn's ``LogisticRegression``) fitted
  on standardised activations, mapped back to activation units (divided by each feature's standard
  deviation), so projecting raw activations on it is the probe's logit up to a constant.

``device=`` (a ``torch.device``; None is the CPU) moves LDA's float64 linear algebra there (the Gram or
covariance matrix, the Ledoit-Wolf sums, the solve); class means and the probe's scikit-learn fit stay
on the CPU.

The positive class defaults to the larger of the two label values (sorted as ``numpy.unique`` sorts:
"positive" over "negative", 1 over 0, "present" over "past"), which is scikit-learn's ``classes_[1]``.
The positive class projects higher on average: for mean difference and LDA by construction
((mu_pos - mu_neg)^T Sigma^-1 (mu_pos - mu_neg) > 0); the probe's direction is the one along which its
logit for the positive class grows, which on separable-in-the-mean data is the same side.

File format (what :func:`save_direction` writes and :func:`load_direction` and the steering stage read):

- ``<name>.safetensors``: one tensor, ``direction``, float32, shape (d,). No pickle.
- ``<name>.json`` beside it (same stem): an object with ``format`` ("neurometry.direction"),
  ``version`` (1), ``model``, ``point`` (the hook point the direction lives in), ``method``, ``dim``
  (d), ``norm`` (the Euclidean norm of the stored vector; 1 for :func:`direction`'s output),
  ``created`` (ISO 8601, UTC), ``tensor`` ("direction") and any extra keys given to
  :func:`save_direction` (e.g. ``label`` column, ``classes``, ``positive``, ``n_rows``).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurometry.arrays import as_rows, check_same_rows
from neurometry.errors import NeurometryError, did_you_mean
from neurometry.files import read_safetensors
from neurometry.linalg import as_tensor

METHODS = ("mean_difference", "lda", "probe")
FORMAT = "neurometry.direction"
VERSION = 1
RESERVED = ("format", "version", "model", "point", "method", "dim", "norm", "created", "tensor")


def _positive_rows(y: Any, n: int, positive: Any) -> np.ndarray:
    """Boolean mask (n,) of the rows of the positive class; the labels must take exactly two values."""
    labels = np.asarray(y).reshape(-1)
    check_same_rows(range(n), labels, "arrays (x and labels)")
    if labels.dtype.kind == "f" and np.isnan(labels).any():
        raise NeurometryError(f"{int(np.isnan(labels).sum())} labels are NaN; remove those rows or fill them")
    classes = np.unique(labels)
    plain = [c.item() if isinstance(c, np.generic) else c for c in classes[:5]]  # repr without np.str_
    if len(classes) != 2:
        shown = ", ".join(repr(c) for c in plain)
        raise NeurometryError(
            f"a direction separates exactly two classes, but the labels have {len(classes)} "
            f"({shown}{', ...' if len(classes) > 5 else ''}); select the rows of two classes"
        )
    if positive is None:
        positive = classes[1]
    elif not np.any(classes == positive):
        raise NeurometryError(
            f"positive={positive!r} is not one of the label values {plain[0]!r}, {plain[1]!r}"
        )
    return labels == positive


def _unit(v: np.ndarray, method: str) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm == 0.0:
        raise NeurometryError(
            f"the {method} direction is zero: the two classes have the same mean activation; "
            "check the labels or use another point"
        )
    return v / norm


def ledoit_wolf_shrinkage(centred: np.ndarray, device: torch.device | None = None) -> float:
    """Ledoit-Wolf (2004) shrinkage of the covariance of ``centred`` rows (n, d) towards (trace / d) I.

    The formula of scikit-learn's ``ledoit_wolf_shrinkage(X, assume_centered=True)``, computed with
    the smaller of the two Gram matrices (X^T X or X X^T have the same Frobenius norm) through torch,
    on ``device`` when given. One feature gives 0, as scikit-learn's does (S is then its own target).
    """
    n, d = centred.shape
    if d == 1:
        return 0.0
    x = as_tensor(np.ascontiguousarray(centred))
    if device is not None:
        x = x.to(device, non_blocking=True)
    gram = x.T @ x if d <= n else x @ x.T
    squared_norms = (x * x).sum(dim=1)
    mu = float(squared_norms.sum()) / (n * d)  # trace(S) / d with S = X^T X / n
    frobenius = float((gram * gram).sum()) / n**2  # ||S||_F^2
    delta = (frobenius - 2.0 * mu * mu * d + d * mu * mu) / d  # ||S - mu I||_F^2 / d
    beta = (float((squared_norms**2).sum()) / n - frobenius) / (n * d)
    beta = min(beta, delta)
    return 0.0 if beta <= 0.0 else beta / delta


def _lda(
    x: np.ndarray,
    is_positive: np.ndarray,
    difference: np.ndarray,
    shrinkage: Any,
    device: torch.device | None,
) -> np.ndarray:
    centred = x.copy()
    centred[is_positive] -= x[is_positive].mean(axis=0)
    centred[~is_positive] -= x[~is_positive].mean(axis=0)
    n, d = centred.shape
    if isinstance(shrinkage, str):
        if shrinkage != "auto":
            raise NeurometryError(f"shrinkage must be 'auto' or a number in [0, 1], got {shrinkage!r}")
        amount = ledoit_wolf_shrinkage(centred, device)
    else:
        try:
            amount = float(shrinkage)
        except (TypeError, ValueError):
            raise NeurometryError(
                f"shrinkage must be 'auto' or a number in [0, 1], got {shrinkage!r}"
            ) from None
        if not 0.0 <= amount <= 1.0:
            raise NeurometryError(f"shrinkage must be 'auto' or a number in [0, 1], got {shrinkage!r}")
    rows = as_tensor(centred)
    delta = as_tensor(difference.copy())
    if device is not None:
        rows, delta = rows.to(device, non_blocking=True), delta.to(device, non_blocking=True)
    target = float((rows * rows).sum()) / (n * d)  # trace(Sigma_w) / d
    if target == 0.0:
        raise NeurometryError(
            "every row equals its class mean, so the within-class covariance is zero; LDA is undefined"
        )
    scatter_weight, ridge = (1.0 - amount) / n, amount * target  # Sigma = scatter_weight X^T X + ridge I
    if ridge == 0.0:
        # no shrinkage: Sigma_w itself must be invertible (its rank is at most n - 2)
        eig, vectors = torch.linalg.eigh(scatter_weight * (rows.T @ rows))
        if float(eig[0]) <= max(n, d) * np.finfo(np.float64).eps * float(eig[-1]):
            raise NeurometryError(
                f"the within-class covariance of {n} rows and {d} features is singular; "
                "use shrinkage='auto' or > 0"
            )
        return (vectors @ ((vectors.T @ delta) / eig)).cpu().numpy()
    if d <= n:
        identity = torch.eye(d, dtype=torch.float64, device=rows.device)
        sigma = scatter_weight * (rows.T @ rows) + ridge * identity
        return torch.linalg.solve(sigma, delta).cpu().numpy()
    if scatter_weight == 0.0:
        return difference  # lambda = 1: Sigma is a multiple of the identity
    # Woodbury with the n x n Gram matrix: (a X^T X + b I)^-1 = (I - X^T (b/a I + X X^T)^-1 X) / b
    inner = rows @ rows.T + (ridge / scatter_weight) * torch.eye(n, dtype=torch.float64, device=rows.device)
    return ((delta - rows.T @ torch.linalg.solve(inner, rows @ delta)) / ridge).cpu().numpy()


def _probe(x: np.ndarray, is_positive: np.ndarray, c: float) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=c, max_iter=1000).fit(scaler.transform(x), is_positive.astype(np.int64))
    # logit = w . (x - mean) / scale + b = (w / scale) . x + const: the weights in activation units
    return model.coef_[0] / scaler.scale_


def direction(
    x: Any,
    y: Any,
    method: str = "mean_difference",
    *,
    positive: Any = None,
    shrinkage: float | str = "auto",
    c: float = 1.0,
    device: torch.device | None = None,
) -> np.ndarray:
    """Unit vector in activation space pointing from the negative to the positive class.

    Args:
        x: (n_rows, d) activations.
        y: (n_rows,) labels with exactly two distinct values.
        method: ``"mean_difference"``, ``"lda"`` or ``"probe"`` (see the module docstring).
        positive: the label the direction points to; default the larger of the two values.
        shrinkage: LDA only: ``"auto"`` (Ledoit-Wolf) or a number in [0, 1] (0: no shrinkage, needs
            more rows than features).
        c: probe only: the inverse L2 penalty of the logistic regression (its ``C``) on standardised
            activations.
        device: LDA only: a ``torch.device`` for its linear algebra (the others run on the CPU);
            None: the CPU.

    Returns:
        (d,) float64 unit vector; the positive class projects higher.
    """
    if method not in METHODS:
        raise NeurometryError(
            f"unknown direction method {method!r}{did_you_mean(str(method), METHODS)}; "
            f"choose one of {', '.join(METHODS)}"
        )
    x = as_rows(x, "x")
    is_positive = _positive_rows(y, len(x), positive)
    difference = x[is_positive].mean(axis=0) - x[~is_positive].mean(axis=0)
    if method == "mean_difference":
        return _unit(difference, method)
    if method == "lda":
        return _unit(_lda(x, is_positive, difference, shrinkage, device), method)
    if isinstance(c, bool) or not isinstance(c, (int, float, np.number)) or not np.isfinite(c) or c <= 0:
        raise NeurometryError(f"c must be a positive number (the inverse penalty), got {c!r}")
    return _unit(_probe(x, is_positive, float(c)), method)


def _json_ready(value: Any, key: str) -> Any:
    """``value`` with NumPy scalars and arrays turned into plain Python; other types must be JSON's."""
    if isinstance(value, np.ndarray):
        return [_json_ready(v, key) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_json_ready(v, key) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_ready(v, key) for k, v in value.items()}
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise NeurometryError(f"metadata {key}={value!r} is not JSON (str, number, bool, list, dict)")


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def save_direction(path: Any, vector: Any, *, model: str, point: str, method: str, **extra: Any) -> Path:
    """Write ``vector`` as ``<path>`` (safetensors, tensor ``direction``, float32) and ``<stem>.json``.

    The format is in the module docstring. ``extra`` keys (e.g. ``label="sentiment"``,
    ``classes=["negative", "positive"]``) go into the JSON; they must not reuse a standard key.

    Returns:
        the path of the safetensors file.
    """
    from safetensors.numpy import save_file

    path = Path(path)
    if path.suffix == ".json":
        raise NeurometryError(f"{path} ends in .json; give the .safetensors path (the JSON goes beside it)")
    values = np.asarray(vector)
    if values.dtype.kind not in "fiu" or values.ndim != 1 or values.size == 0:
        raise NeurometryError(
            f"a direction must be a non-empty 1-D array of numbers, got shape {values.shape}, dtype {values.dtype}"
        )
    values = values.astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise NeurometryError("the direction contains NaN or Inf (or overflows float32); it cannot be saved")
    clash = sorted(set(extra) & set(RESERVED))
    if clash:
        raise NeurometryError(f"extra metadata reuses the standard keys {', '.join(clash)}; rename them")
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "model": str(model),
        "point": str(point),
        "method": str(method),
        "dim": int(values.size),
        "norm": float(np.linalg.norm(values.astype(np.float64))),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tensor": "direction",
    }
    metadata.update({key: _json_ready(value, key) for key, value in extra.items()})
    text = json.dumps(metadata, indent=2, allow_nan=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"direction": np.ascontiguousarray(values)}, str(path))
    _sidecar(path).write_text(text + "\n")
    return path


def load_direction(path: Any) -> tuple[np.ndarray, dict]:
    """Read a direction written by :func:`save_direction`: (float32 vector (d,), metadata dict).

    ``path`` is the ``.safetensors`` file (its ``.json`` sidecar is found beside it). Raises
    NeurometryError when either file is missing or malformed, or they disagree on the dimension.
    """

    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    sidecar = _sidecar(path)
    if not path.is_file():
        raise NeurometryError(
            f"direction file {path} does not exist; give the .safetensors written by save_direction"
        )
    if not sidecar.is_file():
        raise NeurometryError(f"direction metadata {sidecar} does not exist; it must sit beside {path.name}")
    tensors = read_safetensors(path)
    if "direction" not in tensors:
        raise NeurometryError(f"{path} has no tensor 'direction' (it has {', '.join(tensors) or 'none'})")
    vector = tensors["direction"]
    if vector.ndim != 1:
        raise NeurometryError(f"{path}: tensor 'direction' has shape {vector.shape}; a direction is 1-D")
    try:
        metadata = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NeurometryError(f"{sidecar} is not valid JSON ({error})") from None
    if not isinstance(metadata, dict):
        raise NeurometryError(f"{sidecar} must hold a JSON object with model, point, method and dim")
    missing = [key for key in ("model", "point", "method", "dim") if key not in metadata]
    if missing:
        raise NeurometryError(f"{sidecar} lacks {', '.join(missing)}; save the direction with save_direction")
    if metadata["dim"] != vector.size:
        raise NeurometryError(
            f"{sidecar} says dim {metadata['dim']} but {path.name} holds {vector.size} values; the pair does not match"
        )
    return vector.astype(np.float32, copy=False), metadata
