"""`neurometry compare` over .npy files, stores and .mat RDMs: values equal the library, one JSON
document, results saved in the store, plots written, user errors exit 2 in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neurometry import open_store, record
from neurometry.cli import main
from neurometry.compare.kernel_alignment import cka
from neurometry.models.tiny import tiny_bert
from neurometry.store.results import COMPARE
from tests.conftest import KRIEGESKORTE_MAT

SENTENCES = Path(__file__).resolve().parents[2] / "src" / "neurometry" / "data" / "sentences.jsonl"


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def arrays(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 6))
    y = x @ rng.normal(size=(6, 9)) + 0.5 * rng.normal(size=(80, 9))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return tmp_path / "x.npy", tmp_path / "y.npy", x, y


def test_npy_pair_json_equals_library_with_statistics(arrays, capsys):
    xp, yp, x, y = arrays
    code, out, _ = run(
        capsys,
        "compare",
        str(xp),
        str(yp),
        "--metric",
        "cka",
        "--estimator",
        "unbiased",
        "--permutations",
        "50",
        "--bootstrap",
        "50",
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    (r,) = doc["results"]
    assert r["point_a"] == "x" and r["point_b"] == "y" and r["metric"] == "cka"
    assert r["value"] == pytest.approx(cka(x, y, estimator="unbiased"), rel=1e-12)
    assert r["p_value"] == pytest.approx(1 / 51) and r["ci_low"] < r["value"] < r["ci_high"]
    code, out, _ = run(capsys, "compare", str(xp), str(yp), "--metric", "cka", "--estimator", "unbiased")
    assert code == 0 and f"{r['value']:.4f}" in out and out.count("\n") >= 2


def test_store_self_similarity_matrix_is_saved_and_plotted(tmp_path, capsys):
    out = tmp_path / "s"
    record(tiny_bert(), SENTENCES, ["resid.*"], out, reduce="mean", progress=False)
    plot = tmp_path / "heat.png"
    code, text, _ = run(capsys, "compare", str(out), "--metric", "cka", "--json", "--plot", str(plot))
    assert code == 0 and plot.stat().st_size > 5_000
    doc = json.loads(text)
    store = open_store(out)
    points = [p.point for p in store.points()]
    assert len(doc["results"]) == len(points) ** 2
    value = {(r["point_a"], r["point_b"]): r["value"] for r in doc["results"]}
    for p in points:
        assert value[p, p] == pytest.approx(1.0, abs=1e-12)
    a, b = points[0], points[-1]
    assert value[a, b] == pytest.approx(cka(store.activations(a), store.activations(b)), rel=1e-9)
    saved = COMPARE.load(store)
    assert len(saved) == len(points) ** 2
    code, text, _ = run(capsys, "compare", str(out), "--metric", "cka")
    assert code == 0 and "A \\ B" in text  # a grid when there are only values


@pytest.mark.skipif(not KRIEGESKORTE_MAT.exists(), reason="../shared/data is not beside this checkout")
def test_brain_rdms_from_mat_agree_with_rsatoolbox(capsys, tmp_path):
    rsatoolbox = pytest.importorskip("rsatoolbox")
    code, text, _ = run(
        capsys,
        "compare",
        str(KRIEGESKORTE_MAT),
        "--rdm-key",
        "RDMs_mIT_hIT_fig1",
        "--metric",
        "rsa",
        "--points-b",
        "hIT*",
        "--points-a",
        "mIT*",
        "--json",
    )
    assert code == 0
    (r,) = json.loads(text)["results"]
    import scipy.io

    mat = scipy.io.loadmat(KRIEGESKORTE_MAT, struct_as_record=False, squeeze_me=True)["RDMs_mIT_hIT_fig1"]
    monkey, human = (rsatoolbox.rdm.RDMs(m.RDM[None, :]) for m in mat)
    expected = rsatoolbox.rdm.compare(monkey, human, method="spearman")[0, 0]
    assert r["value"] == pytest.approx(expected, abs=1e-9)


def test_subject_rdms_give_a_noise_ceiling(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 20
    true = rng.normal(size=(n, 5))
    subjects = []
    for _ in range(4):
        noisy = true + 0.7 * rng.normal(size=true.shape)
        subjects.append(1 - np.corrcoef(noisy))
    np.save(tmp_path / "subjects.npy", np.stack(subjects))
    np.save(tmp_path / "model.npy", true + 0.3 * rng.normal(size=true.shape))
    code, text, _ = run(
        capsys,
        "compare",
        str(tmp_path / "model.npy"),
        str(tmp_path / "subjects.npy"),
        "--metric",
        "rsa",
        "--subjects",
        "--json",
    )
    assert code == 0
    doc = json.loads(text)
    ceiling = doc["noise_ceiling"]
    assert 0 < ceiling["lower"] < ceiling["upper"] <= 1 and ceiling["subjects"] == 4
    (r,) = doc["results"]
    assert r["point_b"].startswith("pooled")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["missing.npy", "--metric", "cka"], "does not exist"),
        (["{x}", "{y}", "--metric", "ckaa"], "did you mean cka"),
        (["{x}", "{y}", "--metric", "cka", "--alpha", "0.5"], "option --alpha does not apply"),
        (["{x}", "{short}", "--metric", "cka"], "different numbers of stimuli"),
        (["{x}", "{rdm}", "--metric", "cka"], "use --metric rsa"),
        (["{x}", "{nan}", "--metric", "cka"], "NaN"),
        (["{x}", "{y}", "--metric", "cka", "--subjects"], "--subjects"),
    ],
)
def test_user_errors_exit_2_in_one_line(arrays, tmp_path, capsys, args, fragment):
    xp, yp, x, _ = arrays
    np.save(tmp_path / "short.npy", x[:-1])
    np.save(tmp_path / "rdm.npy", 1 - np.corrcoef(x))
    bad = x.copy()
    bad[3, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    files = {
        "x": xp,
        "y": yp,
        "short": tmp_path / "short.npy",
        "rdm": tmp_path / "rdm.npy",
        "nan": tmp_path / "nan.npy",
    }
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in args]
    code, out, err = run(capsys, "compare", *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err
