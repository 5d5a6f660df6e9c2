"""Tables of `neurometry probe` and `neurometry encode`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from neurometry.tables.text import print_table


def print_probe(document: dict[str, Any]) -> None:
    records = document["results"]
    if records and records[0]["kind"] == "sparse":
        ks = sorted({r["k"] for r in records})
        points = list(dict.fromkeys(r["point"] for r in records))
        score = {(r["point"], r["k"]): r["score"] for r in records}
        print_table(
            ["point", *[f"k={k}" for k in ks]],
            [[p, *(f"{score[p, k]:.3f}" if (p, k) in score else "-" for k in ks)] for p in points],
        )
        top = {r["point"]: r["units"] for r in records if r["k"] == 1}
        print("best single units: " + ", ".join(f"{p}: {u[0]}" for p, u in top.items() if u))
        return
    headers = ["point", "kind", "score", "95% CI", "baseline"]
    control = any("selectivity" in r for r in records)
    if control:
        headers += ["control", "selectivity"]
    rows = []
    for r in records:
        row = [
            r["point"],
            r["kind"],
            f"{r['score']:.4f}",
            f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
            f"{r['baseline']:.4f}",
        ]
        if control:
            row += [f"{r['control_score']:.4f}", f"{r['selectivity']:.4f}"]
        rows.append(row)
    print_table(headers, rows)


def print_encode(document: dict[str, Any]) -> None:
    rows = [
        [r["point"], f"{r['score']:.4f}", f"{r['median_r']:.4f}", f"{np.max(r['target_scores']):.4f}"]
        for r in document["results"]
    ]
    print_table(["point", "mean r", "median r", "max r"], rows)
    counts = pd.Series(document["best_points"]).value_counts()
    print("best point per target: " + ", ".join(f"{p} ({n})" for p, n in counts.items()))
