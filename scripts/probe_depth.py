"""The probing figures and tables of docs/probe.md: MiniLM and SmolLM2-135M, every residual point,
last-token representation, 5-fold probes. By default the demo's four bundled tasks (`PROBE_TASKS` of
neurometry.demo); with --hard the sets whose answer needs the context (agreement across an attractor,
negation scope, and the six true/false sets of Marks & Tegmark 2023), each probed with grouped folds so
that a minimal pair never straddles training and test.

    .venv/bin/python scripts/probe_depth.py [--out benchmarks/out/probe-depth] [--figure docs/img/probe-depth.png]
    .venv/bin/python scripts/probe_depth.py --hard [--figure docs/img/probe-depth-hard.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from neurometry.demo import bundled_data, plot_probe_tasks, print_probe_tasks, probe_tasks

torch.set_num_threads(2)

MODELS = ["minilm", "smollm2-135m"]
HARD_TASKS = {  # task: (bundled file, or truth set of neurometry.datasets; label column; group column)
    "agreement": ("probe_agreement.jsonl", "agreement", "pair"),
    "negation": ("probe_negation.jsonl", "sentiment", "pair"),
    "cities": ("truth:cities", "truth", "group"),
    "neg_cities": ("truth:neg_cities", "truth", "group"),
    "sp_en_trans": ("truth:sp_en_trans", "truth", "group"),
    "neg_sp_en_trans": ("truth:neg_sp_en_trans", "truth", "group"),
    "larger_than": ("truth:larger_than", "truth", "group"),
    "smaller_than": ("truth:smaller_than", "truth", "group"),
}
RANDOM_FOLDS = ("cities", "negation")  # also probed with ungrouped folds, to show what grouping prevents
DEPTHS = [0, 1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1]  # MiniLM's 7 points; SmolLM2's embed, resid.4, .9, ..., .29


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/probe-depth"))
    ap.add_argument("--figure", type=Path, default=None,
                    help="default docs/img/probe-depth.png (--hard: docs/img/probe-depth-hard.png)")
    ap.add_argument("--hard", action="store_true", help="the context-dependent sets, with grouped folds")
    ap.add_argument("--replot", action="store_true", help="with --hard: tables and figure from OUT/hard.json")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.hard:
        hard(args.out, args.figure or Path("docs/img/probe-depth-hard.png"), args.replot)
        return
    figure = args.figure or Path("docs/img/probe-depth.png")
    records = probe_tasks(MODELS, args.out / "store", progress=True)
    print_probe_tasks(records)
    plot_probe_tasks(records, figure)
    print(f"wrote {figure}")


def hard(out: Path, figure: Path, replot: bool = False) -> None:
    """Record each model over each set of HARD_TASKS (a complete run is left as it is), probe every point
    with folds grouped by the set's group column, print the score by relative depth, and draw it (two rows
    of four panels). ``replot``: read the records of an earlier run from OUT/hard.json instead."""
    if replot:
        records = json.loads((out / "hard.json").read_text())
    else:
        records = hard_probe_tasks(MODELS, out)
        (out / "hard.json").write_text(json.dumps(records, indent=1, default=float))
    print_by_depth([r for r in records if r["folds"] == "grouped"])
    print("\nungrouped (random) folds against grouped folds:")
    print_by_depth([r for r in records if r["task"] in RANDOM_FOLDS], split=True)
    grouped = [r for r in records if r["folds"] == "grouped"]
    tasks = list(HARD_TASKS)
    halves = [out / "hard-1.png", out / "hard-2.png"]
    for half, names in zip(halves, (tasks[:4], tasks[4:]), strict=True):
        plot_probe_tasks([r for r in grouped if r["task"] in names], half)
    stack_images(halves, figure)
    print(f"wrote {figure} and {out / 'hard.json'}")


def stack_images(paths: list[Path], out: Path) -> None:
    """The images at ``paths`` one above the other, in one PNG."""
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in paths]
    stacked = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), "white")
    top = 0
    for image in images:
        stacked.paste(image, (0, top))
        top += image.height
    stacked.save(out, optimize=True)


def hard_probe_tasks(models: list[str], out: Path) -> list[dict]:
    """One record per (model, task, folds, point): the probe's result with its relative depth."""
    from threadpoolctl import threadpool_limits

    from neurometry.datasets import export_truth
    from neurometry.models import load_model
    from neurometry.probe import probe
    from neurometry.record import record
    from neurometry.store import open_store

    store_path = out / "store"
    records = []
    for name in models:
        model = None
        for task, (source, label, group) in HARD_TASKS.items():
            run = f"{name}-{task}"
            data = export_truth(source.split(":")[1], out / "truth") if source.startswith("truth:") else bundled_data(source)
            done = store_path.exists() and any(r.run_id == run and r.complete for r in open_store(store_path).runs())
            if not done:
                model = model or load_model(name)
                record(model, data, ["embed", "resid.*"], store_path, reduce="last", run=run, progress=True)
            store = open_store(store_path)
            meta = store.metadata(run)
            points = [p.point for p in store.points(run)]
            for folds in ("grouped", "random") if task in RANDOM_FOLDS else ("grouped",):
                for i, point in enumerate(points):
                    x = store.activations(point, run=run)
                    with threadpool_limits(1):  # many small fits on a shared 2-core machine
                        result = probe(x, meta[label].to_numpy(), "logistic", folds=5, seed=0,
                                       groups=meta[group].to_numpy() if folds == "grouped" else None)
                    records.append({"model": name, "task": task, "folds": folds, "point": point,
                                    "depth": i / (len(points) - 1), **result.to_dict()})
                print(f"{run} ({folds} folds): best {max(r['score'] for r in records[-len(points):]):.3f}",
                      file=sys.stderr, flush=True)
    return records


def print_by_depth(records: list[dict], split: bool = False) -> None:
    """Held-out accuracy at the relative depths DEPTHS, the best point, and where the set becomes
    decodable: the first point whose fold interval lies above 0.6 (chance is 0.5)."""
    from neurometry.tables.text import print_table

    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["task"], r["model"], r["folds"]), []).append(r)
    rows = []
    for (task, model, folds), group in groups.items():
        at = [min(group, key=lambda r, d=d: abs(r["depth"] - d)) for d in DEPTHS]
        best = max(group, key=lambda r: r["score"])
        first = next((r for r in group if r["ci_low"] > 0.6), None)
        rows.append([task, model, *([folds] if split else []), *(f"{r['score']:.3f}" for r in at),
                     f"{best['score']:.3f} ({best['point']}, {best['depth']:.2f})",
                     f"{first['point']} ({first['depth']:.2f})" if first else "never"])
    depths = ["embed", *(f"{d:.2f}" for d in DEPTHS[1:])]
    print_table(["task", "model", *(["folds"] if split else []), *depths, "best (point, depth)",
                 "decodable from"], rows)


if __name__ == "__main__":
    main()
