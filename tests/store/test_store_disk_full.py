"""A full disk while `export` or `report` writes (issue 15): one line saying the disk is full, exit 2, and no
partial file left (export used to die of SIGBUS in a memory map and leave a partial .npy; report left its
.tmp). The failure is simulated by making the write raise ENOSPC, and once for real on a tiny tmpfs."""

from __future__ import annotations

import errno
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neurometry.cli import main
from neurometry.store import export as export_module
from neurometry.store import import_array, open_store


@pytest.fixture
def store_path(tmp_path) -> Path:
    """A store with one imported point of 300 x 1000 float32 (1.2 MB), no model needed."""
    rows = np.random.default_rng(0).standard_normal((300, 1000)).astype(np.float32)
    store = open_store(tmp_path / "store", create=True)
    import_array(store, "r", "p", [rows[:150], rows[150:]], 300)
    store.close()
    return tmp_path / "store"


def run_cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return code, lines[0]


def full_after(limit: int):
    """A write that stores ``limit`` bytes in all, then fails as a full disk does."""
    state = {"written": 0}

    def write(handle, data):
        view = memoryview(data).cast("B")
        room = max(0, limit - state["written"])
        handle.write(view[:room])
        state["written"] += min(room, len(view))
        if room < len(view):
            raise OSError(errno.ENOSPC, "No space left on device")

    return write


def test_export_on_a_full_disk_says_so_and_leaves_nothing(store_path, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(export_module, "write_block", full_after(500_000))
    code, line = run_cli(capsys, "export", store_path, "--point", "p", "--out", out / "p.npy")
    assert code == 2 and "disk is full" in line and "p.npy" in line
    assert list(out.iterdir()) == []


def test_export_refuses_up_front_when_the_disk_lacks_the_room(store_path, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    real = shutil.disk_usage

    def usage(path):
        return real(path)._replace(free=1_000_000)

    monkeypatch.setattr(export_module.shutil, "disk_usage", usage)
    code, line = run_cli(capsys, "export", store_path, "--point", "p", "--out", out / "p.npy")
    assert code == 2 and "needs 1.2 MB" in line and "1.0 MB free" in line
    assert list(out.iterdir()) == []


def test_export_onto_a_real_full_tmpfs(store_path, tmp_path):
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"]).returncode != 0:
        pytest.skip("needs a private mount namespace (unshare -m, as root) to mount a small tmpfs")
    out = tmp_path / "small"
    out.mkdir()
    command = (f"mount -t tmpfs -o size=512k tmpfs {out} && "
               f"{sys.executable} -m neurometry.cli export {store_path} --point p --out {out}/p.npy; "
               f"echo rc=$?; ls -A {out}")
    done = subprocess.run(["unshare", "-m", "sh", "-c", command], capture_output=True, text=True, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "free" in lines[0], done.stderr
    assert done.stdout.split() == ["rc=2"]  # and nothing listed in the tmpfs


def test_report_on_a_full_disk_says_so_and_leaves_no_tmp(store_path, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    real = Path.write_text

    def write_text(self, text, *args, **kwargs):
        real(self, text[:100], *args, **kwargs)  # part of the page reached the disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", write_text)
    code, line = run_cli(capsys, "report", store_path, "-o", out / "report.html")
    assert code == 2 and "disk is full" in line and "report.html" in line
    assert list(out.iterdir()) == []
