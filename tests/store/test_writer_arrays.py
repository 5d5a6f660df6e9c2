"""Run arrays written without zarr's event loop: the same zarr.json as zarr.create_array, chunk files where zarr
reads them, and a run that fits in the buffer written in one transaction without a writer thread."""

import json
import threading

import numpy as np
import pytest
import zarr
import zarr.codecs

from neurometry.store import open_store
from neurometry.store.writer import (
    ON_DISK_DTYPE,
    ArrayLayout,
    PointSpec,
    RunWriter,
    create_run_arrays,
    open_run_arrays,
)


@pytest.mark.parametrize(("kind", "dtype"), [("tokens", "float32"), ("attention", "float16"), ("vector", "bfloat16")])
def test_created_metadata_is_zarrs_own(tmp_path, kind, dtype):
    store = open_store(tmp_path / "s", create=True)
    create_run_arrays(store, "r", [PointSpec("p", "m", kind, (4, 3))], dtype, 10, 5)
    zarr.create_array(store=str(tmp_path / "z"), shape=(10, 4, 3), chunks=(5, 4, 3), dtype=ON_DISK_DTYPE[dtype],
                      compressors=zarr.codecs.ZstdCodec(level=3) if kind == "attention" else None, fill_value=0)
    ours = json.loads((tmp_path / "s" / "arrays" / "r" / "p" / "zarr.json").read_text())
    assert ours == json.loads((tmp_path / "z" / "zarr.json").read_text())
    assert open_run_arrays(tmp_path / "s", "r", ["p"])["p"].compressed == (kind == "attention")


@pytest.mark.parametrize("encoding", [{"name": "default", "separator": "/"}, {"name": "default", "separator": "."},
                                      {"name": "v2", "separator": "."}])
def test_chunk_files_are_where_zarr_reads_them(tmp_path, encoding):
    path = tmp_path / "a"
    array = zarr.create_array(store=str(path), shape=(6, 2), chunks=(2, 2), dtype="float32", fill_value=0, compressors=None,
                              chunk_key_encoding=encoding)
    layout = ArrayLayout.read(path)
    rows = np.arange(12, dtype=np.float32).reshape(6, 2)
    for chunk in range(3):
        file = layout.chunk_file(path, chunk, 2)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(rows[2 * chunk : 2 * chunk + 2].tobytes())
    np.testing.assert_array_equal(zarr.open_array(str(path))[:], rows)
    assert array.metadata.encode_chunk_key((1, 0)) == str(layout.chunk_file(path, 1, 2).relative_to(path))


def test_a_run_within_the_buffer_is_written_without_a_thread_in_one_commit(tmp_path):
    store = open_store(tmp_path / "s", create=True)
    spec = PointSpec("p", "m", "vector", (3,))
    create_run_arrays(store, "r", [spec], "float32", 4, 8)
    registered = []

    def register(conn):
        registered.append(threading.current_thread() is threading.main_thread())
        conn.execute("INSERT INTO runs VALUES ('r', 'm', 'd', 'none', 'float32', '{}', 4, 4, 8, 'recording', "
                     "'2026-01-01', NULL)")
        conn.execute("INSERT INTO points VALUES ('r', 'p', 0, 'm', 'vector', '[3]', 'float32')")
        conn.execute("INSERT INTO commits VALUES ('r', 0, 0)")

    threads = threading.active_count()
    writer = RunWriter(store, "r", [spec], "float32", np.arange(1, 5), 8, register=register)
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    writer.add({"p": rows[:2]})
    writer.add({"p": rows[2:]})
    assert threading.active_count() == threads and writer._pool is None
    writer.finish()
    assert registered == [True]  # inserted by this thread, with the commit
    info = store.find_run("r")
    assert (info.status, info.committed_rows) == ("complete", 4)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "s" / "arrays" / "r" / "p"))[:4], rows)
    assert store.find_run("other") is None
