"""A read-only store (issue 15): on a read-only mount every command that only reads works (ls, export,
report, verify, the dashboard's viewer), commits still in the WAL are seen, and a command that must write
(measure saves its results, record) fails with one line saying the store is read-only.

Tests run as root here, where permission bits do not stop writes: the real test makes a read-only bind
mount in a private mount namespace (``unshare -m``); without root it uses ``chmod -R a-w``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from neurometry.errors import NeurometryError
from neurometry.record import record
from neurometry.store import open_store
from neurometry.store import store as store_module
from neurometry.store.results import MEASURE, Result
from tests.conftest import write_jsonl

MODEL = "neurometry.models.tiny:tiny_bert"


def measure_result(value: float) -> Result:
    return Result("resid.0", "effective_rank", value, params={"label": None, "seed": 0}, extra={"n_rows": 1},
                  result_set="read-only-test")


@pytest.fixture
def store_path(tmp_path) -> Path:
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": f"sentence number {i} is here", "i": i} for i in range(12)])
    out = tmp_path / "store"
    record(MODEL, data, ["resid.0", "resid.1"], out, reduce="mean", chunk_rows=4, run="r", progress=False)
    return out


def test_a_store_opened_read_only_reads_and_refuses_writes_with_one_line(store_path):
    store = open_store(store_path, read_only=True)
    assert store.read_only and store.activations("resid.0").shape == (12, 32)
    with pytest.raises(NeurometryError, match=r"is read-only \(opened read-only\); copy the store"):
        MEASURE.save(store, "r", [measure_result(1.0)])


def test_an_unwritable_store_opens_read_only_by_itself(store_path, monkeypatch, sentences_file):
    monkeypatch.setattr(store_module, "writable", lambda path: False)  # what os.access says on a read-only mount
    store = open_store(store_path)
    assert store.read_only and store.activations("resid.1").shape == (12, 32)
    with pytest.raises(NeurometryError, match="is read-only .*cannot be written"):
        MEASURE.save(store, "r", [measure_result(1.0)])
    with pytest.raises(NeurometryError, match="is read-only"):  # refused before the model loads
        record("no-such-model", sentences_file, ["resid.0"], store_path, run="other", progress=False)


SCRIPT = textwrap.dedent("""
    import contextlib, io, json, sys
    from neurometry.cli import main
    from neurometry.store import open_store
    from neurometry.store.results import MEASURE
    store, out, model, data, clean = sys.argv[1:]
    results = {}
    def run(name, *args):
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(list(args))
        results[name] = [code, stdout.getvalue(), stderr.getvalue()]
    run("ls", "ls", store)
    run("export", "export", store, "--point", "resid.0", "--out", out + "/x.npy")
    run("report", "report", store, "-o", out + "/report.html")
    run("verify", "verify", store, "--quiet")
    run("measure", "measure", store, "--points", "resid.0", "--measures", "effective_rank", "--json")
    run("record", "record", model, data, "--points", "resid.0", "--out", store, "--run", "other", "--quiet")
    viewer = open_store(store, read_only=True)  # what `neurometry serve` opens
    results["viewer"] = MEASURE.load(viewer, "r")["value"].tolist()
    results["auto_read_only"] = open_store(store).read_only
    run("ls-clean", "ls", clean)  # no -wal or -shm beside its catalog: SQLite's mode=ro cannot open that
    results["clean_rows"] = open_store(clean).activations("resid.1").shape[0]
    print(json.dumps(results))
""")


def run_on_read_only_stores(store: Path, clean: Path, out: Path, data: Path) -> dict:
    script = out / "script.py"
    script.write_text(SCRIPT)
    command = [sys.executable, str(script), str(store), str(out), MODEL, str(data), str(clean)]
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(store), str(clean)], check=True)
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(store), str(clean)], check=True)
    else:
        if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"]).returncode != 0:
            pytest.skip("root ignores permission bits, and no private mount namespace (unshare -m) is allowed here "
                        "to make a read-only bind mount")
        mount = " && ".join(f"mount --bind {p} {p} && mount -o remount,ro,bind {p} {p}" for p in (store, clean))
        done = subprocess.run(["unshare", "-m", "sh", "-c", f'{mount} && exec "$@"', "sh", *command],
                              capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_reading_command_works_on_a_read_only_mount_and_writers_say_read_only(store_path, tmp_path):
    reader = open_store(store_path)
    expected = reader.activations("resid.0")
    reader.close()  # the last connection: the WAL is folded into the catalog and removed
    clean = tmp_path / "clean"
    shutil.copytree(store_path, clean)
    assert not (clean / "catalog.sqlite-wal").exists()
    # a commit still in the WAL (its writer died before a checkpoint): a read-only open must see it
    subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os
        from neurometry.store import open_store
        from neurometry.store.results import MEASURE, Result
        store = open_store({str(store_path)!r})
        MEASURE.save(store, "r", [Result("resid.0", "effective_rank", 7.0, params={{"label": None, "seed": 0}},
                                         extra={{"n_rows": 1}}, result_set="wal")])
        os._exit(0)
    """)], check=True)
    assert (store_path / "catalog.sqlite-wal").stat().st_size > 0
    out = tmp_path / "out"
    out.mkdir()
    before = sorted(p.relative_to(store_path) for p in store_path.rglob("*"))

    results = run_on_read_only_stores(store_path, clean, out, tmp_path / "d.jsonl")

    for name in ("ls", "export", "report", "verify"):
        code, stdout, stderr = results[name]
        assert code == 0 and "error" not in stderr, (name, stderr)
    assert "resid.0" in results["ls"][1] and "sound" in results["verify"][1]
    np.testing.assert_array_equal(np.load(out / "x.npy"), expected)
    assert (out / "report.html").stat().st_size > 0
    for name in ("measure", "record"):
        code, _, stderr = results[name]
        lines = stderr.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr
        assert "read-only" in lines[0] or "Read-only file system" in lines[0], lines[0]
    assert "read-only" in results["measure"][2]
    assert results["viewer"] == [7.0] and results["auto_read_only"] is True
    assert results["ls-clean"][0] == 0 and "resid.1" in results["ls-clean"][1] and results["clean_rows"] == 12
    assert sorted(p.relative_to(store_path) for p in store_path.rglob("*")) == before
