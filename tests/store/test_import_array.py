"""import_file: .npy, .mat and .parquet arrays into a store as a point of a new run; every refusal
leaves nothing behind, and nothing is ever unpickled."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import scipy.io

from neurometry import NeurometryError, open_store
from neurometry.store import importing
from neurometry.store.importing import import_file
from neurometry.store.writer import import_array


@pytest.fixture
def x():
    return np.random.default_rng(0).normal(size=(30, 5)).astype(np.float32)


def test_npy_with_metadata_round_trips_exactly(tmp_path, x):
    np.save(tmp_path / "brain.npy", x)
    meta = pd.DataFrame({"stimulus": [f"s{i}" for i in range(30)], "category": np.arange(30) % 3})
    meta.to_parquet(tmp_path / "rows.parquet", index=False)
    result = import_file(tmp_path / "brain.npy", tmp_path / "s", "IT", metadata=tmp_path / "rows.parquet")
    assert (result.run_id, result.point, result.n_rows, result.shape, result.dtype) == ("brain", "IT", 30, (5,), "float32")
    assert result.source == "import:brain.npy" and result.notes == []
    store = open_store(tmp_path / "s")
    np.testing.assert_array_equal(store.activations("IT", run="brain"), x)
    got = store.metadata("brain")
    assert list(got.columns[:2]) == ["row", "input_row"]  # data columns follow, in the catalog's (sorted) order
    assert set(got.columns[2:]) == {"stimulus", "category"}
    pd.testing.assert_frame_equal(got[["stimulus", "category"]], meta)
    info = store.run_info("brain")
    assert info.complete and info.model == "import:brain.npy" and info.committed_rows == 30


def test_without_metadata_rows_get_their_index(tmp_path, x):
    np.save(tmp_path / "a.npy", x)
    import_file(tmp_path / "a.npy", tmp_path / "s", "p")
    meta = open_store(tmp_path / "s").metadata("a")
    assert list(meta.columns) == ["row", "input_row"] and meta["row"].tolist() == list(range(30))


def test_nd_rows_float16_float64_ints_and_a_second_run(tmp_path):
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(7, 3, 4)).astype(np.float16)
    np.save(tmp_path / "maps.npy", maps)
    result = import_file(tmp_path / "maps.npy", tmp_path / "s", "conv")
    assert result.shape == (3, 4) and result.dtype == "float16"
    wide = rng.normal(size=(7, 2))
    np.save(tmp_path / "wide.npy", wide)
    result = import_file(tmp_path / "wide.npy", tmp_path / "s", "w")
    assert result.dtype == "float32" and result.notes == ["float64 values stored as float32 (rounded to float32's 7 significant digits)"]
    counts = np.arange(14, dtype=np.int64).reshape(7, 2)
    np.save(tmp_path / "counts.npy", counts)
    result = import_file(tmp_path / "counts.npy", tmp_path / "s", "spikes", run="spikes-1")
    assert result.notes == ["int64 values stored as float32 (every value exactly)"]
    store = open_store(tmp_path / "s")
    np.testing.assert_array_equal(store.activations("conv"), maps)
    np.testing.assert_array_equal(store.activations("w"), wide.astype(np.float32))
    np.testing.assert_array_equal(store.activations("spikes", run="spikes-1"), counts.astype(np.float32))
    assert [r.run_id for r in store.runs()] == ["maps", "wide", "spikes-1"]


def test_large_npy_is_streamed_in_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(importing, "BLOCK_BYTES", 1000)  # many blocks over a small file
    y = np.random.default_rng(2).normal(size=(500, 9)).astype(np.float32)
    np.save(tmp_path / "y.npy", y)
    import_file(tmp_path / "y.npy", tmp_path / "s", "p")
    np.testing.assert_array_equal(open_store(tmp_path / "s").activations("p"), y)
    y[437, 3] = np.inf
    np.save(tmp_path / "bad.npy", y)
    with pytest.raises(NeurometryError, match=r"1 NaN or Inf values, the first in row 437"):
        import_file(tmp_path / "bad.npy", tmp_path / "s", "p")


def test_mat_picks_its_only_matrix_or_the_key(tmp_path, x):
    other = np.arange(12.0).reshape(4, 3)
    scipy.io.savemat(tmp_path / "one.mat", {"resp": x, "n": 5.0, "labels": np.arange(30.0), "name": "IT"})
    result = import_file(tmp_path / "one.mat", tmp_path / "s", "IT")
    assert result.run_id == "one"
    np.testing.assert_array_equal(open_store(tmp_path / "s").activations("IT"), x)
    scipy.io.savemat(tmp_path / "two.mat", {"resp": x, "other": other, "column": np.arange(6.0)[:, None]})
    with pytest.raises(NeurometryError, match=r"2 numeric matrices; its variables: .*other \(4x3 double\).*--key"):
        import_file(tmp_path / "two.mat", tmp_path / "s", "p")
    import_file(tmp_path / "two.mat", tmp_path / "s", "o", run="two-other", key="other")
    np.testing.assert_array_equal(open_store(tmp_path / "s").activations("o"), other.astype(np.float32))
    import_file(tmp_path / "two.mat", tmp_path / "s", "c", run="two-column", key="column")  # N x 1: N rows
    assert open_store(tmp_path / "s").activations("c").shape == (6, 1)
    with pytest.raises(NeurometryError, match=r"no variable 'resq' \(did you mean resp\?\)"):
        import_file(tmp_path / "two.mat", tmp_path / "s", "p", run="r", key="resq")
    with pytest.raises(NeurometryError, match="row vector"):
        import_file(tmp_path / "one.mat", tmp_path / "s", "p", run="r", key="labels")
    with pytest.raises(NeurometryError, match="MATLAB char, not a numeric array"):
        import_file(tmp_path / "one.mat", tmp_path / "s", "p", run="r", key="name")
    with pytest.raises(NeurometryError, match="--key picks a variable of a .mat file"):
        np.save(tmp_path / "x.npy", x)
        import_file(tmp_path / "x.npy", tmp_path / "s", "p", key="resp")


def test_parquet_numeric_columns_or_one_list_column(tmp_path, x):
    pd.DataFrame(x, columns=[f"u{i}" for i in range(5)]).to_parquet(tmp_path / "cols.parquet")
    import_file(tmp_path / "cols.parquet", tmp_path / "s", "p")
    np.testing.assert_array_equal(open_store(tmp_path / "s").activations("p"), x)

    table = pd.DataFrame({"id": [f"r{i}" for i in range(30)], "emb": list(x), "label": np.arange(30) % 2})
    table.to_parquet(tmp_path / "emb.parquet")
    result = import_file(tmp_path / "emb.parquet", tmp_path / "s", "e")
    assert result.metadata_columns == ["id", "label"]
    store = open_store(tmp_path / "s")
    np.testing.assert_array_equal(store.activations("e"), x)
    assert store.metadata("emb")["id"].tolist() == table["id"].tolist()

    nested = np.arange(24.0).reshape(4, 2, 3)
    pd.DataFrame({"maps": [m.tolist() for m in nested]}).to_parquet(tmp_path / "nested.parquet")
    import_file(tmp_path / "nested.parquet", tmp_path / "s", "n")
    np.testing.assert_array_equal(open_store(tmp_path / "s").activations("n"), nested.astype(np.float32))

    pd.DataFrame({"v": [[1.0, 2.0], [3.0]]}).to_parquet(tmp_path / "ragged.parquet")
    with pytest.raises(NeurometryError, match=r"different shapes \(row 0: \(2,\), row 1: \(1,\)\)"):
        import_file(tmp_path / "ragged.parquet", tmp_path / "s", "p")
    pd.DataFrame({"a": [1.0, 2.0], "name": ["x", "y"]}).to_parquet(tmp_path / "mixed.parquet")
    with pytest.raises(NeurometryError, match=r"non-numeric columns \(name\).*--metadata"):
        import_file(tmp_path / "mixed.parquet", tmp_path / "s", "p")
    pd.DataFrame({"a": pd.array([1, None], dtype="Int64"), "b": [1.0, 2.0]}).to_parquet(tmp_path / "na.parquet")
    with pytest.raises(NeurometryError, match="NaN or Inf values, the first in row 1"):
        import_file(tmp_path / "na.parquet", tmp_path / "s", "p")
    pd.DataFrame({"label": range(30)}).to_csv(tmp_path / "rows.csv", index=False)
    with pytest.raises(NeurometryError, match="beside its list column; drop --metadata"):
        import_file(tmp_path / "emb.parquet", tmp_path / "s", "p", run="r", metadata=tmp_path / "rows.csv")
    assert [r.run_id for r in open_store(tmp_path / "s").runs()] == ["cols", "emb", "nested"]


class _Trap:
    """Unpickling this writes a file: the proof that a loader ran pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_arrays_are_refused_without_unpickling(tmp_path):
    marker = str(tmp_path / "unpickled")
    np.save(tmp_path / "obj.npy", np.array([_Trap(marker), 1], dtype=object), allow_pickle=True)
    with open(tmp_path / "raw.npy", "wb") as handle:
        import pickle

        pickle.dump(_Trap(marker), handle)
    for name in ("obj.npy", "raw.npy"):
        with pytest.raises(NeurometryError, match="never unpickles"):
            import_file(tmp_path / name, tmp_path / "s", "p")
    assert not os.path.exists(marker) and not (tmp_path / "s").exists()


def test_values_beyond_float32_and_complex_and_strings_are_refused(tmp_path):
    big = np.ones((4, 2))
    big[2, 1] = 1e39
    np.save(tmp_path / "big.npy", big)
    with pytest.raises(NeurometryError, match="row 2 holds values beyond float32's range"):
        import_file(tmp_path / "big.npy", tmp_path / "s", "p")
    np.save(tmp_path / "c.npy", np.ones((3, 2), dtype=complex))
    with pytest.raises(NeurometryError, match="complex"):
        import_file(tmp_path / "c.npy", tmp_path / "s", "p")
    np.save(tmp_path / "u.npy", np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(NeurometryError, match="not numbers"):
        import_file(tmp_path / "u.npy", tmp_path / "s", "p")
    np.save(tmp_path / "f.npy", np.ones((3, 0)))
    with pytest.raises(NeurometryError, match="no features"):
        import_file(tmp_path / "f.npy", tmp_path / "s", "p")
    assert not (tmp_path / "s").exists()


def test_metadata_row_and_input_row_columns(tmp_path, x):
    """An export's `row` is what the store sets again; a token run's `input_row` is kept as source_input_row."""
    np.save(tmp_path / "t.npy", x)
    meta = pd.DataFrame({"row": np.arange(30), "input_row": np.arange(30) // 4, "token": ["a"] * 30})
    meta.to_parquet(tmp_path / "t.parquet")
    result = import_file(tmp_path / "t.npy", tmp_path / "s", "p", metadata=tmp_path / "t.parquet")
    assert result.metadata_columns == ["source_input_row", "token"]
    assert any("source_input_row" in note for note in result.notes)
    got = open_store(tmp_path / "s").metadata("t")
    assert got["source_input_row"].tolist() == meta["input_row"].tolist()
    assert got["row"].tolist() == got["input_row"].tolist() == list(range(30))


def test_failed_write_leaves_no_store_and_a_retry_gets_its_own_metadata(tmp_path, x, monkeypatch):
    np.save(tmp_path / "a.npy", x)
    pd.DataFrame({"label": ["old"] * 30}).to_csv(tmp_path / "old.csv", index=False)
    pd.DataFrame({"label": ["new"] * 30}).to_csv(tmp_path / "new.csv", index=False)

    def interrupted(store, run_id, point, chunks, n_rows, metadata, source):
        def stop():
            yield next(iter(chunks))[:1]
            raise KeyboardInterrupt

        import_array(store, run_id, point, stop(), n_rows, metadata, source)

    monkeypatch.setattr(importing, "import_array", interrupted)
    with pytest.raises(KeyboardInterrupt):
        import_file(tmp_path / "a.npy", tmp_path / "s", "p", metadata=tmp_path / "old.csv")
    assert not (tmp_path / "s").exists()  # the store this call made is gone

    np.save(tmp_path / "b.npy", x)
    monkeypatch.undo()
    import_file(tmp_path / "b.npy", tmp_path / "s", "p")  # now the store exists
    monkeypatch.setattr(importing, "import_array", interrupted)
    with pytest.raises(KeyboardInterrupt):
        import_file(tmp_path / "a.npy", tmp_path / "s", "p", metadata=tmp_path / "old.csv")
    store = open_store(tmp_path / "s")
    assert [r.run_id for r in store.runs()] == ["b"] and not (tmp_path / "s" / "arrays" / "a").exists()
    monkeypatch.undo()
    import_file(tmp_path / "a.npy", tmp_path / "s", "p", metadata=tmp_path / "new.csv")
    assert open_store(tmp_path / "s").metadata("a")["label"].tolist() == ["new"] * 30
