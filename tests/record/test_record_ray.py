"""Recording on a Ray cluster: two real Ray nodes on this machine (``ray.cluster_utils.Cluster``), started
once for the module and always shut down. The store a Ray recording leaves is the single-process store,
values and row metadata equal to the last bit, also after its driver is killed and the command rerun."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from neurometry import NeurometryError, open_store, record
from neurometry.cli import main
from neurometry.record.ray_engine import plan_units
from tests.conftest import SENTENCES, write_jsonl

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

MODEL = "neurometry.models.tiny:tiny_bert"
POINTS = ["resid.*", "attn_pattern.0"]


@pytest.fixture(scope="module")
def cluster():
    """A head and a worker node, one CPU each, small object stores; this process is connected to it."""
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "object_store_memory": 128 * 2**20})
    try:
        nodes.add_node(num_cpus=1, object_store_memory=128 * 2**20)
        nodes.wait_for_nodes()
        ray.init(address=nodes.address, log_to_driver=False)
        yield nodes
    finally:
        ray.shutdown()
        nodes.shutdown()


@pytest.fixture(scope="module")
def uneven(tmp_path_factory):
    """60 texts of 3 to ~40 tokens: their token rows straddle chunk boundaries."""
    texts = [f"{SENTENCES[i % 8]} {SENTENCES[(3 * i) % 8] * (i % 3)}" for i in range(60)]
    path = tmp_path_factory.mktemp("ray_data") / "uneven.jsonl"
    return write_jsonl(path, [{"text": t, "i": i} for i, t in enumerate(texts)])


@pytest.fixture(scope="module")
def single(uneven, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "store"
    record(MODEL, uneven, POINTS, out, reduce="tokens", batch_size=4, chunk_rows=50, progress=False)
    return open_store(out)


def assert_same_store(store, reference) -> None:
    (run,), (ref_run,) = store.runs(), reference.runs()
    assert run.complete and run.n_rows == ref_run.n_rows
    names = [p.point for p in store.points()]
    assert names == [p.point for p in reference.points()] and sorted(names) == ["attn_pattern.0", "resid.0", "resid.1"]
    for info in reference.points():
        np.testing.assert_array_equal(store.activations(info.point), reference.activations(info.point), err_msg=info.point)
    assert store.row_index(run.run_id).equals(reference.row_index(ref_run.run_id))


def test_units_are_chunk_aligned_and_start_on_the_batch_grid():
    row_ends = np.cumsum(np.random.default_rng(0).integers(1, 40, size=101))
    units = plan_units(row_ends, chunk_rows=50, first_row=100, batch_size=4, n_units=7)
    assert units[0]["start"] == 100 and units[-1]["stop"] == row_ends[-1]
    for a, b in zip(units, units[1:], strict=False):
        assert a["stop"] == b["start"] and a["start"] % 50 == 0
    for u in units:
        assert u["first_input"] % 4 == 0 and (u["last_input"] % 4 == 0 or u["last_input"] == 101)
        assert u["rows_before"] <= u["start"] and row_ends[u["last_input"] - 1] >= u["stop"]


def test_two_actors_on_two_nodes_store_what_one_process_does(cluster, uneven, single, tmp_path):
    out = tmp_path / "ray"
    record(MODEL, uneven, POINTS, out, reduce="tokens", batch_size=4, chunk_rows=50, progress=False,
           engine="ray", actors=2)
    assert_same_store(open_store(out), single)


@pytest.fixture(scope="module")
def longer(tmp_path_factory):
    """400 texts: 100 batches of 4, several units of at least 16 batches."""
    texts = [f"{SENTENCES[i % 8]} {SENTENCES[(3 * i) % 8] * (i % 3)}" for i in range(400)]
    folder = tmp_path_factory.mktemp("ray_longer")
    data = write_jsonl(folder / "longer.jsonl", [{"text": t} for t in texts])
    record(MODEL, data, POINTS, folder / "single", reduce="tokens", batch_size=4, chunk_rows=20, progress=False)
    return data, open_store(folder / "single")


def test_a_killed_driver_is_resumed_by_the_rerun(cluster, longer, tmp_path):
    data, single = longer
    out = tmp_path / "ray"
    command = [sys.executable, "-m", "neurometry.cli", "record", MODEL, str(data), "--points", *POINTS,
               "--out", str(out), "--reduce", "tokens", "--batch-size", "4", "--chunk-rows", "10",
               "--ray", cluster.address, "--actors", "1", "--quiet"]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        committed = 0
        while time.monotonic() < deadline and driver.poll() is None:
            if (out / "catalog.sqlite").exists():
                try:
                    conn = sqlite3.connect(out / "catalog.sqlite")
                    row = conn.execute("SELECT row_end FROM commits").fetchone()
                    conn.close()
                    committed = row[0] if row else 0
                except sqlite3.OperationalError:
                    committed = 0
            if committed > 0:
                break
            time.sleep(0.05)
        if driver.poll() is not None:
            pytest.skip("the Ray recording finished before it could be killed")
        os.killpg(driver.pid, signal.SIGKILL)
    finally:
        driver.wait()
    assert 0 < committed < single.runs()[0].n_rows
    result = record(MODEL, data, POINTS, out, reduce="tokens", batch_size=4, chunk_rows=10, progress=False,
                    engine="ray", actors=2)
    assert result.resumed_at > 0
    assert_same_store(open_store(out), single)


def actor_pids() -> list[int]:
    """Processes of this machine whose title Ray set to a ChunkRecorder actor's."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if b"ChunkRecorder" in handle.read():
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


def test_a_killed_actor_is_replaced_and_every_row_stored_once(cluster, longer, tmp_path):
    data, reference = longer
    settings = {"reduce": "tokens", "batch_size": 4, "chunk_rows": 20, "progress": False}
    failures = []

    def run() -> None:
        try:
            record(MODEL, data, POINTS, tmp_path / "ray", engine="ray", actors=2, **settings)
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    driver = threading.Thread(target=run)
    driver.start()
    deadline, killed = time.monotonic() + 120, None
    while killed is None and driver.is_alive() and time.monotonic() < deadline:
        pids = actor_pids()
        if len(pids) == 2 and (tmp_path / "ray" / "catalog.sqlite").exists():
            time.sleep(0.5)  # both actors at work
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    driver.join()
    if killed is None:
        pytest.skip("the Ray recording finished before an actor could be killed")
    if failures:  # Ray gave up on the unit: the rerun records what is missing
        record(MODEL, data, POINTS, tmp_path / "ray", engine="ray", actors=2, **settings)
    assert_same_store(open_store(tmp_path / "ray"), reference)


def test_a_lost_node_costs_only_its_uncommitted_chunks(cluster, longer, tmp_path):
    data, reference = longer
    extra = cluster.add_node(num_cpus=1, object_store_memory=128 * 2**20)
    cluster.wait_for_nodes()
    settings = {"reduce": "tokens", "batch_size": 4, "chunk_rows": 20, "progress": False}
    failures = []

    def run() -> None:
        try:
            record(MODEL, data, POINTS, tmp_path / "ray", engine="ray", actors=3, **settings)
        except Exception as exc:  # noqa: BLE001 - a rerun completes what a lost node left
            failures.append(exc)

    driver = threading.Thread(target=run)
    driver.start()
    deadline = time.monotonic() + 120
    while driver.is_alive() and time.monotonic() < deadline and len(actor_pids()) < 3:
        time.sleep(0.05)
    removed = driver.is_alive()
    if removed:
        time.sleep(0.5)
        cluster.remove_node(extra)  # its raylet and the actor on it are gone
    driver.join(timeout=180)
    assert not driver.is_alive(), "the recording hung after losing a node"
    if not removed:
        pytest.skip("the Ray recording finished before a node could be removed")
    if failures:
        record(MODEL, data, POINTS, tmp_path / "ray", engine="ray", actors=2, **settings)
    assert_same_store(open_store(tmp_path / "ray"), reference)


def test_without_ray_the_extra_is_named(uneven, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails, as where it is not installed
    assert main(["record", MODEL, str(uneven), "--points", "resid.0", "--out", str(tmp_path / "s"), "--ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'neurometry[ray]'" in err[0]
    assert not (tmp_path / "s").exists()


def test_an_unreachable_cluster_is_one_line_within_seconds(uneven, tmp_path, capsys):
    started = time.monotonic()
    code = main(["record", MODEL, str(uneven), "--points", "resid.0", "--out", str(tmp_path / "s"), "--ray",
                 "127.0.0.1:1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot reach the Ray cluster at '127.0.0.1:1'" in err[0]
    assert time.monotonic() - started < 30 and not (tmp_path / "s").exists()


def test_ray_refuses_what_it_cannot_do_yet(uneven, tmp_path):
    with pytest.raises(NeurometryError, match="--max-batch-tokens does not work with --ray"):
        record(MODEL, uneven, ["resid.0"], tmp_path / "s", engine="ray", max_batch_tokens=100, progress=False)
    from neurometry.models.tiny import tiny_bert

    with pytest.raises(NeurometryError, match="give it by name"):
        record(tiny_bert(), uneven, ["resid.0"], tmp_path / "s", engine="ray", progress=False)
    assert not (tmp_path / "s").exists()
