"""`neurometry import`: export a recorded point, import it back under a new name (equal arrays, equal
metadata), .mat and .parquet inputs, `ls` shows the run, and every user error exits 2 in one line
with no run left behind."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.io

from neurometry import open_store, record
from neurometry.cli import main
from neurometry.models.tiny import tiny_bert


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def recorded(tmp_path, sentences_file):
    store = tmp_path / "acts"
    record(tiny_bert(), sentences_file, ["resid.1"], store, reduce="mean", progress=False)
    return store


@pytest.mark.parametrize("meta", ["parquet", "csv"])
def test_export_then_import_round_trips(recorded, tmp_path, capsys, meta):
    code, out, _ = run(capsys, "export", recorded, "--point", "resid.1", "--out", tmp_path / "x.npy", "--meta", meta)
    assert code == 0, out
    code, out, err = run(capsys, "import", tmp_path / "x.npy", "--point", "again", "--out", recorded,
                         "--metadata", tmp_path / f"x.{meta}", "--run", "reimported")
    assert code == 0 and err == "", err
    assert "imported 8 rows x 32 (float32)" in out and "run 'reimported', point 'again'" in out
    store = open_store(recorded)
    original, again = store.activations("resid.1", run="tiny-bert"), store.activations("again", run="reimported")
    assert again.dtype == original.dtype
    np.testing.assert_array_equal(again, original)
    before, after = store.metadata("tiny-bert"), store.metadata("reimported")
    assert set(after.columns) == set(before.columns) == {"row", "input_row", "text", "label", "id"}
    for column in before.columns:
        assert after[column].tolist() == before[column].tolist(), column

    # into a new store, under the default run name (the file's stem)
    code, out, _ = run(capsys, "import", tmp_path / "x.npy", "--point", "p", "--out", tmp_path / "new",
                       "--metadata", tmp_path / f"x.{meta}", "--json")
    document = json.loads(out)
    assert code == 0 and document["run_id"] == "x" and document["n_rows"] == 8 and document["shape"] == [32]
    np.testing.assert_array_equal(open_store(tmp_path / "new").activations("p"), original)


def test_ls_shows_the_imported_run(tmp_path, capsys):
    np.save(tmp_path / "monkey-IT.npy", np.random.default_rng(0).normal(size=(92, 16)).astype(np.float32))
    assert run(capsys, "import", tmp_path / "monkey-IT.npy", "--point", "IT", "--out", tmp_path / "s")[0] == 0
    code, out, _ = run(capsys, "ls", tmp_path / "s")
    assert code == 0
    run_line = next(line for line in out.splitlines() if line.startswith("monkey-IT "))
    assert run_line.split()[:2] == ["monkey-IT", "import:monkey-IT.npy"] and "92/92" in run_line and "complete" in run_line
    assert any(line.split()[:3] == ["monkey-IT", "IT", "vector"] and line.split()[-1] == "92" for line in out.splitlines())


def test_mat_and_parquet_inputs(tmp_path, capsys):
    rng = np.random.default_rng(1)
    resp = rng.normal(size=(12, 7))
    scipy.io.savemat(tmp_path / "brain.mat", {"resp": resp, "other": np.ones((3, 3)), "n": 12.0})
    code, _, err = run(capsys, "import", tmp_path / "brain.mat", "--point", "IT", "--out", tmp_path / "s")
    assert code == 2 and "--key" in err and "resp (12x7 double)" in err
    code, out, _ = run(capsys, "import", tmp_path / "brain.mat", "--key", "resp", "--point", "IT", "--out", tmp_path / "s")
    assert code == 0 and "note: float64 values stored as float32 (rounded" in out and "brain.mat['resp'] into" in out
    np.testing.assert_array_equal(open_store(tmp_path / "s").activations("IT", run="brain"), resp.astype(np.float32))

    emb = rng.normal(size=(5, 4)).astype(np.float32)
    pd.DataFrame({"word": list("abcde"), "vec": list(emb)}).to_parquet(tmp_path / "words.parquet")
    code, out, _ = run(capsys, "import", tmp_path / "words.parquet", "--point", "emb", "--out", tmp_path / "s")
    assert code == 0, out
    store = open_store(tmp_path / "s")
    np.testing.assert_array_equal(store.activations("emb"), emb)
    assert store.metadata("words")["word"].tolist() == list("abcde")


def _write_refusal_inputs(folder):
    good = np.ones((6, 3), dtype=np.float32)
    np.save(folder / "good.npy", good)
    nan = good.copy()
    nan[4, 2] = np.nan
    np.save(folder / "nan.npy", nan)
    inf = good.copy()
    inf[1, 0] = -np.inf
    np.save(folder / "inf.npy", inf)
    np.save(folder / "vector.npy", np.ones(6))
    np.save(folder / "scalar.npy", np.float32(1.0))
    np.save(folder / "empty.npy", np.ones((0, 3)))
    np.save(folder / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    pd.DataFrame({"label": range(5)}).to_csv(folder / "five.csv", index=False)
    pd.DataFrame({"label": range(6)}).to_parquet(folder / "six.parquet")
    (folder / "rows.txt").write_text("x\n")
    (folder / "data.h5").write_bytes(b"\x89HDF")
    scipy.io.savemat(folder / "m.mat", {"resp": np.ones((6, 3))})


REFUSALS = {
    "missing file": (["missing.npy"], "does not exist"),
    "unknown extension": (["data.h5"], "give a .npy, .mat or .parquet file"),
    "nan": (["nan.npy"], "1 NaN or Inf values, the first in row 4"),
    "inf": (["inf.npy"], "1 NaN or Inf values, the first in row 1"),
    "1-D": (["vector.npy"], "is 1-D (shape (6,))"),
    "0-D": (["scalar.npy"], "is 0-D"),
    "zero rows": (["empty.npy"], "has no rows"),
    "metadata rows": (["good.npy", "--metadata", "five.csv"], "five.csv has 5 rows but good.npy has 6"),
    "metadata missing": (["good.npy", "--metadata", "nope.parquet"], "metadata file"),
    "metadata extension": (["good.npy", "--metadata", "rows.txt"], "must be a .parquet or .csv"),
    "pickled objects": (["objects.npy"], "never unpickles"),
    "mat key missing": (["m.mat", "--key", "rsp"], "no variable 'rsp' (did you mean resp?)"),
    "bad point name": (["good.npy", "--point", "a/b"], "point name 'a/b'"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_exit_2_in_one_line_and_write_nothing(tmp_path, capsys, case):
    _write_refusal_inputs(tmp_path)
    args, message = REFUSALS[case]
    file, *rest = args
    rest = [str(tmp_path / a) if a.endswith((".csv", ".parquet", ".txt")) else a for a in rest]
    point = [] if "--point" in rest else ["--point", "p"]
    code, out, err = run(capsys, "import", tmp_path / file, *point, "--out", tmp_path / "new", *rest)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert message in err, err
    assert not (tmp_path / "new").exists()
    # into an existing store: still no run
    np.save(tmp_path / "first.npy", np.zeros((2, 2), dtype=np.float32))
    assert run(capsys, "import", tmp_path / "first.npy", "--point", "p", "--out", tmp_path / "s")[0] == 0
    code, _, err = run(capsys, "import", tmp_path / file, *point, "--out", tmp_path / "s", *rest)
    assert code == 2 and message in err
    assert [r.run_id for r in open_store(tmp_path / "s").runs()] == ["first"]


def test_existing_run_name_is_refused(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.zeros((3, 2), dtype=np.float32))
    assert run(capsys, "import", tmp_path / "a.npy", "--point", "p", "--out", tmp_path / "s")[0] == 0
    code, _, err = run(capsys, "import", tmp_path / "a.npy", "--point", "q", "--out", tmp_path / "s")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: run 'a' already exists in") and "pass --run" in err
    assert run(capsys, "import", tmp_path / "a.npy", "--point", "q", "--out", tmp_path / "s", "--run", "a2")[0] == 0
    assert [r.run_id for r in open_store(tmp_path / "s").runs()] == ["a", "a2"]
