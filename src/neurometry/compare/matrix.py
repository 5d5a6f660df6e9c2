"""``compare`` and ``compare_matrix``: any registered metric between representations, with statistics.

A layer x layer matrix prepares each representation once (``Metric.prepare``) and scores every pair
from the prepared states, so per-layer work (centring, Gram matrices, RDMs, ranks, whitening) is never
repeated per pair.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from neurometry.arrays import as_rows
from neurometry.compare.rdm import RDM
from neurometry.compare.registry import Metric, get_metric
from neurometry.compare.stats import bootstrap_draws, bootstrap_interval, permutation_orders, permutation_test
from neurometry.errors import NeurometryError


@dataclass(frozen=True)
class CompareResult:
    """One comparison. Statistics not asked for are None.

    Attributes:
        point_a, point_b: names of the two representations.
        metric: the metric's public name; ``value`` its score (finite).
        p_value, null_mean: permutation test over stimulus rows (one-sided towards similarity).
        ci_low, ci_high: bootstrap percentile interval over stimuli.
        params: the metric parameters used (defaults filled in); n_stimuli: rows compared.
    """

    point_a: str
    point_b: str
    metric: str
    value: float
    p_value: float | None = None
    null_mean: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n_stimuli: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _n_stimuli(x: Any) -> int:
    return x.n_conditions if isinstance(x, RDM) else len(x)


def prepare_all(
    metric: Metric,
    reps: Mapping[str, Any],
    params: Mapping[str, Any],
    side: str,
    progress: bool = False,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """``{name: metric.prepare(rows)}`` after validating each representation (arrays or RDMs); with
    ``device``, a metric that has a device path prepares there (the others ignore it)."""
    if device is not None and metric.on_device:
        prepare = functools.partial(metric.prepare, device=device)
    else:
        prepare = metric.prepare
    states = {}
    for name, x in tqdm(
        reps.items(),
        desc=f"prepare {side}",
        unit="point",
        file=sys.stderr,
        disable=not progress or len(reps) < 2,
        delay=1.0,
    ):
        if isinstance(x, RDM):
            if not metric.accepts_rdm:
                raise NeurometryError(
                    f"{name} is a precomputed RDM; metric {metric.name} needs activations (stimuli x features); "
                    "use --metric rsa"
                )
            if x.n_conditions < metric.min_rows:
                raise NeurometryError(
                    f"{name} has {x.n_conditions} conditions; {metric.name} needs at least {metric.min_rows}"
                )
            states[name] = prepare(x, params)
        else:
            states[name] = prepare(as_rows(x, name, metric.min_rows), params)
    return states


def compare_matrix(
    a: Mapping[str, Any],
    b: Mapping[str, Any] | None = None,
    metric: str = "cka",
    *,
    permutations: int = 0,
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
    progress: bool = False,
    device: torch.device | None = None,
    **params: Any,
) -> list[CompareResult]:
    """Every representation of ``a`` against every one of ``b`` (``a`` against itself when b is None).

    Args:
        a, b: ``{name: representation}``; a representation is an array (n_stimuli, n_features) or,
            for ``rsa``, an :class:`RDM`. All must describe the same n stimuli in the same order.
        metric: a name in ``METRICS`` (cka, rsa, procrustes, permutation, cca, svcca, pwcca,
            mutual_knn, cknna, cycle_knn, linear_predictivity).
        permutations: if > 0, a permutation test per pair (B's stimuli shuffled), same seeded orders for every pair.
        bootstrap: if > 0, that many stimulus resamples per pair for a percentile interval at ``confidence``.
        seed: seeds the permutations and resamples.
        device: a ``torch.device`` for the metrics with a device path (cka, rsa, mutual_knn, cknna,
            cycle_knn: Gram and cross-covariance products, RDMs, neighbour searches); None, or a metric
            without one: NumPy on the CPU.
        **params: the metric's parameters (see ``METRICS[metric].params``).

    Returns:
        One :class:`CompareResult` per pair, a-major (``len(a) * len(b)`` of them).
    """
    m = get_metric(metric)
    p = m.resolve(params)
    if not a:
        raise NeurometryError("nothing to compare: the first side has no representations")
    b_given = b is not None
    b = b if b_given else a
    if not b:
        raise NeurometryError("nothing to compare: the second side has no representations")
    sizes = {(side, name): _n_stimuli(x) for side, reps in (("A", a), ("B", b)) for name, x in reps.items()}
    if len(set(sizes.values())) > 1:
        shown = ", ".join(f"{side}:{name} {n}" for (side, name), n in list(sizes.items())[:6])
        raise NeurometryError(
            f"the representations describe different numbers of stimuli ({shown}); compare responses to the same stimuli"
        )
    n = next(iter(sizes.values()))
    states_a = prepare_all(m, a, p, "A", progress, device)
    states_b = prepare_all(m, b, p, "B", progress, device) if b_given else states_a
    orders = permutation_orders(n, permutations, seed) if permutations else None
    draws = bootstrap_draws(n, bootstrap, seed) if bootstrap else None
    results = []
    pairs = [(na, nb) for na in a for nb in b]
    for na, nb in tqdm(
        pairs,
        desc=f"{metric}",
        unit="pair",
        file=sys.stderr,
        disable=not progress or len(pairs) < 2,
        delay=1.0,
    ):
        value = float(m.score(states_a[na], states_b[nb], p))
        if not math.isfinite(value):
            raise NeurometryError(f"{metric} of {na} and {nb} is not a number; check those representations")
        stats: dict[str, Any] = {}
        if orders is not None:
            perm = permutation_test(m, states_a[na], states_b[nb], value, orders, p)
            stats.update(p_value=perm.p_value, null_mean=perm.null_mean)
        note = ""
        if draws is not None:
            boot = bootstrap_interval(m, states_a[na], states_b[nb], draws, p, confidence)
            stats.update(ci_low=boot.ci_low, ci_high=boot.ci_high)
            if boot.failed:
                note = f"{boot.failed} of {len(draws)} bootstrap draws skipped"
        results.append(
            CompareResult(na, nb, metric, value, n_stimuli=n, params=_plain(p), note=note, **stats)
        )
    return results


def compare(
    x: Any,
    y: Any,
    metric: str = "cka",
    *,
    permutations: int = 0,
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
    device: torch.device | None = None,
    **params: Any,
) -> CompareResult:
    """One comparison of x and y (arrays (n, d1) and (n, d2) of the same stimuli, or RDMs for rsa);
    ``device`` as in :func:`compare_matrix`."""
    return compare_matrix(
        {"a": x},
        {"b": y},
        metric,
        permutations=permutations,
        bootstrap=bootstrap,
        confidence=confidence,
        seed=seed,
        device=device,
        **params,
    )[0]


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as JSON-ready values (tuples and arrays become lists)."""
    out = {}
    for k, v in params.items():
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, tuple):
            v = list(v)
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out
