"""A real `neurometry record` process killed mid-run leaves a store that opens, and rerunning resumes
to exactly the rows of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from neurometry import open_store
from neurometry.cli import main
from tests.conftest import SENTENCES, write_jsonl

MODEL = "neurometry.models.tiny:tiny_bert"


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "neurometry.cli", *args]


@pytest.fixture
def many_sentences(tmp_path: Path) -> Path:
    rows = [{"text": f"{SENTENCES[i % len(SENTENCES)]} Number {i}.", "i": i} for i in range(700)]
    return write_jsonl(tmp_path / "many.jsonl", rows)


def record_args(data: Path, out: Path) -> list[str]:
    return ["record", MODEL, str(data), "--points", "resid.*", "--out", str(out), "--reduce", "tokens",
            "--batch-size", "2", "--chunk-rows", "50", "--run", "r", "--quiet"]


def committed_rows(store: Path) -> int:
    try:
        conn = sqlite3.connect(store / "catalog.sqlite", timeout=5)
        row = conn.execute("SELECT row_end FROM commits WHERE run_id = 'r'").fetchone()
        conn.close()
        return row[0] if row else 0
    except sqlite3.Error:
        return 0


def interrupt_after_first_commits(args: list[str], store: Path, sig: int) -> int:
    proc = subprocess.Popen(cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (store / "catalog.sqlite").exists() and committed_rows(store) >= 150:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "recording finished before it could be interrupted; make the data larger"
    os.kill(proc.pid, sig)
    proc.communicate(timeout=60)
    return proc.returncode


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_interrupted_record_resumes_with_every_row_once(sig, many_sentences, tmp_path):
    clean = tmp_path / "clean"
    assert main(record_args(many_sentences, clean)) == 0

    store_path = tmp_path / "interrupted"
    code = interrupt_after_first_commits(record_args(many_sentences, store_path), store_path, sig)
    if sig == signal.SIGINT:
        assert code == 130
    partial = open_store(store_path)
    info = partial.run_info("r")
    assert info.status == "recording" and 0 < info.committed_rows < info.n_rows
    assert partial.activations("resid.0", run="r").shape[0] == info.committed_rows
    partial.close()

    done = subprocess.run(cli(*record_args(many_sentences, store_path)), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resumed" in done.stdout
    resumed, reference = open_store(store_path), open_store(clean)
    assert resumed.run_info("r").complete
    meta, ref_meta = resumed.metadata("r"), reference.metadata("r")
    assert meta[["row", "input_row", "position", "token_id"]].equals(ref_meta[["row", "input_row", "position", "token_id"]])
    for point in ("resid.0", "resid.1"):
        np.testing.assert_allclose(resumed.activations(point, run="r"), reference.activations(point, run="r"),
                                   atol=1e-5, rtol=0)


def test_rerunning_a_complete_run_does_nothing(sentences_file, tmp_path, capsys):
    args = ["record", MODEL, str(sentences_file), "--points", "resid.0", "--out", str(tmp_path / "s"), "--quiet"]
    assert main(args) == 0
    assert main(args) == 0
    assert "already complete" in capsys.readouterr().out
