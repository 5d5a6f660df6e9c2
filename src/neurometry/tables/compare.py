"""Tables of `neurometry compare`."""

from __future__ import annotations

from typing import Any

from neurometry.tables.text import print_table


def print_comparison(document: dict[str, Any]) -> None:
    """A points x points grid when there is nothing but values, else one line per pair. Statistics a
    record lacks (a comparison without permutations or bootstrap, a record of another producer) and
    pairs missing from a grid print as ``-``."""
    records = document["results"]
    rows_a = list(dict.fromkeys(r["point_a"] for r in records))
    cols_b = list(dict.fromkeys(r["point_b"] for r in records))
    has_stats = any(r.get("p_value") is not None or r.get("ci_low") is not None for r in records)
    metric = records[0]["metric"] if records else ""
    if not has_stats and len(rows_a) > 1 and len(cols_b) > 1:
        value = {(r["point_a"], r["point_b"]): r["value"] for r in records}
        print_table(
            [f"{metric}: A \\ B", *cols_b],
            [[pa, *(_number(value.get((pa, pb)), ".4f") for pb in cols_b)] for pa in rows_a],
        )
    elif has_stats and len(rows_a) > 1 and 1 < len(cols_b) <= 4:
        # a profile against a few targets (e.g. brain regions): one column per target, statistics inline
        by_pair = {(r["point_a"], r["point_b"]): r for r in records}
        print_table(
            [f"{metric}: A \\ B", *cols_b],
            [[pa, *(_cell(by_pair[pa, pb]) if (pa, pb) in by_pair else "-" for pb in cols_b)] for pa in rows_a],
        )
        print("cells: value [bootstrap interval] p (permutation test); * p < 0.05")
    else:
        headers = ["point A", "point B", metric]
        if any(r.get("p_value") is not None for r in records):
            headers += ["p", "null mean"]
        if any(r.get("ci_low") is not None for r in records):
            headers += ["CI low", "CI high"]
        rows = []
        for r in records:
            row = [r["point_a"], r["point_b"], _number(r["value"], ".4f")]
            if "p" in headers:
                row += [_number(r.get("p_value"), ".4g"), _number(r.get("null_mean"), ".4f")]
            if "CI low" in headers:
                row += [_number(r.get("ci_low"), ".4f"), _number(r.get("ci_high"), ".4f")]
            rows.append(row)
        print_table(headers, rows)
    ceiling = document.get("noise_ceiling")
    if ceiling:
        print(
            f"\nnoise ceiling of {ceiling['point_b']} ({ceiling['compare']}): "
            f"lower {ceiling['lower']:.4f}, upper {ceiling['upper']:.4f}"
        )
    notes = sorted({r["note"] for r in records if r.get("note")})
    for note in notes:
        print(f"note: {note}")


def _cell(r: dict[str, Any]) -> str:
    text = _number(r["value"], ".4f")
    if r.get("ci_low") is not None:
        text += f" [{_number(r['ci_low'], '.3f')}, {_number(r.get('ci_high'), '.3f')}]"
    if r.get("p_value") is not None:
        text += f" p={r['p_value']:.3g}{'*' if r['p_value'] < 0.05 else ''}"
    return text


def _number(value: Any, spec: str) -> str:
    """``value`` formatted with ``spec``, or ``-`` when it was not computed (None)."""
    return "-" if value is None else format(value, spec)
