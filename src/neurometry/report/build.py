"""Build the report: one section per kind of saved result, each a function registered in ``SECTIONS``.

Every section reads the catalog's results (``KIND.load(store)`` of :mod:`neurometry.store.results`) and draws with the same plotting
functions as the CLI (``--plot``), so a figure in the report is the figure the command draws. Figures
are embedded as base64 PNG and the CSS is inline: the file opens anywhere, offline, and can be mailed.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neurometry.errors import NeurometryError
from neurometry.features.examples import readable, readable_context
from neurometry.plots import (
    Figure,
    figure_png,
    plot_comparison,
    plot_curves_with_phases,
    plot_encode,
    plot_fixed_points,
    plot_latent_frequencies,
    plot_ood,
    plot_ood_series,
    plot_patching,
    plot_probe,
    plot_profiles,
    plot_reading_fit,
    plot_series_measures,
    plot_series_similarity,
    plot_sweep,
    plot_truth,
)
from neurometry.store import open_store
from neurometry.store.chunks import is_disk_full
from neurometry.store.results import (
    COMPARE,
    DIFF,
    ENCODE,
    FIXED_POINTS,
    LAB,
    LYAPUNOV,
    MEASURE,
    OOD,
    OOD_SERIES,
    PATCH,
    PHASES,
    PROBE,
    READING_FIT,
    SAE_EVAL,
    SAE_FEATURES,
    STEER_SWEEP,
    TRAINING,
    TRUTH_BASELINE,
    TRUTH_CAUSAL,
    TRUTH_PROBE,
    TRUTH_TRANSFER,
    ResultKind,
    listing,
)
from neurometry.store.store import Store
from neurometry.workflows.compare import compare_records
from neurometry.workflows.dynamics import saved_fixed_point_searches
from neurometry.workflows.language import fit_records
from neurometry.workflows.measure import measure_records
from neurometry.workflows.probe import scored_records
from neurometry.workflows.series import parse_series_source, series_overview, series_runs

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{font-size:1.05em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}img{max-width:100%;border:1px solid #eee}
.ctx{font-family:ui-monospace,monospace;font-size:.85em;white-space:pre-wrap}
.tok{border-radius:3px;padding:0 1px}.scroll{overflow-x:auto;max-width:100%}.note{color:#666;font-size:.9em}nav a{margin-right:1em}
"""


def _png(figure: Figure) -> str:
    """An <img> with ``figure`` inlined as a base64 PNG."""
    data = base64.b64encode(figure_png(figure)).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return html.escape(str(value))


def _table(columns: list[str], rows: list[list[Any]], left: int = 1) -> str:
    head = "".join(f'<th class="{"l" if i < left else ""}">{html.escape(c)}</th>' for i, c in enumerate(columns))
    body = "".join(
        "<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{_fmt(v)}</td>' for i, v in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


# -- sections ------------------------------------------------------------------------------------
def measure_section(store: Store, results: pd.DataFrame) -> str:
    """Each measure against depth, per run, and the table of values."""
    parts = []
    for run, group in results.groupby("run_id", sort=False):
        records = measure_records(group)
        parts.append(f"<h3>run {html.escape(run)}</h3>")
        parts.append(_png(plot_profiles(records, f"{store.path.name} · run {run}")))
        table = group.pivot_table(index="point", columns="name", values="value", sort=False)
        parts.append(_table(["point", *map(str, table.columns)], [[i, *row] for i, row in zip(table.index, table.values, strict=True)]))
    return "\n".join(parts)


def compare_section(store: Store, results: pd.DataFrame) -> str:
    """Layer x layer heatmaps and depth profiles (with intervals and significance), one per comparison."""
    parts = []
    keyed: dict[tuple, list[dict]] = {}
    for run, group in results.groupby("run_id", sort=False):
        for record in compare_records(store, group):
            params = {k: v for k, v in record["params"].items() if k != "point_b"}
            keyed.setdefault((run, record["metric"], json.dumps(params, sort_keys=True)), []).append(record)
    for (run, metric, params), records in keyed.items():
        source_b = json.loads(params).get("source_b", "")
        title = f"{metric}: run {run} against {Path(str(source_b)).name}"
        parts.append(f"<h3>{html.escape(title)}</h3>")
        parts.append(_png(plot_comparison({"results": records}, title)))
        rows = [[r["point_a"], r["point_b"], r["value"], r.get("ci_low"), r.get("ci_high"), r.get("p_value")]
                for r in records[:60]]
        parts.append(_table(["A", "B", "value", "ci low", "ci high", "p"], rows, left=2))
        if len(records) > 60:
            parts.append(f'<p class="note">{len(records) - 60} more pairs in the catalog</p>')
    return "\n".join(parts)


def probe_section(store: Store, results: pd.DataFrame) -> str:
    """Probe score against depth (with its interval and baseline), per run and label."""
    parts = []
    for (run, label), group in results.groupby(
        [results["run_id"], results["params"].map(lambda p: str(p.get("label")))], sort=False
    ):
        records = scored_records(group)
        title = f"probe {label}: run {run}"
        parts.append(f"<h3>{html.escape(title)}</h3>")
        parts.append(_png(plot_probe({"results": records}, title)))
        rows = [[r["point"], r.get("kind"), r.get("k"), r["score"], r.get("ci_low"), r.get("ci_high"),
                 r.get("baseline")] for r in records]
        parts.append(_table(["point", "kind", "k", "score", "ci low", "ci high", "baseline"], rows, left=2))
    return "\n".join(parts)


def encode_section(store: Store, results: pd.DataFrame) -> str:
    """Encoding models, per run and target set: mean held-out r against depth with the targets'
    interquartile range, and the table of mean, median and max r and of how many targets each point
    predicts best."""
    parts = []
    targets = results["params"].map(lambda p: json.dumps(p.get("targets")))
    for (run, named), group in results.groupby([results["run_id"], targets], sort=False):
        records = scored_records(group)
        scores = np.array([r["target_scores"] for r in records], dtype=float)  # (points, targets)
        named = json.loads(named)
        what = Path(named).name if isinstance(named, str) else ", ".join(map(str, named or []))
        title = f"encoding {scores.shape[1]} targets ({what}): run {run}"
        parts.append(f"<h3>{html.escape(title)}</h3>")
        parts.append(_png(plot_encode({"results": records}, title)))
        # the rule of neurometry.probe.best_points (which needs the fitted results): argmax, first point on ties
        best = np.bincount(np.argmax(scores, axis=0), minlength=len(records))
        ceiling = any("normalized_r" in r for r in records)
        rows = []
        for r, row_scores, n_best in zip(records, scores, best, strict=True):
            row = [r["point"], r["score"], r.get("median_r"), float(np.max(row_scores)), int(n_best)]
            if ceiling:
                normalized = [v for v in r.get("normalized_r") or [] if v is not None]
                row.append(float(np.mean(normalized)) if normalized else None)
            rows.append(row)
        columns = ["point", "mean r", "median r", "max r", "targets best here"]
        parts.append(_table(columns + (["mean r / ceiling"] if ceiling else []), rows))
    return "\n".join(parts)


def steer_sweep_section(store: Store, results: pd.DataFrame) -> str:
    """Each steering vector's alpha sweep (target log-prob shift, KL and perplexity on neutral text), drawn
    as `neurometry steer eval --plot` draws it, with its table and any saved steered generations."""
    from neurometry.steer.evaluate import sweep_rows

    parts = []
    pairs = results["params"].map(lambda p: str(p.get("pairs")))
    for (run, point, name, source), group in results.groupby(
        [results["run_id"], results["point"], results["name"], pairs], sort=False
    ):
        rows, generated = sweep_rows(group)
        extra = group["extra"].iloc[0]
        method = extra.get("vector", {}).get("method")
        evaluated = f"{extra['n_pairs']} held-out pairs of " if extra.get("n_pairs") else "pairs of "
        title = f"{run} {point} {name}{f' ({method})' if method else ''}: {evaluated}{Path(source).name}"
        parts.append(f"<h3>{html.escape(title)}</h3>")
        parts.append(_png(plot_sweep(rows, title)))
        parts.append(_table(
            ["alpha", "target logprob shift", "KL (neutral)", "perplexity (neutral)"],
            [[r.alpha, r.target_logprob_shift, r.kl, r.perplexity] for r in rows],
            left=0,
        ))
        if generated:
            parts.append(f'<p class="note">greedy continuations, unsteered and at alpha {generated["alpha"]:g}</p>')
            parts.append(_table(
                ["prompt", "unsteered", f"alpha {generated['alpha']:g}"],
                [[g["prompt"], g["unsteered"], g["steered"]] for g in generated["generations"]],
                left=3,
            ))
    return "\n".join(parts)


def patch_section(store: Store, results: pd.DataFrame) -> str:
    """Each saved patching result (per model and prompt pair): the point x position heatmap, with the
    per-head panel when heads were patched, drawn as `neurometry patch --plot` draws it, and per point the
    best score and the position it is at."""
    from neurometry.steer.patching import patch_result

    parts = []
    for (run, _), group in results.groupby(["run_id", "name"], sort=False):
        result = patch_result(group)
        title = f"{run}: {result.clean!r} -> {result.correct!r} against {result.corrupted!r} -> {result.wrong!r}"
        note = (f"logit difference {result.correct!r} - {result.wrong!r}: clean {result.clean_ld:+.3f}, corrupted "
                f"{result.corrupted_ld:+.3f}; score = the share of it a patch restores (0 = corrupted, 1 = clean)")
        parts.append(f'<h3>{html.escape(title)}</h3><p class="note">{html.escape(note)}</p>')
        parts.append(_png(plot_patching(result)))
        rows = []
        for point, scores in zip(result.points, result.scores, strict=True):
            best = int(np.argmax(scores))
            position = result.positions[best]
            clean, corrupted = result.tokens[position], result.corrupted_tokens[position]
            token = repr(clean) if clean == corrupted else f"{clean!r} / {corrupted!r}"
            rows.append([point, float(scores[best]), position, token])
        parts.append(_table(["point", "best score", "at position", "token (clean / corrupted)"], rows))
    return "\n".join(parts)


def diff_section(store: Store, results: pd.DataFrame) -> str:
    """Each saved model diffing (per base, finetuned model and settings): the norm of the mean activation
    difference and its logit-lens tokens per point, and the base model's greedy continuations unsteered
    and steered with the difference, when they were saved."""
    from neurometry.steer.diffing import NEUTRAL, diff_document, lens_text

    parts = []
    settings = results["params"].map(lambda p: json.dumps(p, sort_keys=True))
    for (run, name, _), group in results.groupby([results["run_id"], results["name"], settings], sort=False):
        document, generated = diff_document(group)
        texts = group["params"].iloc[0]["texts"]
        source = "the built-in neutral sentences" if texts == NEUTRAL else Path(str(texts)).name
        title = (f"{run} against {name}: token positions {document['skip_first']}-{document['first_k'] - 1} of "
                 f"{source} ({document['n_positions']} averaged)")
        parts.append(f"<h3>{html.escape(title)}</h3>")
        parts.append(_table(
            ["point", "difference norm", "lens of the difference (top tokens)"],
            [[r["point"], r["norm"], lens_text(r.get("lens", []))] for r in document["points"]],
        ))
        if generated:
            note = (f"greedy continuations of {run}, unsteered and steered with the difference at "
                    f"{generated['point']}, alpha {generated['alpha']:g}")
            parts.append(f'<p class="note">{html.escape(note)}</p>')
            parts.append(_table(
                ["prompt", "unsteered", "steered"],
                [[g["prompt"], g["unsteered"], g["steered"]] for g in generated["generations"]],
                left=3,
            ))
    return "\n".join(parts)


def sae_eval_section(store: Store, results: pd.DataFrame) -> str:
    """Held-out reconstruction and CE loss recovered of each evaluated SAE."""
    rows = []
    for r in results.itertuples():
        e = r.extra
        rows.append([Path(r.name).name, r.point, e.get("n_rows"), e.get("l0"), e.get("fvu"), e.get("dead_fraction"),
                     e.get("dense_fraction"), e.get("ce_loss_recovered")])
    return _table(["SAE", "point", "rows", "L0", "FVU", "dead", "dense", "CE loss recovered"], rows, left=2)


def _context_html(example: dict, top: float) -> str:
    strength = 0.0 if top <= 0 else min(1.0, max(0.0, example["activation"] / top))
    left, token, right = map(html.escape, readable_context(example["left"], example["token"], example["right"]))
    style = f"background:rgba(230,120,20,{0.15 + 0.75 * strength:.2f})"
    return f'<span class="ctx">{left}<span class="tok" style="{style}" title="{example["activation"]:.3g}">{token}</span>{right}</span>'


def sae_features_section(store: Store, results: pd.DataFrame, per_sae: int = 24, contexts: int = 3) -> str:
    """For each SAE: frequency histogram, and the most frequent latents with their top contexts
    (the token highlighted by its activation relative to the latent's maximum)."""
    parts = []
    names = results["name"].str.rsplit("/", n=1).str[0]
    for name, group in results.groupby(names, sort=False):
        n_latents = int(group["extra"].iloc[0].get("n_latents", len(group)))
        latents = group[group["name"].str.rsplit("/", n=1).str[1].astype(int) < n_latents]
        freq = latents["value"].to_numpy(dtype=float)
        parts.append(f"<h3>{html.escape(name)} · {html.escape(str(latents['point'].iloc[0]))} · {len(latents)} latents</h3>")

        parts.append(_png(plot_latent_frequencies(freq)))
        parts.append(f'<p class="note">dead (never active): {int((freq == 0).sum())}; dense (&gt; 10% of rows): {int((freq > 0.1).sum())}</p>')
        shown = latents.sort_values("value", ascending=False).head(per_sae)
        rows = []
        for r in shown.itertuples():
            top = r.extra.get("top", [])[:contexts]
            peak = float(r.extra.get("max_activation") or 0.0)
            body = "<br>".join(_context_html(c, peak) for c in top)
            promoted = [readable(t) for t, _ in r.extra.get("promoted", [])[:5]]
            rows.append(
                f"<tr><td>{html.escape(r.name.rsplit('/', 1)[1])}</td><td>{r.value:.4f}</td><td>{peak:.3g}</td>"
                f'<td class="l">{body}</td><td class="l">{html.escape(" ".join(promoted))}</td></tr>'
            )
        parts.append(
            "<table><tr><th>latent</th><th>frequency</th><th>max</th><th class='l'>top contexts</th>"
            "<th class='l'>promotes</th></tr>" + "".join(rows) + "</table>"
        )
    return "\n".join(parts)


def _steps(values: list[float]) -> str:
    return ", ".join(f"{float(v):g}" for v in values)


def _finding(value: Any) -> str:
    """A lab finding as text: numbers to 4 significant digits, lists joined, anything else as JSON."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return "–" if value is None else str(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return _fmt(float(value)) if isinstance(value, (float, np.floating)) else str(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float, str)) or v is None for v in value):
        return ", ".join(_finding(v) for v in value)
    return json.dumps(value, sort_keys=True, default=str)


def _spread(n: int, most: int = 40) -> list[int]:
    """Indices of at most ``most`` of ``n`` rows, evenly spread, the first and last always among them."""
    if n <= most:
        return list(range(n))
    return sorted({round(i * (n - 1) / (most - 1)) for i in range(most)})


def _phases_html(name: str, entry: dict, drawn: bool) -> list[str]:
    """A saved phases result: its curve with the phases shaded (unless ``drawn`` already), the phases'
    step ranges and means, and the boundaries."""
    where = f" at {entry['point']}" if entry["point"] else ""
    penalty = f", penalty {entry['penalty']:.4g}" if entry["penalty"] is not None else ""
    parts = [f"<h4>phases of {html.escape(entry['curve'] + where)}</h4>",
             f'<p class="note">{html.escape(entry["method"])}, transform {html.escape(entry["transform"])}{penalty}; '
             f"{len(entry['phases'])} phases over {len(entry['steps'])} checkpoints</p>"]
    if not drawn:
        title = f"{name}: {entry['curve']}{where}"
        parts.append(_png(plot_curves_with_phases(entry["steps"], {entry["curve"] + where: entry["values"]},
                                                  entry["phases"], title, log_y=entry["transform"] == "log")))
    parts.append(_table(["phase", "steps", "checkpoints", "mean"], [
        [str(i + 1), f"{p['start_step']:g}..{p['end_step']:g}", p["n_points"], p["mean"]]
        for i, p in enumerate(entry["phases"])
    ], left=2))
    plural = "ies at steps" if len(entry["boundaries"]) > 1 else "y at step"
    boundaries = (f"boundar{plural} {_steps(entry['boundaries'])}" if entry["boundaries"]
                  else "no boundary: the whole curve is one phase")
    parts.append(f'<p class="note boundaries">{html.escape(boundaries)}</p>')
    return parts


def series_html(store: Store, overview: dict) -> str:
    """One series: its checkpoints, training metrics with the phases shaded, every saved phases result,
    a step x depth heatmap per saved measure, similarity with the reference step, and a lab's findings."""
    name = overview["series"]
    steps = overview["steps"]
    complete = sum(s["complete"] for s in steps)
    parts = [f'<h3 id="series-{html.escape(name)}">series {html.escape(name)}</h3>',
             f'<p class="note">{len(steps)} checkpoints of {html.escape(str(overview["model"]))} '
             f"({complete} complete), points {html.escape(', '.join(overview['points']) or 'none')}; "
             f'steps <span class="steps">{html.escape(_steps([s["step"] for s in steps]))}</span></p>']
    training, phases = overview["training"], overview["phases"]
    metrics = training["metrics"]
    shaded = next((p for p in phases if p["point"] is None and p["curve"] in metrics), None)
    if metrics:
        parts.append("<h4>training metrics</h4>")
        losses = {k: v for k, v in metrics.items() if "loss" in k}
        others = {k: v for k, v in metrics.items() if k not in losses}
        groups = [("losses", losses), ("other metrics", others)] if losses and others else [("training metrics", metrics)]
        for label, curves in groups:
            known = [v for values in curves.values() for v in values if v is not None]
            log_y = bool(losses) and curves is not others and bool(known) and min(known) > 0
            title = f"{name}: {label}" + (f" · phases of {shaded['curve']}" if shaded else "")
            parts.append(_png(plot_curves_with_phases(training["steps"], curves, shaded["phases"] if shaded else [],
                                                      title, log_y=log_y)))
        shown = _spread(len(training["steps"]))
        parts.append(_table(["step", *metrics], [[training["steps"][i], *(v[i] for v in metrics.values())] for i in shown]))
        if len(shown) < len(training["steps"]):
            parts.append(f'<p class="note">{len(shown)} of {len(training["steps"])} checkpoints shown</p>')
    for entry in phases:
        parts += _phases_html(name, entry, drawn=entry is shaded)
    if overview["measures"]:
        parts.append("<h4>measures over training (step x depth)</h4>")
    for m in overview["measures"]:
        label = f" (label {m['label']})" if m.get("label") else ""
        records = [{"step": step, "point": point, "measure": m["measure"], "value": value}
                   for point, row in zip(m["points"], m["values"], strict=True)
                   for step, value in zip(m["steps"], row, strict=True)]
        figure = plot_series_measures(records, f"{name}: {m['measure']}{label}")
        parts.append(f'<div class="series-measure"><p><b>{html.escape(m["measure"] + label)}</b></p>{_png(figure)}</div>')
    for c in overview["similarity"]:
        title = f"{c['metric']} of each step with step {c['reference_step']}"
        document = {"metric": c["metric"], "reference_step": c["reference_step"], "results": [
            {"step": step, "point": point, "value": value}
            for point, row in zip(c["points"], c["values"], strict=True)
            for step, value in zip(c["steps"], row, strict=True)
        ]}
        parts.append(f'<h4>{html.escape(title)}</h4>')
        parts.append(_png(plot_series_similarity(document, f"{name}: {title}")))
    for lab in overview["labs"]:
        settings = ", ".join(f"{k} {v}" for k, v in lab["params"].items() if k != "lab" and v is not None)
        seconds = f", trained in {lab['seconds']:.0f} s" if lab["seconds"] is not None else ""
        parts.append(f"<h4>lab {html.escape(str(lab['lab']))}: findings</h4>"
                     f'<p class="note">{html.escape(settings + seconds)}</p>')
        parts.append(_table(["finding", "value"], [[k, _finding(v)] for k, v in lab["findings"].items()], left=2))
    if not (metrics or phases or overview["measures"] or overview["similarity"] or overview["labs"]):
        parts.append(
            f'<p class="note">Nothing saved about this series yet: run <code>neurometry measure STORE --series '
            f"{html.escape(name)}</code>, <code>compare STORE --series {html.escape(name)} --metric cka</code> or "
            f"<code>phases STORE --series {html.escape(name)} --measure METRIC</code>.</p>"
        )
    return "\n".join(parts)


def training_section(store: Store, results: pd.DataFrame) -> str:
    """Each series of the store (``results``: one row per series name, see :func:`series_table`)."""
    return "\n".join(series_html(store, series_overview(store, name)) for name in results["series"])


def series_table(store: Store) -> pd.DataFrame:
    """What the "Over training" section iterates: one row per series of the store."""
    return pd.DataFrame({"series": store.series_names()}, dtype=object)


def per_run_rows(kind: ResultKind, results: pd.DataFrame, in_series: set[str]) -> pd.DataFrame:
    """The rows a per-run section shows: without those the "Over training" section draws (the measures of
    a series' runs and comparisons of its steps with a reference step), so a series of dozens of checkpoints
    does not repeat itself run by run. Other results saved on a series' run stay in their section."""
    if kind is MEASURE:
        return results[~results["run_id"].isin(in_series)]
    if kind is COMPARE:
        return results[~results["params"].map(lambda p: parse_series_source(p.get("source_b")) is not None).astype(bool)]
    return results


def fixed_points_section(store: Store, results: pd.DataFrame) -> str:
    """Per search: the trajectories in PC space with the points coloured by stability, their eigenvalues against
    the unit circle, and the table of points."""
    parts = []
    for search in saved_fixed_point_searches(store, results):
        title = f"{search['model']} · run {search['run']} · input {Path(str(search['input'])).name}"
        parts.append(f"<h3>{html.escape(title)}</h3>")
        parts.append(_png(plot_fixed_points(search["trajectories"], search["states"], search["stability"],
                                            search["eigenvalues"], search["continuous"], title)))
        rows = [[i, search["kind"][i], search["q"][i], search["stability"][i], search["unstable_directions"][i],
                 float(np.abs(search["eigenvalues"][i]).max()), "yes" if search["outlier"][i] else ""]
                for i in range(len(search["states"]))]
        parts.append(_table(["#", "kind", "q", "stability", "unstable directions", "max |lambda|", "outlier"], rows,
                            left=2))
    return "\n".join(parts)


def lyapunov_section(store: Store, results: pd.DataFrame) -> str:
    """Per run: the Lyapunov exponents, largest first, and the Kaplan-Yorke dimension."""
    parts = []
    for run, group in results.groupby("run_id", sort=False):
        params, extra = group["params"].iloc[0], group["extra"].iloc[0]
        parts.append(f"<h3>run {html.escape(run)} · {html.escape(str(params['model']))}</h3>")
        parts.append(f"<p>Kaplan-Yorke dimension {extra['kaplan_yorke_dimension']:.3f}, over {params['trials']} trials "
                     f"({params['discard']} steps discarded).</p>")
        parts.append(_table(["exponent", "nats per step"], [[name, value] for name, value
                                                             in zip(group["name"], group["value"], strict=True)]))
    return "\n".join(parts)


def reading_fit_section(store: Store, results: pd.DataFrame) -> str:
    """Per run and behaviour table: the layer profile of the held-out gain and surprisal against reading time
    (a figure), the table of sources, and the words with the largest residuals."""
    parts = []
    for (run, _), group in results.groupby(["run_id", "result_set"], sort=False):
        records = fit_records(group)
        settings = records[0]["settings"]
        title = f"{settings['target']} of {Path(settings['behaviour']).name} · run {run}"
        parts.append(f"<h3>{html.escape(title)}</h3>")
        parts.append(f"<p class='note'>baseline {html.escape(', '.join(settings['baseline']))}, spillover "
                     f"{settings['spillover']}, held out by {html.escape(settings['group'])}; excluded: "
                     f"{html.escape(', '.join(f'{k} {v}' for k, v in records[0]['excluded'].items()))}</p>")
        parts.append(_png(plot_reading_fit(records, settings["target"], title)))
        parts.append(_table(
            ["source", "slope ms/bit", "95% CI", "spillover ms/bit", "delta loglik/word", "delta R^2", "p", "words"],
            [[r["source"], r["slope_ms_per_bit"], f"{r['slope_ci'][0]:.2f} to {r['slope_ci'][1]:.2f}",
              r["spillover_slope_ms_per_bit"], r["delta_loglik_per_word"], r["delta_r2"], r["p_value"], r["words"]]
             for r in records]))
        final = next((r for r in records if r["source"] == "final" and r.get("largest_residuals")), None)
        if final is not None:
            parts.append("<p>The words the fit explains worst (largest residuals of the full model):</p>")
            parts.append(_table(["item", "zone", "word", "surprisal", settings["target"], "predicted", "residual"],
                                [[w["item"], w["zone"], w["word"], w["surprisal"], w["target"], w["predicted"],
                                  w["residual"]] for w in final["largest_residuals"]], left=3))
    return "\n".join(parts)


def truth_section(store: Store, results: pd.DataFrame) -> str:
    """Per run: for each setting, held-out truth accuracy and AUROC against depth per method (a figure and a
    table); then the run's transfer matrices."""
    parts = []
    transfers, baselines = TRUTH_TRANSFER.load(store), TRUTH_BASELINE.load(store)
    for run, of_run in results.groupby("run_id", sort=False):
        for result_set, group in of_run.groupby("result_set", sort=False):
            records = [{"point": r.point, "method": r.name, "accuracy": r.value, "auroc": r.extra["auroc"]}
                       for r in group.itertuples()]
            title = f"truth of {group['params'].iloc[0]['label']!r} · run {run} · {result_set}"
            parts.append(f"<h3>{html.escape(title)}</h3>")
            parts.append(_png(plot_truth(records, title)))
            methods = list(dict.fromkeys(r["method"] for r in records))
            cells = {(r["point"], r["method"]): r for r in records}
            parts.append(_table(["point", *methods], [
                [point, *(f"{cells[point, m]['accuracy']:.3f} ({cells[point, m]['auroc']:.3f})" if (point, m) in cells
                          else "" for m in methods)] for point in dict.fromkeys(r["point"] for r in records)]))
        for result_set, group in baselines[baselines["run_id"] == run].groupby("result_set", sort=False):
            parts.append(f"<p>truth read without the activations ({html.escape(result_set)}): what the model says from "
                         "its outputs alone (accuracy of the calibrated few-shot answer) and column controls, AUROC of "
                         "true against false</p>")
            parts.append(_table(["baseline", "accuracy", "AUROC", "statements"], [
                [r.name if r.point == "output" else f"control: {r.name}",
                 "" if r.value is None or r.value != r.value else f"{r.value:.3f}", f"{r.extra['auroc']:.3f}",
                 r.extra["n"]] for r in group.itertuples()]))
        for matrix in transfers[transfers["run_id"] == run].itertuples():
            names = matrix.extra["names"]
            parts.append(f"<p>transfer at {html.escape(matrix.point)} ({html.escape(matrix.name)}): accuracy, "
                         "trained on the row's set, tested on the column's</p>")
            parts.append(_table(["trained on", *names], [[name, *row] for name, row
                                                        in zip(names, matrix.extra["accuracy"], strict=True)]))
    return "\n".join(parts)


def causal_section(store: Store, results: pd.DataFrame) -> str:
    """Per run and setting: the mean log-odds log P(True) - log P(False) per alpha for true and false held-out
    statements at each point, and the shift from the smallest alpha to the largest."""
    parts = []
    for (run, result_set), group in results.groupby(["run_id", "result_set"], sort=False):
        alphas = group["params"].iloc[0]["alphas"]
        parts.append(f"<h3>{html.escape(f'run {run} · {result_set}')}</h3>")
        parts.append(f"<p>mean log P(True) - log P(False) at alpha {' / '.join(f'{a:g}' for a in alphas)}</p>")
        parts.append(_table(["point", "true statements", "false statements", "shift", "statements"], [
            [r.point, " / ".join(f"{g:.3f}" for g in r.extra["gap_true"]),
             " / ".join(f"{g:.3f}" for g in r.extra["gap_false"]), f"{r.value:+.3f}", r.extra["n"]]
            for r in group.itertuples()]))
    return "\n".join(parts)


def ood_section(store: Store, results: pd.DataFrame) -> str:
    """Per run and setting (point, label, in-distribution values): the ROC curves of the OOD scores and a table
    of AUROC (with its bootstrap interval), AUPR and FPR at 95% TPR."""
    parts = []
    for (run, result_set), group in results.groupby(["run_id", "result_set"], sort=False):
        records = [{"score": r.name, "auroc": r.value, **r.extra} for r in group.itertuples()]
        params = group["params"].iloc[0]
        title = (f"{group['point'].iloc[0]} · in: {' '.join(map(str, params['in']))} of {params['label']!r} · "
                 f"run {run}")
        parts.append(f"<h3>{html.escape(title)}</h3><p class='note'>{html.escape(result_set)}</p>")
        parts.append(_png(plot_ood(records, title)))
        parts.append(_table(["score", "AUROC", "95% interval", "AUPR", "FPR at 95% TPR", "ID rows", "OOD rows"], [
            [r["score"], f"{r['auroc']:.3f}",
             "" if not r.get("auroc_interval") else "[{:.3f}, {:.3f}]".format(*r["auroc_interval"]),
             f"{r['aupr']:.3f}", f"{r['fpr95']:.3f}", r["n_in"], r["n_out"]]
            for r in sorted(records, key=lambda r: -r["auroc"])]))
    return "\n".join(parts)


def ood_series_section(store: Store, results: pd.DataFrame) -> str:
    """Per series and setting: each OOD score's AUROC over the checkpoints against NC1 (a figure), and a table of
    the steps' NC1, the readout's training error and the AUROCs, with Spearman(NC1, AUROC) per score."""
    parts = []
    for (run, result_set), group in results.groupby(["run_id", "result_set"], sort=False):
        first = group.iloc[0]
        steps, nc1, errors = first["extra"]["steps"], first["extra"]["nc1"], first["extra"]["train_error"]
        records = [{"score": r.name, "auroc": r.extra["auroc"], "spearman": r.value,
                    "terminal_spearman": r.extra["terminal_spearman"]} for r in group.itertuples()]
        title = f"series {first['params']['series']} · {first['point']} · in: {' '.join(map(str, first['params']['in']))}"
        parts.append(f"<h3>{html.escape(title)}</h3><p class='note'>{html.escape(result_set)} · saved in run "
                     f"{html.escape(run)}</p>")
        parts.append(_png(plot_ood_series(steps, nc1, records, title)))
        parts.append(_table(["step", "NC1", "train error", *(r["score"] for r in records)], [
            [f"{step:g}", f"{value:.4g}", f"{error:.3f}", *(f"{r['auroc'][i]:.3f}" for r in records)]
            for i, (step, value, error) in enumerate(zip(steps, nc1, errors, strict=True))]))
        parts.append(_table(["score", "Spearman(NC1, AUROC)", "terminal phase only"], [
            [r["score"], "" if r["spearman"] is None else f"{r['spearman']:+.3f}",
             "" if r["terminal_spearman"] is None else f"{r['terminal_spearman']:+.3f}"] for r in records]))
    return "\n".join(parts)


SECTIONS: dict[ResultKind, tuple[str, Callable[[Store, pd.DataFrame], str]]] = {
    MEASURE: ("Geometry by depth", measure_section),
    COMPARE: ("Similarity", compare_section),
    TRAINING: ("Over training", training_section),
    PROBE: ("Probes", probe_section),
    ENCODE: ("Encoding models", encode_section),
    STEER_SWEEP: ("Steering vectors", steer_sweep_section),
    PATCH: ("Activation patching", patch_section),
    DIFF: ("Model diffing", diff_section),
    SAE_EVAL: ("Sparse autoencoders: evaluation", sae_eval_section),
    SAE_FEATURES: ("Sparse autoencoders: features", sae_features_section),
    FIXED_POINTS: ("Fixed points", fixed_points_section),
    LYAPUNOV: ("Lyapunov spectra", lyapunov_section),
    READING_FIT: ("Reading times", reading_fit_section),
    TRUTH_PROBE: ("Truth directions", truth_section),
    TRUTH_CAUSAL: ("Truth directions: the causal test", causal_section),
    OOD: ("Out-of-distribution detection", ood_section),
    OOD_SERIES: ("Out-of-distribution detection over training", ood_series_section),
}
"""Result kind -> (heading, section function). A new kind of result plugs in here by name."""

LOADERS: dict[ResultKind, Callable[[Store], pd.DataFrame]] = {TRAINING: series_table}
"""Sections that read more than their kind's rows: "Over training" draws every series (its training
metrics, phases, lab findings, and the measures and comparisons of its runs)."""

COVERED = {kind.name for kind in (*SECTIONS, PHASES, LAB, TRUTH_TRANSFER, TRUTH_BASELINE)}  # PHASES and LAB are drawn by "Over training"


def build_report(store: str | Path | Store, out: str | Path) -> Path:
    """Write the report of every result in ``store`` to ``out`` (an .html file); returns its path."""
    if isinstance(store, (str, Path)):
        if not Path(store).is_dir():
            raise NeurometryError(f"no store at {store}; record one with `neurometry record` first")
        store = open_store(store)
    out = Path(out)
    if out.exists() and out.is_dir():
        raise NeurometryError(f"{out} is a folder; give a file name such as report.html")
    if not out.parent.is_dir():
        raise NeurometryError(f"folder {out.parent} does not exist; create it or choose another -o")
    runs = store.runs()
    in_series = series_runs(store)
    body = [f"<h1>neurometry report</h1><p class='note'>{html.escape(str(store.path.resolve()))}</p>"]
    overview = [[r.run_id, r.model, r.reduce, r.n_inputs, r.committed_rows, r.status] for r in runs
                if r.run_id not in in_series]
    for name in store.series_names():  # one row per series: its runs are in the "Over training" section
        held = [r for r in runs if r.run_id in in_series and in_series[r.run_id].series == name]
        if held:
            done = sum(r.complete for r in held)
            steps = sorted(in_series[r.run_id].step for r in held)
            overview.append([f"series {name}: {len(held)} runs, steps {steps[0]}..{steps[-1]}", held[-1].model,
                             held[-1].reduce, held[-1].n_inputs, sum(r.committed_rows for r in held),
                             "complete" if done == len(held) else f"{done} of {len(held)} complete"])
    body.append(_table(["run", "model", "reduce", "inputs", "rows", "status"], overview, left=3))
    nav, sections = [], []
    for kind, (heading, section) in SECTIONS.items():
        subset = LOADERS[kind](store) if kind in LOADERS else per_run_rows(kind, kind.load(store), set(in_series))
        if subset.empty:
            continue
        anchor = f"s-{kind.name}"
        nav.append(f'<a href="#{anchor}">{html.escape(heading)}</a>')
        sections.append(f'<h2 id="{anchor}">{html.escape(heading)}</h2>\n{section(store, subset)}')
    others = sorted(set(listing(store)["kind"]) - COVERED)
    if not sections:
        body.append(
            '<p class="note">No results yet. Run <code>neurometry measure</code>, <code>compare</code>, '
            "<code>probe</code>, <code>encode</code> or <code>sae eval|features</code> on this store (or "
            "<code>steer eval</code>, <code>patch</code> or <code>diff</code> with <code>--store</code> into "
            "it), then build the report again.</p>"
        )
    if others:
        body.append(f'<p class="note">Results of kinds without a section: {html.escape(", ".join(others))}</p>')
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>neurometry · {html.escape(store.path.name)}</title>"
        f"<style>{CSS}</style></head><body><nav>{''.join(nav)}</nav>{''.join(body)}{''.join(sections)}</body></html>"
    )
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(out)
    except OSError as exc:
        if is_disk_full(exc):
            raise NeurometryError(f"the disk is full while writing {out}; free some space and build the report again") from None
        raise NeurometryError(f"cannot write {out} ({exc.strerror or exc}); choose another -o") from None
    finally:
        tmp.unlink(missing_ok=True)  # what a failed write left; gone after a successful replace anyway
    return out
