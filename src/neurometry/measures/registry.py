"""The measure registry: every measure by its public name, and the result type they all return.

A measure is a pure function of finalised accumulator states (see ``accumulators.py``): it names the
accumulators it ``needs``, and ``run_measures`` feeds exactly those while reading the chunks once.
A new measure plugs in with the :func:`register` decorator; the name is the one used by the CLI and
in JSON output.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neurometry.errors import NeurometryError, did_you_mean


@dataclass(frozen=True)
class MeasureResult:
    """What every measure returns.

    Attributes:
        name: the measure's public name (``"effective_rank"``, ...).
        value: the headline number (always finite).
        fields: extra, measure-specific outputs (per-unit or per-head arrays, dims, row index, ...).
        params: the parameters the value was computed with (defaults filled in).
        n_rows: how many rows (samples, tokens) the measure saw in total.
        note: how the value was obtained when that is not the obvious way (e.g. "subsampled 20000 of
            1000000 rows (seed 0)"); empty otherwise.
    """

    name: str
    value: float
    fields: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    n_rows: int = 0
    note: str = ""

    def __float__(self) -> float:
        return float(self.value)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: arrays become lists, NaN becomes None."""
        return {
            "name": self.name,
            "value": _jsonable(self.value),
            "fields": {k: _jsonable(v) for k, v in self.fields.items()},
            "params": {k: _jsonable(v) for k, v in self.params.items()},
            "n_rows": self.n_rows,
            "note": self.note,
        }


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return [_jsonable(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


Compute = Callable[[Mapping[str, Any], Mapping[str, Any]], MeasureResult]


@dataclass(frozen=True)
class Measure:
    """One registered measure.

    Attributes:
        name: public name (CLI and JSON).
        kind: family: "spectrum", "neighbours", "geometry", "tokens", "labels", "neurons", "attention".
        needs: accumulator names (keys of ``accumulators.ACCUMULATORS``) the measure reads.
        compute: ``compute(states, params) -> MeasureResult``; ``states`` maps each needed accumulator
            name to its finalised state, ``params`` holds this measure's parameters.
        doc: one line for listings.
        params: the measure's parameters and their defaults (keyword arguments of ``run_measures``).
    """

    name: str
    kind: str
    needs: tuple[str, ...]
    compute: Compute
    doc: str
    params: Mapping[str, Any] = field(default_factory=dict)


MEASURES: dict[str, Measure] = {}


def register(
    name: str, kind: str, needs: tuple[str, ...], doc: str, params: Mapping[str, Any] | None = None
) -> Callable[[Compute], Compute]:
    """Decorator adding ``compute`` to :data:`MEASURES` under ``name``."""

    def deco(compute: Compute) -> Compute:
        if name in MEASURES:
            raise ValueError(f"measure {name!r} registered twice")
        MEASURES[name] = Measure(name, kind, tuple(needs), compute, doc, dict(params or {}))
        return compute

    return deco


def get_measure(name: str) -> Measure:
    """The measure called ``name``; a NeurometryError naming close matches otherwise."""
    try:
        return MEASURES[name]
    except KeyError:
        raise NeurometryError(
            f"unknown measure {name!r}{did_you_mean(name, MEASURES)}; the measures are: {', '.join(sorted(MEASURES))}"
        ) from None


def result(value: float, note: str = "", **fields: Any) -> MeasureResult:
    """Build a result inside a compute function (``run_measures`` fills in name, params and n_rows)."""
    value = float(value)
    if not math.isfinite(value):
        raise NeurometryError(
            f"the measure came out as {value}: the input is degenerate (constant, duplicated or empty data); check the rows"
        )
    return MeasureResult(name="", value=value, fields=fields, note=note)
