"""Tables of the language verbs: word surprisal runs and reading-time fits."""

from __future__ import annotations

import math

from neurometry.tables.text import print_table


def _bits(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def print_surprisal(document: dict, shown: int) -> None:
    """A summary of a surprisal run: its settings, the mean per source (output and lens layers), and the
    ``shown`` most surprising words."""
    rows = document["results"]
    settings = document["settings"]
    scored = [r for r in rows if r["surprisal"] is not None]
    print(f"{len(rows)} words of {len({r['item'] for r in rows})} texts scored by {document['model']} "
          f"into run {document['run']} of {document['store']}")
    first = f"; {settings['missing_first_words']} first words without surprisal (no BOS token)" \
        if settings["missing_first_words"] else ""
    print(f"correction: {settings['correction']}; window {settings['window']} tokens, overlap {settings['overlap']}; "
          f"BOS {settings['bos']!r}{first}")
    sources = ["surprisal"] + [key for key in rows[0] if key.startswith("surprisal_")] if rows else []
    means = []
    for source in sources:
        values = [r[source] for r in rows if r[source] is not None]
        entropies = [r[source.replace("surprisal", "entropy")] for r in rows
                     if r[source.replace("surprisal", "entropy")] is not None]
        means.append([source.replace("surprisal_", "") if source != "surprisal" else "output",
                      _bits(sum(values) / len(values)) if values else "-",
                      _bits(sum(entropies) / len(entropies)) if entropies else "-"])
    print_table(["source", "mean surprisal (bits)", "mean entropy (bits)"], means)
    if scored and shown:
        print(f"\nthe {min(shown, len(scored))} most surprising words")
        top = sorted(scored, key=lambda r: -r["surprisal"])[:shown]
        print_table(["item", "zone", "word", "surprisal", "entropy"],
                    [[str(r["item"]), str(r["zone"]), r["word"], _bits(r["surprisal"]), _bits(r["entropy"])]
                     for r in top])


def print_reading_fit(document: dict) -> None:
    """One row per surprisal source: slope with its interval, spillover slope, held-out gains, p-value."""
    print(f"{document['target']} of {document['behaviour']} on run {document['run']}: baseline "
          f"{', '.join(document['baseline'])}, spillover {document['spillover']}, held out by {document['group']}")
    rows = []
    for r in document["results"]:
        low, high = r["slope_ci"]
        spill = r["spillover_slope_ms_per_bit"]
        rows.append([r["source"], f"{r['slope_ms_per_bit']:.2f} [{low:.2f}, {high:.2f}]",
                     "-" if spill is None else f"{spill:.2f}", f"{r['delta_loglik_per_word']:.4f}",
                     f"{r['delta_r2']:.4f}", "-" if r["p_value"] is None else f"{r['p_value']:.3g}", str(r["words"])])
    print_table(["source", "slope ms/bit [95% CI]", "spillover ms/bit", "delta loglik/word", "delta R2", "p", "words"],
                rows)
    if document.get("encoding"):
        print(f"\nword states encoding the baseline's residual {document['target']} (ridge, one {document['group']} "
              "held out at a time): Pearson r of the held-out predictions")
        print_table(["point", "r"], [[e["point"], f"{e['r']:.3f}"] for e in document["encoding"]])
    if document.get("largest_residuals"):
        print("\nthe words the fit explains worst (largest residuals of the full model)")
        print_table(["item", "zone", "word", "surprisal", document["target"], "predicted", "residual"],
                    [[str(w["item"]), str(w["zone"]), w["word"], f"{w['surprisal']:.2f}", f"{w['target']:.0f}",
                      f"{w['predicted']:.0f}", f"{w['residual']:+.0f}"] for w in document["largest_residuals"][:10]])
    excluded = ", ".join(f"{rule} {count}" for rule, count in document["excluded"].items())
    print(f"excluded: {excluded}")
    for key, note in document["notes"].items():
        print(f"{key}: {note}")
