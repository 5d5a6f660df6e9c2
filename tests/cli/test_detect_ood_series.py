"""`neurometry detect ood --series`: OOD detection at every checkpoint of a series against NC1. The series is the
digits testbed of tests/detect/test_ood_collapse_tracking.py (an MLP with batch norm trained on half of the digits
0-5 past zero training error, 12 log-spaced checkpoints), stored as one run per checkpoint with each row's digit
(6-9 as "ood"). The command's numbers equal ood_over_checkpoints on the rows and readouts it names; with the
split the command makes (half of the 0-5 rows fit, a logistic readout refitted at each step) NECO's AUROC still
rises as NC1 falls. Measured at seed 0: NC1 0.560 -> 0.0493, NECO 0.913 -> 0.990, Spearman(NC1, NECO AUROC)
-1.000; the refitted readout has no training error from the first step on (docs/detect.md)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from neurometry.detect import ood_over_checkpoints
from neurometry.store import import_rows, open_store
from neurometry.store.results import OOD_SERIES
from neurometry.store.writer import add_to_series
from neurometry.threads import blas_threads
from neurometry.workflows.detect import _fitted_readout, _ood_split
from tests.detect.test_ood_collapse_tracking import train_with_checkpoints
from tests.detect.test_ood_digits import digits_split


@pytest.fixture(scope="module")
def digits_series(tmp_path_factory):
    with blas_threads(1, torch_threads=True):
        trained = train_with_checkpoints(seed=0)
    _, _, y_train, y_test, x_ood = digits_split(0)
    digits = [str(d) for d in (*y_train, *y_test)] + ["ood"] * len(x_ood)
    path = tmp_path_factory.mktemp("series") / "s"
    store = open_store(path, create=True)
    for step, train, held, out in zip(trained["steps"], trained["train"], trained["id"], trained["ood"], strict=True):
        run = f"digits-step{step}"
        features = np.concatenate([train, held, out]).astype(np.float32)
        import_rows(store, run, {"features": features}, pd.DataFrame({"digit": digits}), "digits testbed")
        add_to_series(store, run, "digits", step, f"step {step}")
    store.close()
    return path, trained["steps"]


def test_series_aurocs_follow_nc1_and_equal_the_library(digits_series, run_cli):
    path, steps = digits_series
    result = run_cli("detect", "ood", path, "--series", "digits", "--point", "features", "--label", "digit", "--in",
                     *range(6), "--scores", "neco", "msp", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["steps"] == [float(s) for s in steps]
    neco = next(r for r in document["results"] if r["score"] == "neco")
    assert document["nc1"][-1] < document["nc1"][0] / 5  # the features collapse
    assert neco["auroc"][-1] > neco["auroc"][0] + 0.05 and neco["spearman"] < -0.8  # and NECO separates better
    # the same numbers from the library on the command's split and per-step readouts
    store = open_store(path)
    try:
        digits = store.metadata(f"digits-step{steps[0]}")["digit"].to_numpy()
        text, fitting, held_in, held_out = _ood_split(digits, [str(d) for d in range(6)], 0)
        rows = [store.activations("features", run=f"digits-step{s}").astype(np.float64) for s in steps]
        saved = OOD_SERIES.load(store)
    finally:
        store.close()
    with blas_threads():
        heads = [_fitted_readout(r[fitting], text[fitting]) for r in rows]
        expected = ood_over_checkpoints([r[fitting] for r in rows], text[fitting], [r[held_in] for r in rows],
                                        [r[held_out] for r in rows], heads, steps=steps, scores=("neco", "msp"))
    np.testing.assert_allclose(document["nc1"], expected.nc1, rtol=1e-12)
    np.testing.assert_allclose(neco["auroc"], expected.auroc["neco"], rtol=1e-12)
    assert neco["spearman"] == pytest.approx(expected.spearman["neco"])
    assert sorted(saved["name"]) == ["msp", "neco"] and set(saved["run_id"]) == {f"digits-step{steps[-1]}"}
    table = run_cli("detect", "ood", path, "--series", "digits", "--point", "features", "--label", "digit", "--in",
                    *range(6), "--scores", "neco")
    assert table.returncode == 0 and "Spearman(NC1, AUROC)" in table.stdout
    report = run_cli("report", path, "-o", path.parent / "report.html")
    assert report.returncode == 0, report.stderr
    section = (path.parent / "report.html").read_text().split('id="s-ood_series"')[1]
    assert section.count("data:image/png;base64,") == 1 and f"{neco['spearman']:+.3f}" in section


def test_series_bad_input_is_one_line(digits_series, run_cli):
    path, _ = digits_series
    for args, message in [
        (("--series", "nope", "--point", "features", "--label", "digit"), "no series 'nope'"),
        (("--series", "digits", "--label", "digit"), "--series needs --point"),
        (("--series", "digits", "--point", "features", "--label", "shade"), "no column 'shade'"),
        (("--series", "digits", "--point", "features", "--label", "digit", "--classifier", "w.safetensors"),
         "leave out --labels, --classifier, --run and --bootstrap"),
        (("--series", "digits", "--point", "features", "--label", "digit", "--bootstrap", "50"),
         "leave out --labels, --classifier, --run and --bootstrap"),
    ] + ([] if torch.cuda.is_available() else [
        (("--series", "digits", "--point", "features", "--label", "digit", "--scores", "knn", "--device", "cuda"),
         "--device cuda"),
    ]):
        result = run_cli("detect", "ood", path, *args, "--in", "0", "1")
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    one_class = run_cli("detect", "ood", path, "--series", "digits", "--point", "features", "--label", "digit", "--in", "0")
    assert one_class.returncode == 2 and len(one_class.stderr.strip().splitlines()) == 1, one_class.stderr
    assert "a series fits a readout at every step: give two or more --in values" in one_class.stderr

