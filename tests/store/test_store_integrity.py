"""Committed chunks are verifiable (issue 15): every commit records its chunk files' sizes and CRC-32C; a
deleted, truncated or overwritten chunk makes every read of it (activations, iter_chunks, export) fail with
one line naming the point, the chunk and the remedy, instead of reading back as zeros or NaN;
`neurometry verify` lists the damage (exit 1) and records damaged runs again on request; a damaged catalog
is one line, exit 2."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest

from neurometry.errors import NeurometryError
from neurometry.record import record
from neurometry.store import open_store
from neurometry.store.catalog import FORMAT_VERSION
from neurometry.store.results import MEASURE, Result

MODEL = "neurometry.models.tiny:tiny_bert"
POINTS = ["resid.0", "resid.1", "attn_pattern.1"]  # attention chunks are zstd-compressed: the other write path


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def clean_store(tmp_path_factory) -> Path:
    """A recorded store (8 sentences, tokens, 8 rows a chunk) that no test touches: tests damage copies."""
    folder = tmp_path_factory.mktemp("integrity")
    texts = ["The cat sat on the mat.", "A quick brown fox jumps over the lazy dog near the river bank today.",
             "Hello!", "Neural networks learn layered representations of their inputs.",
             "It rained all afternoon, so we stayed inside and read.", "Short one.",
             "The orchestra played the final movement with remarkable energy and precision.", "Why?"]
    data = folder / "sentences.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": i % 2}) + "\n" for i, t in enumerate(texts)))
    out = folder / "clean"
    record(MODEL, data, POINTS, out, reduce="tokens", chunk_rows=8, run="r", progress=False)
    return out


@pytest.fixture
def store_path(clean_store, tmp_path) -> Path:
    copy = tmp_path / "s"
    shutil.copytree(clean_store, copy)
    return copy


def chunk_file(store: Path, point: str, chunk: int) -> Path:
    """Zarr v3's key of chunk ``chunk``: c/K/0 for rows of vectors, c/K/0/0 for attention rows (heads x keys)."""
    return store / "arrays" / "r" / point / "c" / str(chunk) / "0" / ("0" if point.startswith("attn") else "")


def damage(path: Path, how: str) -> None:
    if how == "deleted":
        path.unlink()
    elif how == "overwritten":  # same size, other bytes: what exported as NaN before
        with open(path, "r+b") as handle:
            handle.seek(16)
            handle.write(b"\xff" * 64)
    elif how == "truncated":
        with open(path, "r+b") as handle:
            handle.truncate(100)


def test_every_committed_chunk_has_a_checksum_that_matches_its_file(clean_store):
    from neurometry.store.chunks import crc32c

    store = open_store(clean_store, read_only=True)
    info = store.run_info("r")
    n_chunks = -(-info.n_rows // info.chunk_rows)
    assert info.n_rows > 40 and n_chunks > 5  # several chunks per point, the last one partial
    rows = store.connection.execute("SELECT point, chunk, nbytes, crc32c FROM chunks WHERE run_id = 'r'").fetchall()
    assert sorted((p, c) for p, c, _, _ in rows) == sorted((p, c) for p in POINTS for c in range(n_chunks))
    for point, chunk, nbytes, crc in rows:
        data = chunk_file(clean_store, point, chunk).read_bytes()
        assert (len(data), crc32c(data)) == (nbytes, crc)
    assert store.connection.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()[0] == str(FORMAT_VERSION)


@pytest.mark.parametrize("how, problem", [
    ("deleted", "is missing"),
    ("overwritten", "does not match its checksum"),
    ("truncated", "has 100 bytes instead of 1024"),
])
def test_a_damaged_chunk_fails_every_read_of_it_with_one_line(how, problem, store_path, run_cli, tmp_path):
    before = open_store(store_path, read_only=True)
    intact = {p: before.activations(p) for p in POINTS}
    before.close()
    damage(chunk_file(store_path, "resid.0", 2), how)

    store = open_store(store_path)
    with pytest.raises(NeurometryError) as caught:
        store.activations("resid.0")
    message = str(caught.value)
    for fragment in ("chunk 2 (rows 16-23)", "point 'resid.0'", "run 'r'", problem, f"neurometry verify {store_path}",
                     "--repair-by-rerecording"):
        assert fragment in message
    blocks = store.iter_chunks("resid.0")
    np.testing.assert_array_equal(np.concatenate([next(blocks), next(blocks)]), intact["resid.0"][:16])
    with pytest.raises(NeurometryError, match="chunk 2"):
        next(blocks)
    np.testing.assert_array_equal(store.activations("resid.1"), intact["resid.1"])  # the other points read as ever

    out = tmp_path / "x.npy"
    assert_one_line_error(run_cli("export", store_path, "--point", "resid.0", "--out", out), "chunk 2", problem)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no .npy, no metadata, no partial file


def test_a_damaged_compressed_chunk_and_lost_array_metadata_are_caught_too(store_path):
    damage(chunk_file(store_path, "attn_pattern.1", 1), "overwritten")
    (store_path / "arrays" / "r" / "resid.1" / "zarr.json").unlink()
    store = open_store(store_path)
    with pytest.raises(NeurometryError, match="chunk 1 .* of point 'attn_pattern.1'.* does not match its checksum"):
        store.activations("attn_pattern.1")
    with pytest.raises(NeurometryError, match="the array metadata of point 'resid.1'.* is missing"):
        store.activations("resid.1")


def test_verify_lists_every_damaged_chunk_and_exits_1(store_path, run_cli):
    clean = run_cli("verify", store_path, "--json")
    assert clean.returncode == 0, clean.stderr
    doc = json.loads(clean.stdout)
    assert doc["clean"] and doc["damaged"] == [] and doc["chunks"] == 3 * -(-doc_rows(store_path) // 8)
    assert doc["chunks_without_checksum"] == 0

    damage(chunk_file(store_path, "resid.0", 2), "deleted")
    damage(chunk_file(store_path, "resid.1", 5), "overwritten")
    damage(chunk_file(store_path, "attn_pattern.1", 0), "truncated")
    found = run_cli("verify", store_path, "--json")
    assert found.returncode == 1
    doc = json.loads(found.stdout)
    assert not doc["clean"]
    assert sorted((d["point"], d["chunk"], d["first_row"]) for d in doc["damaged"]) == [
        ("attn_pattern.1", 0, 0), ("resid.0", 2, 16), ("resid.1", 5, 40)]
    table = run_cli("verify", store_path, "--quiet")
    assert table.returncode == 1 and "DAMAGED: 3 chunks" in table.stdout and "--repair-by-rerecording" in table.stdout


def doc_rows(store_path: Path) -> int:
    store = open_store(store_path, read_only=True)
    try:
        return store.run_info("r").n_rows
    finally:
        store.close()


def test_repair_by_rerecording_restores_the_rows_and_keeps_the_results(store_path, run_cli):
    store = open_store(store_path)
    intact = {p: store.activations(p) for p in POINTS}
    MEASURE.save(store, "r", [Result("resid.0", "effective_rank", 3.5, params={"label": None, "seed": 0},
                                     extra={"n_rows": 1}, result_set="kept")])
    store.close()
    damage(chunk_file(store_path, "resid.0", 3), "deleted")
    damage(chunk_file(store_path, "resid.1", 5), "overwritten")

    repaired = run_cli("verify", store_path, "--repair-by-rerecording", "--model", MODEL, "--quiet")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "recorded run 'r' again from row 24" in repaired.stdout and "sound" in repaired.stdout
    store = open_store(store_path)
    info = store.run_info("r")
    assert info.complete and info.committed_rows == info.n_rows
    for point in POINTS:  # recomputed in other batches than the first time: equal up to float32 rounding
        np.testing.assert_allclose(store.activations(point), intact[point], atol=1e-5, rtol=0)
    assert MEASURE.load(store, "r")["value"].tolist() == [3.5]
    assert run_cli("verify", store_path, "--quiet").returncode == 0


@pytest.mark.parametrize("model, says", [
    (None, "name the model that recorded it with --model"),
    ("neurometry.models.tiny:tiny_llama", "nothing was changed"),
])
def test_repair_that_cannot_load_the_same_model_changes_nothing_and_says_how(model, says, store_path, run_cli):
    damage(chunk_file(store_path, "resid.0", 2), "deleted")
    args = ["verify", store_path, "--repair-by-rerecording", "--quiet"] + (["--model", model] if model else [])
    result = run_cli(*args)
    assert result.returncode == 1
    assert "cannot record run 'r' again" in result.stdout and says in result.stdout
    store = open_store(store_path, read_only=True)
    info = store.run_info("r")
    assert info.complete and info.committed_rows == info.n_rows  # the commit mark did not move
    assert (store_path / "arrays" / "r" / "resid.1" / "c" / "0" / "0").is_file()


def test_a_format_2_store_reads_its_chunks_unchecked_and_is_upgraded(store_path, run_cli):
    conn = sqlite3.connect(store_path / "catalog.sqlite")
    conn.executescript("DROP TABLE chunks; UPDATE meta SET value = '2' WHERE key = 'version';")
    conn.close()
    (store_path / "neurometry.json").write_text(json.dumps({"format": "neurometry-store", "version": 2}))

    viewer = open_store(store_path, read_only=True)  # what `serve` does: format 2 reads as it is
    rows = viewer.activations("resid.0")
    viewer.close()
    assert json.loads((store_path / "neurometry.json").read_text())["version"] == 2

    result = run_cli("ls", store_path)  # a command that may write upgrades it
    assert result.returncode == 0, result.stderr
    assert json.loads((store_path / "neurometry.json").read_text())["version"] == FORMAT_VERSION
    doc = json.loads(run_cli("verify", store_path, "--json").stdout)
    assert doc["clean"] and doc["chunks_without_checksum"] == doc["chunks"] > 0
    np.testing.assert_array_equal(open_store(store_path).activations("resid.0"), rows)

    damage(chunk_file(store_path, "resid.0", 1), "deleted")  # without checksums, presence and size still count
    damage(chunk_file(store_path, "resid.1", 2), "truncated")
    doc = json.loads(run_cli("verify", store_path, "--json").stdout)
    assert sorted((d["point"], d["chunk"]) for d in doc["damaged"]) == [("resid.0", 1), ("resid.1", 2)]


@pytest.mark.parametrize("how", ["truncated", "garbage", "header-only"])
def test_a_damaged_catalog_is_one_line_and_exit_2(how, store_path, run_cli, tmp_path):
    catalog = store_path / "catalog.sqlite"
    data = catalog.read_bytes()
    catalog.write_bytes({"truncated": data[: len(data) // 2], "garbage": bytes(range(256)) * 20,
                         "header-only": data[:100]}[how])
    for args in (["ls", store_path], ["export", store_path, "--point", "resid.0", "--out", tmp_path / "x.npy"],
                 ["verify", store_path]):
        assert_one_line_error(run_cli(*args), "catalog", "damaged")
    assert not (tmp_path / "x.npy").exists()
