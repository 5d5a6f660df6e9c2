"""`record` under hostile conditions (issue 15): a negative --chunk-rows is refused before anything is made;
an interrupted run rerun with --overwrite and the same settings resumes instead of starting over; a full
disk keeps every committed row, says so in one line and leaves no partial chunk file; Ctrl-C in the first
seconds of any command (while the verbs' modules import torch) exits 130 without a traceback."""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from neurometry.cli import main
from neurometry.store import open_store
from neurometry.store import writer as writer_module

MODEL = "neurometry.models.tiny:tiny_bert"


def record_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["record", MODEL, str(data), "--points", "resid.*", "--out", str(out), "--reduce", "tokens",
            "--chunk-rows", "8", "--batch-size", "1", "--run", "r", "--quiet", *extra]


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("rows", ["-3", "0"])
def test_a_chunk_size_below_one_is_refused_before_anything_is_made(rows, sentences_file, tmp_path, capsys):
    out = tmp_path / "s"
    args = record_args(sentences_file, out)
    args[args.index("--chunk-rows") + 1] = rows
    assert main(args) == 2
    assert f"--chunk-rows {rows} must be at least 1" in one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sentences.jsonl"]  # no store, no temporary folder


def interrupt_after(store: Path, chunks: int) -> None:
    """Leave the run as a kill after ``chunks`` commits does: commit mark and status back, later chunks unwritten."""
    conn = sqlite3.connect(store / "catalog.sqlite")
    with conn:
        conn.execute("UPDATE commits SET row_end = ?, input_end = (SELECT COUNT(DISTINCT input_row) FROM tokens"
                     " WHERE run_id = 'r' AND input_row NOT IN (SELECT input_row FROM tokens WHERE row >= ?))",
                     (8 * chunks, 8 * chunks))
        conn.execute("UPDATE runs SET status = 'recording', finished = NULL")
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'chunks'").fetchone():
            conn.execute("DELETE FROM chunks WHERE chunk >= ?", (chunks,))
    conn.close()


def test_an_interrupted_overwrite_rerun_with_the_same_settings_resumes(sentences_file, tmp_path, capsys):
    clean, out = tmp_path / "clean", tmp_path / "s"
    assert main(record_args(sentences_file, clean)) == 0
    assert main(record_args(sentences_file, out)) == 0
    interrupt_after(out, 3)
    committed = open_store(out).run_info("r").committed_inputs
    assert 0 < committed < 8
    capsys.readouterr()

    assert main(record_args(sentences_file, out, "--overwrite")) == 0
    captured = capsys.readouterr()
    assert "replacing" not in captured.err
    assert f"resumed at input {committed}" in captured.out
    resumed, reference = open_store(out), open_store(clean)
    assert resumed.run_info("r").complete
    for point in ("resid.0", "resid.1"):
        np.testing.assert_allclose(resumed.activations(point), reference.activations(point), atol=1e-5, rtol=0)
    assert main(["verify", str(out), "--quiet"]) == 0

    # other settings still replace the unfinished run, and say so
    interrupt_after(out, 3)
    assert main(record_args(sentences_file, out, "--overwrite", "--max-tokens", "6")) == 0
    captured = capsys.readouterr()
    assert "replacing the unfinished run 'r', which was recorded with other settings" in captured.err
    assert open_store(out).run_info("r").settings["max_tokens"] == 6


def test_a_full_disk_keeps_the_committed_rows_says_so_and_resumes(sentences_file, tmp_path, capsys, monkeypatch):
    clean, out = tmp_path / "clean", tmp_path / "s"
    assert main(record_args(sentences_file, clean)) == 0
    real, calls = writer_module._write_file, []

    def write_file(path, view, flags):
        calls.append(path)
        if len(calls) == 7:  # the disk fills a few chunks in
            with open(path, "wb") as handle:
                handle.write(bytes(view[:100]))
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, view, flags)

    monkeypatch.setattr(writer_module, "_write_file", write_file)
    capsys.readouterr()
    assert main(record_args(sentences_file, out)) == 2
    line = one_error_line(capsys.readouterr().err)
    info = open_store(out).run_info("r")
    assert info.status == "recording" and 0 < info.committed_rows < info.n_rows and info.committed_rows % 8 == 0
    assert f"disk holding {out} is full ({info.committed_rows} of {info.n_rows} rows are committed)" in line
    assert "rerun the same command" in line
    assert [p for p in out.rglob("*") if p.name.endswith(".partial")] == []
    assert main(["verify", str(out), "--quiet"]) == 0

    monkeypatch.setattr(writer_module, "_write_file", real)
    assert main(record_args(sentences_file, out)) == 0
    assert "resumed" in capsys.readouterr().out
    resumed, reference = open_store(out), open_store(clean)
    for point in ("resid.0", "resid.1"):
        np.testing.assert_allclose(resumed.activations(point), reference.activations(point), atol=1e-5, rtol=0)


def test_a_full_catalog_disk_is_one_line_too(sentences_file, tmp_path, capsys, monkeypatch):
    real, calls = writer_module.RunWriter._commit, []

    def commit(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise sqlite3.OperationalError("database or disk is full")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(writer_module.RunWriter, "_commit", commit)
    assert main(record_args(sentences_file, tmp_path / "s")) == 2
    assert "is full" in one_error_line(capsys.readouterr().err)
    info = open_store(tmp_path / "s").run_info("r")
    assert info.status == "recording" and 0 < info.committed_rows < info.n_rows  # the first commit holds
    assert main(["verify", str(tmp_path / "s"), "--quiet"]) == 0


def torch_is_loading(pid: int) -> bool:
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.parametrize("launcher", ["module", "console-script"])
def test_ctrl_c_while_the_command_line_imports_exits_130_without_a_traceback(launcher, sentences_file, tmp_path):
    script = Path(sys.executable).with_name("neurometry")
    if launcher == "console-script" and not script.exists():
        pytest.skip("the console script is not installed beside this interpreter")
    start = [sys.executable, "-m", "neurometry.cli"] if launcher == "module" else [str(script)]
    out = tmp_path / "s"
    proc = subprocess.Popen([*start, *record_args(sentences_file, out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while proc.poll() is None and not torch_is_loading(proc.pid) and time.time() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "the command ended before torch started loading"
    os.kill(proc.pid, signal.SIGINT)  # torch is mid-import (today while main() builds its parser)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert not out.exists()
