"""``describe_points``: every alias of a model with its module, kind and per-example shape."""

from __future__ import annotations

from neurometry.models.loaded import LoadedModel
from neurometry.models.probe import probe_points


def _format(shape: tuple[int, ...], other: tuple[int, ...] | None) -> str:
    """Shape without the batch axis; axes that changed with the probe length shown as ``T``."""
    dims = []
    for k, n in enumerate(shape[1:], start=1):
        varies = other is not None and (len(other) != len(shape) or other[k] != n)
        dims.append("T" if varies else str(n))
    return " x ".join(dims) if dims else "scalar"


def describe_points(model: LoadedModel) -> list[dict]:
    """``[{"point", "module_path", "kind", "shape"}]`` for every alias, in depth order.

    Shapes come from probe forwards on one tiny example (text: two probes of 11 and 13
    tokens, so the sequence axis is found and shown as ``"T"``, e.g. ``"T x 384"``,
    ``"12 x T x T"``); the batch axis is dropped. Attention probabilities are switched on for
    the probe and restored afterwards.
    """
    points = list(model.points.values())
    was_enabled = model.attention_probs_enabled
    if any(p.kind == "attention" for p in points):
        model.enable_attention_probs()
    try:
        first = probe_points(model, points, length=11)
        second = probe_points(model, points, length=13) if model.modality == "text" else {}
    finally:
        if not was_enabled:
            model.enable_attention_probs(False)
    rows = []
    for p in points:
        shape = first.get(p.name)
        rows.append(
            {
                "point": p.name,
                "module_path": p.module_path,
                "kind": p.kind,
                "shape": _format(shape, second.get(p.name)) if shape is not None else "not run",
            }
        )
    return rows
