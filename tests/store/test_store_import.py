"""Arrays from elsewhere (brain data, other toolkits) imported as a store point: all or nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neurometry import NeurometryError, open_store
from neurometry.store import import_array


def test_import_round_trips_with_metadata(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 24)).astype(np.float32)
    meta = pd.DataFrame({"stimulus": np.arange(1000) % 92, "region": ["IT"] * 1000})
    store = open_store(tmp_path / "s", create=True)
    import_array(store, "monkey", "IT", (x[lo : lo + 77] for lo in range(0, 1000, 77)), 1000, meta, source="brain")
    again = open_store(tmp_path / "s")
    np.testing.assert_array_equal(again.activations("IT", run="monkey"), x)
    assert again.metadata("monkey")["stimulus"].tolist() == meta["stimulus"].tolist()
    assert again.run_info("monkey").complete and again.run_info("monkey").model == "brain"
    streamed = np.concatenate(list(again.iter_chunks("IT", run="monkey", chunk_rows=300)))
    np.testing.assert_array_equal(streamed, x)


def test_failed_import_leaves_no_run(tmp_path):
    x = np.ones((100, 4), dtype=np.float32)
    x[60, 1] = np.nan
    store = open_store(tmp_path / "s", create=True)
    with pytest.raises(NeurometryError, match="not finite"):
        import_array(store, "bad", "p", (x[lo : lo + 20] for lo in range(0, 100, 20)), 100)
    assert store.runs() == []
    assert not (tmp_path / "s" / "arrays" / "bad").exists()
    with pytest.raises(NeurometryError, match="rows were given"):
        import_array(store, "short", "p", iter([x[:10]]), 100)
