"""Tables of the detect verbs."""

from __future__ import annotations

from neurometry.tables.text import print_table


def print_truth(document: dict) -> None:
    """Points down, methods across: held-out accuracy (AUROC); then each transfer matrix."""
    records = document["results"]
    methods = list(dict.fromkeys(r["method"] for r in records))
    cells = {(r["point"], r["method"]): r for r in records}
    grouped = f", grouped by {document['group']}" if document["group"] else ""
    folds = records[0]["folds"] if records else 0
    print(f"held-out truth decoding of {document['label']!r} ({folds} folds{grouped}): accuracy (AUROC)")
    points = list(dict.fromkeys(r["point"] for r in records))
    print_table(["point", *methods], [[p, *(f"{cells[p, m]['accuracy']:.3f} ({cells[p, m]['auroc']:.3f})"
                                           if (p, m) in cells else "-" for m in methods)] for p in points])
    for matrix in document["transfer"]:
        print(f"\ntransfer at {matrix['point']} ({matrix['method']}): accuracy, trained on the row's set")
        names = matrix["names"]
        print_table(["trained on", *names], [[name, *("-" if v is None else f"{v:.3f}" for v in row)]
                                             for name, row in zip(names, matrix["accuracy"], strict=True)])
    if document.get("baselines"):
        print_baselines(document["baselines"])


def print_baselines(records: list[dict]) -> None:
    """Truth read without the activations: the output-side baselines (accuracy of the calibrated few-shot answer)
    and the column controls (held out on the probes' folds), with AUROC."""
    print("\nwithout the activations: accuracy (AUROC)")
    print_table(["baseline", "statements", "accuracy", "AUROC"],
                [[r["method"] if r["point"] == "output" else f"control: {r['method']}", r["n"],
                  "-" if r["accuracy"] is None else f"{r['accuracy']:.3f}", f"{r['auroc']:.3f}"] for r in records])


def print_causal(document: dict) -> None:
    """Points down: the mean log-odds gap per alpha for true and false statements, and the shift."""
    alphas = document["results"][0]["alphas"] if document["results"] else []
    print(f"causal test of the truth direction ({document['model']}, {document['statements']} held-out statements, "
          f"{len(document['shots'])} shots): mean log P(True) - log P(False) at alpha "
          f"{' / '.join(f'{a:g}' for a in alphas)}")
    print_table(["point", "true statements", "false statements", "shift"],
                [[r["point"], " / ".join(f"{g:.3f}" for g in r["gap_true"]),
                  " / ".join(f"{g:.3f}" for g in r["gap_false"]), f"{r['shift']:+.3f}"] for r in document["results"]])


def print_ood(document: dict) -> None:
    """One row per score: AUROC, AUPR and FPR at 95% TPR with their bootstrap intervals."""
    print(f"out-of-distribution at {document['point']}: in = {', '.join(document['in'])} "
          f"({document['in_rows']} rows scored, {document['fit_rows']} fitted), out {document['out_rows']} rows; "
          f"logits from {document['classifier']}")

    def cell(r: dict, key: str, interval: str) -> str:
        bounds = r.get(interval)
        return f"{r[key]:.3f}" + (f" [{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds else "")

    print_table(["score", "AUROC", "AUPR", "FPR@95TPR"],
                [[r["score"], cell(r, "auroc", "auroc_interval"), cell(r, "aupr", "aupr_interval"),
                  cell(r, "fpr95", "fpr_at_95_tpr_interval")] for r in document["results"]])


def print_ood_series(document: dict) -> None:
    """Steps down: NC1, the readout's training error and each score's AUROC; then Spearman(NC1, AUROC)."""
    records = document["results"]
    terminal = document["terminal_start"]
    print(f"out-of-distribution over series {document['series']!r} at {document['point']}: in = "
          f"{', '.join(document['in'])} ({document['in_rows']} rows scored, {document['fit_rows']} fitted), out "
          f"{document['out_rows']} rows; terminal phase from step "
          f"{document['steps'][terminal] if terminal is not None else 'none'}")
    print_table(["step", "NC1", "train error", *(r["score"] for r in records)],
                [[f"{step:g}", f"{nc1:.4g}", f"{error:.3f}", *(f"{r['auroc'][i]:.3f}" for r in records)]
                 for i, (step, nc1, error) in enumerate(zip(document["steps"], document["nc1"],
                                                            document["train_error"], strict=True))])

    def rho(value: float | None) -> str:
        return "-" if value is None else f"{value:+.3f}"

    print("\nSpearman(NC1, AUROC): negative = separates better as NC1 falls")
    print_table(["score", "all steps", "terminal phase"],
                [[r["score"], rho(r["spearman"]), rho(r["terminal_spearman"])] for r in records])
