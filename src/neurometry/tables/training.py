"""Tables of the training axis: measures over a series, similarity to a reference step, phases, a lab's run."""

from __future__ import annotations

from neurometry.tables.text import print_table


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"


def print_series_measures(records: list[dict]) -> None:
    """One table per measure: steps down, points across."""
    points = list(dict.fromkeys(r["point"] for r in records))
    steps = list(dict.fromkeys(r["step"] for r in records))
    for i, name in enumerate(dict.fromkeys(r["measure"] for r in records)):
        values = {(r["step"], r["point"]): r["value"] for r in records if r["measure"] == name}
        if i:
            print()
        print(name)
        print_table(["step", *points], [[str(s), *(_fmt(values.get((s, p))) for p in points)] for s in steps])


def print_series_similarity(document: dict) -> None:
    """Steps down, points across: each step's similarity with the reference step."""
    rows = document["results"]
    points = list(dict.fromkeys(r["point"] for r in rows))
    steps = list(dict.fromkeys(r["step"] for r in rows))
    values = {(r["step"], r["point"]): r["value"] for r in rows}
    print(f"{document['metric']} of each step with step {document['reference_step']} of {document['series']}")
    print_table(["step", *points], [[str(s), *(_fmt(values.get((s, p))) for p in points)] for s in steps])


def print_step_matrix(document: dict) -> None:
    steps = document["steps"]
    print(f"{document['metric']} between steps of {document['series']} at {document['point']}")
    print_table(["step", *map(str, steps)],
                [[str(s), *(_fmt(v) for v in row)] for s, row in zip(steps, document["matrix"], strict=True)])


def print_phases(document: dict) -> None:
    """The phases of a curve with their step ranges and means."""
    where = f" at {document['point']}" if document.get("point") else ""
    penalty = f", penalty {document['penalty']:.4g}" if document.get("penalty") is not None else ""
    print(f"phases of {document['curve']}{where} over {document['series']} "
          f"({document['method']}, transform {document['transform']}{penalty})")
    print_table(["phase", "steps", "checkpoints", "mean"],
                [[str(i + 1), f"{p['start_step']:g}..{p['end_step']:g}", str(p["n_points"]), _fmt(p["mean"])]
                 for i, p in enumerate(document["phases"])])
    if document["boundaries"]:
        print("boundaries at steps " + ", ".join(f"{b:g}" for b in document["boundaries"]))


def print_lab(document: dict) -> None:
    """A lab's checkpoints (a few), what it found, and its phases."""
    results = document["results"]
    columns = [c for c in ("train_loss", "test_loss", "train_accuracy", "test_accuracy")
               if any(c in r for r in results)]
    shown = results if len(results) <= 12 else [results[round(i * (len(results) - 1) / 11)] for i in range(12)]
    print(f"lab {document['lab']}: {document['title']} ({len(results)} checkpoints, {document['seconds']:.0f} s)")
    print_table(["step", *columns], [[str(r["step"]), *(_fmt(r.get(c)) for c in columns)] for r in shown])
    print()
    print("found:")
    for line in document["describe"]:
        print(f"  {line}")
    print()
    print_phases({**document["phases"], "series": document["series"], "point": None})
    print(f"checkpoints: {document['checkpoints']}")
