"""The metric registry: every representational-similarity metric by its public name.

A metric is split in two so that a layer x layer matrix does each per-representation step once:

- ``prepare(x, params) -> state``: everything that depends on one representation only (centring,
  Gram matrix, RDM and its ranks, whitening, orthonormal basis, neighbour lists). ``x`` is a float64
  array (n_stimuli, n_features), or an :class:`~neurometry.compare.rdm.RDM` for metrics that accept one.
- ``score(state_a, state_b, params) -> float``: the similarity of two prepared states of the same stimuli.
- ``take(state, rows, params) -> state``: the state of the stimuli ``rows`` (int array, in that order,
  repeats allowed): what permutation tests (rows of one side shuffled) and the bootstrap (rows drawn
  with replacement) need. Cheap where the state allows it (index a Gram matrix or an RDM), else it
  re-prepares from the rows it keeps.

A metric with ``on_device`` also takes ``prepare(x, params, device=...)`` (a ``torch.device``): its heavy
work then runs there with torch, and its ``score`` and ``take`` follow the state. The others always run on
the CPU.

A new metric plugs in with :func:`register`; its name is the one used by the CLI and in JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neurometry.errors import NeurometryError, did_you_mean

Params = Mapping[str, Any]


@dataclass(frozen=True)
class Metric:
    """One registered similarity metric.

    Attributes:
        name: public name (``"cka"``, ``"rsa"``, ...).
        summary: one line for ``--help`` and docs, with the source paper.
        prepare: ``prepare(x, params) -> state`` for one representation (see the module docstring).
        score: ``score(state_a, state_b, params) -> float``; finite, or a NeurometryError.
        take: ``take(state, rows, params) -> state`` restricted to / reordered by ``rows``.
        params: parameter names and their defaults.
        min_rows: fewest stimuli the metric accepts (checked before ``prepare``).
        accepts_rdm: True when ``prepare`` also takes a precomputed RDM (only ``rsa``).
        higher_is_similar: False for distances (procrustes), so a permutation test looks at the lower tail.
        on_device: True when ``prepare`` takes ``device=`` (cka, rsa, mutual_knn, cknna, cycle_knn).
    """

    name: str
    summary: str
    prepare: Callable[[Any, Params], Any]
    score: Callable[[Any, Any, Params], float]
    take: Callable[[Any, np.ndarray, Params], Any]
    params: dict[str, Any] = field(default_factory=dict)
    min_rows: int = 3
    accepts_rdm: bool = False
    higher_is_similar: bool = True
    on_device: bool = False

    def resolve(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``params``; an unknown name is an error naming the known ones."""
        unknown = sorted(k for k in params if k not in self.params)
        if unknown:
            raise NeurometryError(
                f"unknown parameter {unknown[0]!r} for metric {self.name}"
                f"{did_you_mean(unknown[0], self.params)}; its parameters are: {', '.join(sorted(self.params)) or 'none'}"
            )
        return {**self.params, **params}


METRICS: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Add ``metric`` to :data:`METRICS` under its name (each name once)."""
    if metric.name in METRICS:
        raise ValueError(f"metric {metric.name!r} is registered twice")
    METRICS[metric.name] = metric
    return metric


def get_metric(name: str) -> Metric:
    """The registered metric called ``name``; an unknown name is an error listing the known ones."""
    _load_all()
    try:
        return METRICS[name]
    except KeyError:
        raise NeurometryError(
            f"unknown metric {name!r}{did_you_mean(name, METRICS)}; known metrics: {', '.join(sorted(METRICS))}"
        ) from None


def _load_all() -> None:
    # the metric modules register themselves on import
    from neurometry.compare import (  # noqa: F401
        canonical,
        kernel_alignment,
        neighbours,
        predictivity,
        rdm_comparison,
        shape,
    )
