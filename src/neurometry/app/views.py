"""What the dashboard shows, as JSON-ready dicts read from a store: one function per page.

Every function takes an open (read-only) :class:`Store` and returns plain dicts, lists, str and float,
so the pages are tested without a browser or a server. Values that are not finite become None (JSON
null), never NaN. Long lists are paginated by :func:`page_of`.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path
from threading import Lock
from typing import Any

import numpy as np

from neurometry.app.neurons import NeuronTable, RowExamples, neuron_table
from neurometry.errors import NeurometryError, did_you_mean
from neurometry.features.examples import (
    FeatureExamples,
    TokenContext,
    display_token,
    load_feature_examples,
    readable,
    readable_context,
)
from neurometry.linalg import principal_plane
from neurometry.store.results import (
    COMPARE,
    DIFF,
    ENCODE,
    FIXED_POINTS,
    KINDS,
    LYAPUNOV,
    MEASURE,
    OOD,
    OOD_SERIES,
    PATCH,
    PROBE,
    READING_FIT,
    SAE_FEATURES,
    STEER_SWEEP,
    TRUTH_BASELINE,
    TRUTH_CAUSAL,
    TRUTH_PROBE,
    TRUTH_TRANSFER,
    listing,
)
from neurometry.store.store import Store
from neurometry.workflows.compare import compare_records
from neurometry.workflows.dynamics import saved_fixed_point_searches
from neurometry.workflows.language import fit_records
from neurometry.workflows.series import parse_series_source, series_overview, series_runs

PER_PAGE = 50
MAX_PER_PAGE = 500


def finite(value: Any) -> float | None:
    """A float for JSON, None for missing, NaN or infinite values."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def page_of(items: list, page: int = 1, per_page: int = PER_PAGE) -> dict[str, Any]:
    """One page (1-based) of ``items``: ``{items, page, pages, total, per_page}``."""
    if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
        raise NeurometryError(f"page must be >= 1 and per_page between 1 and {MAX_PER_PAGE}")
    pages = max(1, math.ceil(len(items) / per_page))
    return {
        "items": items[(page - 1) * per_page : page * per_page],
        "page": page,
        "pages": pages,
        "total": len(items),
        "per_page": per_page,
    }


# -- runs and points -------------------------------------------------------------------------------
def summary(store: Store) -> dict[str, Any]:
    """The store's runs (each with the series and step it is a checkpoint of, or None), its series, and how
    many results of each kind it holds."""
    counts = {kind: int(n) for kind, n in listing(store).groupby("kind")["records"].sum().items()}
    points = store.points()
    in_series = series_runs(store)
    return {
        "store": f"{store.path.parent.name}/{store.path.name}",
        "runs": [
            {
                "run": r.run_id, "model": r.model, "reduce": r.reduce, "dtype": r.dtype, "status": r.status,
                "inputs": r.n_inputs, "committed_inputs": r.committed_inputs, "rows": r.n_rows,
                "committed_rows": r.committed_rows, "points": sum(p.run_id == r.run_id for p in points),
                "series": in_series[r.run_id].series if r.run_id in in_series else None,
                "step": in_series[r.run_id].step if r.run_id in in_series else None,
            }
            for r in store.runs()
        ],
        "series": series_list(store),
        "results": counts,
    }


# -- dynamics ---------------------------------------------------------------------------------------
TRAJECTORIES_DRAWN = 40


def dynamics(store: Store) -> dict[str, Any]:
    """The saved fixed point searches, drawn in the plane of their trajectories' top two principal components
    (``lines``: up to 40 trials as [[x, y], ...]; ``points``: each point's position and what it is; its
    eigenvalues), and the saved Lyapunov spectra."""
    searches = []
    for search in saved_fixed_point_searches(store, FIXED_POINTS.load(store)):
        states, drawn = search["states"], search["trajectories"]
        centre, basis = principal_plane(drawn.reshape(-1, states.shape[1]) if drawn is not None else states)
        placed = (states - centre) @ basis
        searches.append({
            "run": search["run"], "model": search["model"], "input": search["input"], "continuous": search["continuous"],
            "lines": [] if drawn is None else [((t - centre) @ basis).tolist() for t in drawn[:TRAJECTORIES_DRAWN]],
            "points": [{"x": placed[i, 0], "y": placed[i, 1], "kind": search["kind"][i], "q": search["q"][i],
                        "stability": search["stability"][i], "unstable_directions": search["unstable_directions"][i],
                        "outlier": search["outlier"][i], "max_abs_eigenvalue": float(np.abs(search["eigenvalues"][i]).max()),
                        "eigenvalues": [[v.real, v.imag] for v in search["eigenvalues"][i]]}
                       for i in range(len(states))],
        })
    spectra = []
    for run, group in LYAPUNOV.load(store).groupby("run_id", sort=False):
        spectra.append({"run": run, "model": group["params"].iloc[0]["model"], "exponents": group["value"].tolist(),
                        "kaplan_yorke_dimension": group["extra"].iloc[0]["kaplan_yorke_dimension"]})
    return _json_ready({"searches": searches, "spectra": spectra})


# -- reading times ------------------------------------------------------------------------------------
SCATTER_WORDS = 2000  # words drawn in the surprisal-reading time scatter (evenly spaced over the kept ones)


def reading(store: Store) -> list[dict[str, Any]]:
    """The saved reading-time fits, one entry per run and behaviour table: its settings and exclusions, one
    record per surprisal source (output ``final`` first, then the lens layers in depth order), up to 2,000 of
    the output's (surprisal, reading time) pairs, and the words with the largest residuals."""
    fits = []
    results = READING_FIT.load(store)
    for (run, _), group in results.groupby(["run_id", "result_set"], sort=False):
        records = fit_records(group)
        final = next((r for r in records if r["source"] == "final"), {})
        scatter = final.get("scatter") or {"surprisal": [], "target": []}
        keep = np.unique(np.linspace(0, len(scatter["surprisal"]) - 1, SCATTER_WORDS).astype(int)) \
            if scatter["surprisal"] else np.zeros(0, dtype=int)
        fits.append({
            "run": run, "settings": records[0]["settings"], "excluded": records[0]["excluded"],
            "sources": [{k: r.get(k) for k in ("source", "slope_ms_per_bit", "slope_ci", "spillover_slope_ms_per_bit",
                                               "delta_loglik_per_word", "delta_r2", "p_value", "words")}
                        for r in records],
            "scatter": {"surprisal": [scatter["surprisal"][i] for i in keep],
                        "target": [scatter["target"][i] for i in keep], "words": len(scatter["surprisal"])},
            "largest_residuals": final.get("largest_residuals", []),
        })
    return _json_ready(fits)


# -- detectors -----------------------------------------------------------------------------------------
def detect(store: Store) -> dict[str, Any]:
    """The saved truth decoding per run and setting (records of point, method, accuracy, AUROC, in depth
    order), the transfer matrices, the output baselines and causal tests, the OOD scores per run and setting
    (AUROC, AUPR, FPR at 95% TPR and the ROC curve of each), and the OOD AUROCs over series against NC1."""
    truth = []
    for (run, result_set), group in TRUTH_PROBE.load(store).groupby(["run_id", "result_set"], sort=False):
        truth.append({"run": run, "setting": result_set, "label": group["params"].iloc[0]["label"],
                      "records": [{"point": r.point, "method": r.name, "accuracy": r.value, "auroc": r.extra["auroc"]}
                                  for r in group.itertuples()]})
    transfer = [{"run": r.run_id, "point": r.point, "method": r.name, "names": r.extra["names"],
                 "accuracy": r.extra["accuracy"]} for r in TRUTH_TRANSFER.load(store).itertuples()]
    ood = []
    for (run, result_set), group in OOD.load(store).groupby(["run_id", "result_set"], sort=False):
        params = group["params"].iloc[0]
        ood.append({"run": run, "setting": result_set, "point": group["point"].iloc[0], "label": params["label"],
                    "in": params["in"], "records": [{"score": r.name, "auroc": r.value, **r.extra}
                                                    for r in group.itertuples()]})
    baselines = [{"run": r.run_id, "setting": r.result_set, "kind": r.point, "method": r.name, "accuracy": r.value,
                  "auroc": r.extra["auroc"], "n": r.extra["n"]} for r in TRUTH_BASELINE.load(store).itertuples()]
    causal = [{"run": r.run_id, "setting": r.result_set, "point": r.point, "alphas": r.params["alphas"],
               "shift": r.value, "gap_true": r.extra["gap_true"], "gap_false": r.extra["gap_false"], "n": r.extra["n"]}
              for r in TRUTH_CAUSAL.load(store).itertuples()]
    ood_series = []
    for (run, result_set), group in OOD_SERIES.load(store).groupby(["run_id", "result_set"], sort=False):
        first = group.iloc[0]
        ood_series.append({"run": run, "setting": result_set, "series": first["params"]["series"],
                           "point": first["point"], "in": first["params"]["in"], "steps": first["extra"]["steps"],
                           "nc1": first["extra"]["nc1"], "train_error": first["extra"]["train_error"],
                           "records": [{"score": r.name, "spearman": r.value, "auroc": r.extra["auroc"],
                                        "terminal_spearman": r.extra["terminal_spearman"]} for r in group.itertuples()]})
    return _json_ready({"truth": truth, "transfer": transfer, "baselines": baselines, "causal": causal, "ood": ood,
                        "ood_over_training": ood_series})


# -- over training -----------------------------------------------------------------------------------
def series_list(store: Store) -> list[dict[str, Any]]:
    """The store's series: name, model, how many checkpoints (and how many complete), first and last step."""
    runs = {r.run_id: r for r in store.runs()}
    out = []
    for name in store.series_names():
        steps = store.series(name)
        last = runs.get(steps[-1].run_id)
        out.append({
            "series": name, "model": last.model if last else None, "checkpoints": len(steps),
            "complete": sum(bool(s.run_id in runs and runs[s.run_id].complete) for s in steps),
            "first_step": steps[0].step, "last_step": steps[-1].step,
        })
    return out


def _json_ready(value: Any) -> Any:
    """``value`` with every float finite or None (JSON has no NaN), through dicts and lists."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return finite(value)
    return value


def series_page(store: Store, name: str) -> dict[str, Any]:
    """Everything saved about one series (:func:`neurometry.workflows.series.series_overview`): checkpoints,
    training metrics, phases, measures (points x steps), similarity with a reference step, a lab's findings."""
    return _json_ready(series_overview(store, name))


def run_points(store: Store, run: str) -> dict[str, Any]:
    """A run's points in depth order, with shape and committed rows, and the measures saved for each."""
    points = store.points(run)  # an unknown run fails here, naming the runs there are
    measures = MEASURE.load(store, run)
    names = list(dict.fromkeys(measures["name"]))
    values = {(r.point, r.name): finite(r.value) for r in measures.itertuples()}
    return {
        "run": run,
        "measures": names,
        "points": [
            {"point": p.point, "kind": p.kind, "module": p.module_path, "shape": list(p.shape), "dtype": p.dtype,
             "rows": p.n_rows, "values": [values.get((p.point, n)) for n in names]}
            for p in points
        ],
    }


# -- comparisons and probes -------------------------------------------------------------------------
def comparisons(store: Store) -> list[dict[str, Any]]:
    """Each saved comparison as a matrix: points of A (rows) x points of B (columns), both in depth
    order, with intervals and p-values where they were computed. A depth profile is the one-column case.
    A series' steps compared with its reference step are left out: :func:`series_page` draws them."""
    frame = COMPARE.load(store)
    # the steps of a series against its reference step are drawn over training (series_page), not run by run
    frame = frame[~frame["params"].map(lambda p: parse_series_source(p.get("source_b")) is not None).astype(bool)]
    groups: OrderedDict[tuple, list[dict[str, Any]]] = OrderedDict()
    for run, results in frame.groupby("run_id", sort=False):
        for r in compare_records(store, results):
            params = {k: v for k, v in r["params"].items() if k != "point_b"}
            groups.setdefault((run, r["metric"], json.dumps(params, sort_keys=True)), []).append(r)
    out = []
    for index, ((run, metric, params), rows) in enumerate(groups.items()):
        points_a = list(dict.fromkeys(r["point_a"] for r in rows))
        points_b = list(dict.fromkeys(str(r["point_b"]) for r in rows))
        cells: dict[str, list[list[float | None]]] = {
            key: [[None] * len(points_b) for _ in points_a] for key in ("values", "ci_low", "ci_high", "p_value")
        }
        for r in rows:
            i, j = points_a.index(r["point_a"]), points_b.index(str(r["point_b"]))
            cells["values"][i][j] = finite(r["value"])
            for key in ("ci_low", "ci_high", "p_value"):
                cells[key][i][j] = finite(r.get(key))
        source_b = str(json.loads(params).get("source_b") or "")
        itself = not source_b or Path(source_b).resolve() == store.path.resolve()
        out.append({
            "id": index, "run": run, "metric": metric, "against": "itself" if itself else Path(source_b).name,
            "params": json.loads(params), "points_a": points_a, "points_b": points_b, **cells,
        })
    return out


def probes(store: Store) -> list[dict[str, Any]]:
    """Probe score against depth per run and label, with the fold interval and the chance baseline."""
    frame = PROBE.load(store)
    out = []
    for (run, label), group in frame.groupby([frame["run_id"], frame["params"].map(lambda p: str(p.get("label")))],
                                             sort=False):
        extra = list(group["extra"])
        out.append({
            "run": run, "label": label, "kind": extra[0].get("kind"), "points": list(group["point"]),
            "scores": [finite(v) for v in group["value"]],
            "ci_low": [finite(e.get("ci_low")) for e in extra], "ci_high": [finite(e.get("ci_high")) for e in extra],
            "baseline": finite(extra[0].get("baseline")),
        })
    return out


def encodings(store: Store) -> list[dict[str, Any]]:
    """Encoding models (``neurometry encode``): mean and median held-out r over targets, by point."""
    frame = ENCODE.load(store)
    out = []
    for (run, targets), group in frame.groupby(
        [frame["run_id"], frame["params"].map(lambda p: json.dumps(p.get("targets")))], sort=False
    ):
        extra = list(group["extra"])
        out.append({
            "run": run, "targets": json.loads(targets), "points": list(group["point"]),
            "mean_r": [finite(v) for v in group["value"]], "median_r": [finite(e.get("median_r")) for e in extra],
            "n_targets": len(extra[0].get("target_scores") or []),
        })
    return out


def sweeps(store: Store) -> list[dict[str, Any]]:
    """Saved steering sweeps (``steer eval --store``, the demo): per vector, the target log-probability
    shift, KL and perplexity against alpha, and the generations saved with one alpha."""
    from neurometry.steer.evaluate import sweep_rows

    frame = STEER_SWEEP.load(store)
    out = []
    pairs = frame["params"].map(lambda p: json.dumps(p.get("pairs")))
    for (model, point, vector, _), rows in frame.groupby(
        [frame["run_id"], frame["point"], frame["name"], pairs], sort=False
    ):
        swept, generated = sweep_rows(rows)
        extra = rows["extra"].iloc[0]
        out.append({
            "model": model, "point": point, "vector": vector, "pairs": rows["params"].iloc[0].get("pairs"),
            "n_pairs": extra.get("n_pairs"), "vector_info": extra.get("vector", {}),
            "rows": [{"alpha": r.alpha, "shift": finite(r.target_logprob_shift), "kl": finite(r.kl),
                      "perplexity": finite(r.perplexity)} for r in swept],
            "generations": [{"alpha": generated["alpha"], "rows": generated["generations"]}] if generated else [],
        })
    return out


def patching(store: Store) -> list[dict[str, Any]]:
    """Saved activation patching (``patch --store``, the demo), one entry per model and prompt pair: the
    (points x positions) normalised scores, 1 where patching the clean activation restores the answer."""
    from neurometry.steer.patching import patch_result

    frame = PATCH.load(store)
    out = []
    for (model, pair), rows in frame.groupby(["run_id", "name"], sort=False):
        result = patch_result(rows)
        out.append({
            "model": model, "pair": pair, "clean": result.clean, "corrupted": result.corrupted,
            "correct": result.correct, "wrong": result.wrong, "points": result.points,
            "tokens": [readable(result.tokens[p]) for p in result.positions],
            "scores": [[finite(v) for v in row] for row in result.scores],
        })
    return out


def diffs(store: Store) -> list[dict[str, Any]]:
    """Saved model diffing (``diff --store``, the demo): per base model, finetuned model and settings,
    the norm of the mean activation difference and its logit-lens tokens at each point, and the
    generations steered with it."""
    from neurometry.steer.diffing import diff_document

    frame = DIFF.load(store)
    if frame.empty:
        return []
    keys = frame["params"].map(lambda p: json.dumps(p, sort_keys=True))
    out = []
    for (base, finetuned, params), rows in frame.groupby([frame["run_id"], frame["name"], keys], sort=False):
        document, generated = diff_document(rows)
        out.append({"base": base, "finetuned": Path(finetuned).name, "params": json.loads(params),
                    "points": [{"point": p["point"], "norm": finite(p["norm"]), "lens": p.get("lens", [])}
                               for p in document["points"]],
                    "generations": generated})
    return out


def other_results(store: Store, kind: str, page: int = 1, per_page: int = PER_PAGE) -> dict[str, Any]:
    """Any kind of result as a paginated table (kinds without a page of their own)."""
    kinds = sorted(set(listing(store)["kind"]))
    frame = KINDS[kind].load(store) if kind in KINDS else None
    if frame is None or frame.empty:
        raise NeurometryError(f"no results of kind {kind!r}{did_you_mean(kind, kinds)}; kinds here: {', '.join(kinds)}")
    rows = [
        {"run": r.run_id, "point": r.point, "name": r.name, "value": finite(r.value),
         "params": json.dumps(r.params, sort_keys=True)}
        for r in frame.itertuples()
    ]
    return page_of(rows, page, per_page)


# -- neurons -----------------------------------------------------------------------------------------
class NeuronCache:
    """Neuron tables by (run, point, committed rows): recomputed when a concurrent ``record`` commits
    more rows, kept otherwise (a few most recent, as each holds O(F * top) numbers)."""

    def __init__(self, size: int = 8):
        self.size = size
        self.tables: OrderedDict[tuple, tuple[NeuronTable, RowExamples]] = OrderedDict()
        self.lock = Lock()  # guards the two dicts, briefly
        self.computing: dict[tuple, Lock] = {}

    def get(self, store: Store, run: str, point: str) -> tuple[NeuronTable, RowExamples]:
        rows = store.point_info(point, run).n_rows
        key = (str(store.path), run, point, rows)
        with self.lock:
            key_lock = self.computing.setdefault(key, Lock())
        # one computation per key even when a page fires several requests at once, while other points
        # (a pass over a million rows takes tens of seconds) are served meanwhile
        with key_lock:
            with self.lock:
                if key in self.tables:
                    self.tables.move_to_end(key)
                    return self.tables[key]
            table = neuron_table(store, run, point)
            entry = (table, RowExamples(store, run, table.n_rows))
            with self.lock:
                self.tables[key] = entry
                while len(self.tables) > self.size:
                    self.tables.popitem(last=False)
                self.computing.pop(key, None)
            return entry


NEURON_SORTS = ("unit", "max", "mean", "std", "active")


def neurons(cache: NeuronCache, store: Store, run: str, point: str, query: str = "", sort: str = "max",
            page: int = 1, per_page: int = PER_PAGE) -> dict[str, Any]:
    """Per-unit statistics of a point, sorted and filtered. ``query`` is a unit number, or a token among
    the unit's top-activating tokens (token runs) or inputs (per-input runs); see :func:`matching`."""
    if sort not in NEURON_SORTS:
        raise NeurometryError(f"unknown sort {sort!r}; one of {', '.join(NEURON_SORTS)}")
    table, examples = cache.get(store, run, point)
    units = np.arange(table.n_units)
    query = query.strip().lower()
    tops = [[_example_text(examples, int(row)) for row in table.top_rows[u][:3]] for u in units]
    if query:
        if query.isdigit():
            units = units[units == int(query)]
        else:
            units = np.array(matching(query, {int(u): tops[u] for u in units}), dtype=int)
    if sort != "unit":
        key = getattr(table, sort)[units]
        units = units[np.argsort(-key, kind="stable")]
    listing = page_of([int(u) for u in units], page, per_page)
    listing["items"] = [
        {"unit": u, "mean": finite(table.mean[u]), "std": finite(table.std[u]), "max": finite(table.max[u]),
         "min": finite(table.min[u]), "active": finite(table.active[u]), "top": tops[u]}
        for u in listing["items"]
    ]
    return {"run": run, "point": point, "rows": table.n_rows, "units": table.n_units, "sort": sort, **listing}


def _example_text(examples: RowExamples, row: int) -> str:
    return examples.top_token(row) if examples.reduce == "tokens" else examples(row, 0.0)["text"][:80]


def neuron(cache: NeuronCache, store: Store, run: str, point: str, unit: int) -> dict[str, Any]:
    """One unit: its statistics and the rows where it is most active, each shown in its context."""
    table, examples = cache.get(store, run, point)
    if not 0 <= unit < table.n_units:
        raise NeurometryError(f"unit {unit} is out of range: {point} has units 0..{table.n_units - 1}")
    return {
        "run": run, "point": point, "unit": unit, "rows": table.n_rows, "mean": finite(table.mean[unit]),
        "std": finite(table.std[unit]), "min": finite(table.min[unit]), "max": finite(table.max[unit]),
        "active": finite(table.active[unit]),
        "examples": [examples(int(r), float(v)) for r, v in zip(table.top_rows[unit], table.top_values[unit],
                                                                   strict=True)],
    }


# -- SAE features ------------------------------------------------------------------------------------
class FeatureCache:
    """Each SAE's feature examples (:func:`~neurometry.features.examples.load_feature_examples`) by name,
    reloaded when the catalog's feature records change."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.saes: dict[str, FeatureExamples] = {}
        self.lock = Lock()

    def get(self, store: Store) -> dict[str, FeatureExamples]:
        sets = listing(store)
        sets = sets[sets["kind"] == SAE_FEATURES.name]
        key = (str(store.path), *map(tuple, (sets["run_id"], sets["result_set"], sets["records"], sets["created"])))
        with self.lock:
            if key != self.key:
                # each SAE's examples are one result set, named as the SAE was saved
                self.saes = {r.result_set: load_feature_examples(store, r.result_set, r.run_id)
                             for r in sets.itertuples()}
                self.key = key
            return self.saes


def _sae(cache: FeatureCache, store: Store, sae: str) -> FeatureExamples:
    saes = cache.get(store)
    if sae not in saes:
        raise NeurometryError(
            f"no feature examples of SAE {sae!r}{did_you_mean(sae, list(saes))}; save them with "
            "`neurometry sae features SAE STORE`"
        )
    return saes[sae]


def feature_sets(cache: FeatureCache, store: Store) -> list[dict[str, Any]]:
    """Each SAE with saved feature examples: point, run, latent count, and the log10 frequency histogram."""
    out = []
    for name, examples in cache.get(store).items():
        freq = examples.frequency
        counts, edges = np.histogram(np.log10(np.clip(freq, 1e-7, None)), bins=40)
        out.append({
            "sae": name, "run": examples.run, "point": examples.point, "latents": examples.d_sae,
            "dead": int((freq == 0).sum()), "dense": int((freq > 0.1).sum()),
            "histogram": {"counts": counts.tolist(), "edges": [float(e) for e in edges]},
        })
    return out


FEATURE_SORTS = ("frequency", "max", "latent")


def features(cache: FeatureCache, store: Store, sae: str, query: str = "", sort: str = "frequency",
             page: int = 1, per_page: int = PER_PAGE) -> dict[str, Any]:
    """The latents of one SAE, searchable by latent number or by text in the tokens where they fire
    most or the tokens they promote (logit lens)."""
    if sort not in FEATURE_SORTS:
        raise NeurometryError(f"unknown sort {sort!r}; one of {', '.join(FEATURE_SORTS)}")
    examples = _sae(cache, store, sae)
    query = query.strip().lower()
    chosen = list(range(examples.d_sae))
    if query.isdigit():
        chosen = [i for i in chosen if i == int(query)]
    elif query:
        chosen = matching(query, {i: _searchable(examples, i) for i in chosen})
    keys = {"frequency": lambda i: -examples.frequency[i], "max": lambda i: -examples.max_activation[i],
            "latent": lambda i: i}
    chosen.sort(key=keys[sort])
    listing = page_of(chosen, page, per_page)
    listing["items"] = [_latent_row(examples, i) for i in listing["items"]]
    return {"sae": sae, "sort": sort, **listing}


def _logit_tokens(examples: FeatureExamples, index: int, key: str = "promoted") -> list[list]:
    """A latent's promoted (or suppressed) [token, logit] pairs; none when saved without --model."""
    return examples.logit_tokens[index][key] if examples.logit_tokens is not None else []


def _searchable(examples: FeatureExamples, index: int) -> list[str]:
    # the tokens where the latent fires and those it promotes, not the whole contexts: a search for
    # "rain" should find rain latents, not every latent whose examples mention rain nearby
    tokens = [display_token(c.token) for c in examples.top[index][:10]]
    return tokens + [display_token(t) for t, _ in _logit_tokens(examples, index)[:10]]


def matching(query: str, texts: dict[int, list[str]]) -> list[int]:
    """The keys whose texts include ``query`` as a whole (case-insensitive); when none does, those with
    ``query`` inside one of them: "rain" finds rain units, not train ones, and "rai" still finds both."""
    query = query.lower()
    lowered = {key: [t.lower() for t in values] for key, values in texts.items()}
    exact = [key for key, values in lowered.items() if query in values]
    return exact or [key for key, values in lowered.items() if any(query in t for t in values)]


def _latent_row(examples: FeatureExamples, index: int) -> dict[str, Any]:
    return {
        "latent": index, "frequency": finite(examples.frequency[index]),
        "max": finite(examples.max_activation[index]), "mean": finite(examples.mean_activation[index]),
        "top_tokens": list(dict.fromkeys(display_token(c.token) for c in examples.top[index][:10]))[:5],
        "promoted": [readable(t) for t, _ in _logit_tokens(examples, index)[:5]],
    }


def feature(cache: FeatureCache, store: Store, sae: str, latent: int) -> dict[str, Any]:
    """One latent: statistics, top and quantile contexts (readable, with the token's activation), and
    the tokens its decoder direction promotes and suppresses through the unembedding."""
    examples = _sae(cache, store, sae)
    if not 0 <= latent < examples.d_sae:
        raise NeurometryError(f"latent {latent} is out of range: {sae} has latents 0..{examples.d_sae - 1}")

    def context(c: TokenContext) -> dict[str, Any]:
        left, token, right = readable_context(c.left, c.token, c.right)
        return {"row": c.row, "activation": finite(c.activation), "left": left, "token": token, "right": right}

    return {
        **_latent_row(examples, latent), "sae": sae, "point": examples.point, "run": examples.run,
        "top": [context(c) for c in examples.top[latent]],
        "quantiles": [{"quantile": [q.lower, q.upper], "examples": [context(c) for c in q.examples]}
                      for q in examples.quantiles[latent]],
        "promoted": [[readable(t), finite(v)] for t, v in _logit_tokens(examples, latent)],
        "suppressed": [[readable(t), finite(v)] for t, v in _logit_tokens(examples, latent, "suppressed")],
    }
