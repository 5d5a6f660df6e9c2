"""Saved reading fits read back in the order a reader expects: the model's output, then the lens layers by
depth (the catalog sorts points it never stored by name, which puts resid.10 before resid.2)."""

from __future__ import annotations

import pandas as pd

from neurometry.workflows.language import fit_records


def test_fit_records_put_the_output_first_and_the_layers_in_depth_order():
    names = ["resid.10", "final", "resid.2", "resid.0", "resid.29", "resid.1"]
    group = pd.DataFrame({"point": names, "extra": [{"delta_loglik_per_word": i} for i in range(len(names))]})
    records = fit_records(group)
    assert [r["source"] for r in records] == ["final", "resid.0", "resid.1", "resid.2", "resid.10", "resid.29"]
    assert records[0]["delta_loglik_per_word"] == 1
