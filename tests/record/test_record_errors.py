"""Every user error: one line on stderr naming the fix, exit code 2, no traceback, nothing written."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from tests.conftest import write_jsonl

MODEL = "neurometry.models.tiny:tiny_bert"


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_unknown_model_in_a_real_process_suggests_close_names(sentences_file, tmp_path):
    out = tmp_path / "s"
    result = subprocess.run(
        [sys.executable, "-m", "neurometry.cli", "record", "minilmm", str(sentences_file), "--points", "resid.0",
         "--out", str(out)], capture_output=True, text=True)
    assert_user_error(result, "minilm")
    assert not out.exists()


def test_points_of_unknown_model(run_cli):
    assert_user_error(run_cli("points", "minilmm"), "minilm")


def test_unknown_point_suggests_close_names(run_cli, sentences_file, tmp_path):
    out = tmp_path / "s"
    result = run_cli("record", MODEL, str(sentences_file), "--points", "resid.O", "--out", str(out))
    assert_user_error(result, "resid.0")
    assert not out.exists()


@pytest.mark.parametrize("case", ["missing", "empty", "no-text", "bad-suffix"])
def test_bad_data(run_cli, case, tmp_path):
    data = {
        "missing": tmp_path / "nope.jsonl",
        "empty": tmp_path / "empty.csv",
        "no-text": write_jsonl(tmp_path / "notext.jsonl", [{"sentence": "hi"}]),
        "bad-suffix": tmp_path / "data.txt",
    }[case]
    if case == "empty":
        data.write_text("text,label\n")
    if case == "bad-suffix":
        data.write_text("hello\n")
    out = tmp_path / "s"
    result = run_cli("record", MODEL, str(data), "--points", "resid.0", "--out", str(out))
    assert_user_error(result)
    assert not out.exists()


def test_unwritable_output_folder(run_cli, sentences_file, tmp_path):
    result = run_cli("record", MODEL, str(sentences_file), "--points", "resid.0",
                     "--out", str(tmp_path / "no" / "such" / "folder"))
    assert_user_error(result, "does not exist")
    # /proc refuses new folders even to root, where permission bits would not
    result = run_cli("record", MODEL, str(sentences_file), "--points", "resid.0", "--out", "/proc/neurometry-store")
    assert_user_error(result, "cannot write")


def test_store_of_another_format_version_is_refused(run_cli, sentences_file, tmp_path):
    out = tmp_path / "s"
    assert run_cli("record", MODEL, str(sentences_file), "--points", "resid.0", "--out", str(out)).returncode == 0
    conn = sqlite3.connect(out / "catalog.sqlite")
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'version'")
    conn.commit()
    conn.close()
    assert_user_error(run_cli("ls", str(out)), "version 99")


def test_not_a_store(run_cli, tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "file.txt").write_text("x")
    assert_user_error(run_cli("ls", str(tmp_path / "folder")), "not a neurometry store")
    assert_user_error(run_cli("ls", str(tmp_path / "missing")), "no store")


def test_ls_and_export_after_record(run_cli, sentences_file, tmp_path):
    out = tmp_path / "s"
    assert run_cli("record", MODEL, str(sentences_file), "--points", "resid.*", "--out", str(out),
                   "--reduce", "tokens").returncode == 0
    listing = run_cli("ls", str(out), "--json")
    doc = json.loads(listing.stdout)
    assert [p["point"] for p in doc["points"]] == ["resid.0", "resid.1"]
    assert_user_error(run_cli("export", str(out), "--point", "resid.9", "--out", str(tmp_path / "x.npy")), "resid.0")
    assert not (tmp_path / "x.npy").exists()
