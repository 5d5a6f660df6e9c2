"""`neurometry lab`: the JSON contract, the series and checkpoints it leaves, and that recording its saved
checkpoints again with `record --checkpoints` gives the live recorder's values bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neurometry.lab.base import Lab, ProbeData
from neurometry.store import open_store
from neurometry.threads import blas_threads

STEPS = 300  # the collapse lab's test size trains 1,500 steps; 300 keep this file quick


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory):
    from neurometry.cli import main

    root = tmp_path_factory.mktemp("lab")
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["lab", "collapse", "--size", "test", "--steps", str(STEPS), "--out", str(root / "store"),
                     "--json"])
    assert code == 0
    return root, json.loads(out.getvalue())


def test_the_json_document_has_one_record_per_checkpoint_and_the_findings(lab_run):
    root, document = lab_run
    steps = [r["step"] for r in document["results"]]
    assert steps[0] == 0 and steps[-1] == STEPS and steps == sorted(set(steps))
    for record in document["results"]:
        assert {"train_loss", "test_loss", "train_accuracy", "test_accuracy"} <= set(record)
    assert document["findings"]["nc1_last"] < document["findings"]["nc1_first"]
    assert document["series"] == "collapse" and document["phases"]["curve"] == "train_error_floored"
    # the terminal phase: the last phase the runner reports starts where the findings say it does
    assert document["phases"]["phases"][-1]["start_step"] == document["findings"]["terminal_phase_step"]


def test_the_series_holds_every_checkpoint_with_its_metrics_and_geometry(lab_run):
    root, document = lab_run
    store = open_store(root / "store")
    series = store.series("collapse")
    assert [s.step for s in series] == [r["step"] for r in document["results"]]
    geometry = {(g["step"], g["point"], g["measure"]) for g in document["geometry"]}
    points = [p.point for p in store.points(series[-1].run_id)]
    assert geometry == {(s.step, p, m) for s in series for p in points for m in ("effective_rank", "alpha_req")}
    checkpoints = sorted((root / "checkpoints" / "collapse").glob("*.safetensors"))
    assert len(checkpoints) == len(series)


def test_recording_the_saved_checkpoints_again_gives_the_same_rows(lab_run, run_cli):
    root, _ = lab_run
    probes = next((root / "store" / "probes").glob("collapse-*.npz"))
    with blas_threads(torch_threads=True):  # the lab recorded on one thread; sums on two round differently
        result = run_cli("record", "lab:collapse:test", probes, "--points", "features", "--checkpoints",
                         root / "checkpoints" / "collapse", "--series", "again", "--out", root / "store", "--quiet",
                         "--batch-size", "1024")  # the lab records in batches of 1,024
    assert result.returncode == 0, result.stderr
    store = open_store(root / "store")
    live, again = store.series("collapse"), store.series("again")
    assert [s.step for s in live] == [s.step for s in again]
    for first, second in zip(live, again, strict=True):
        np.testing.assert_array_equal(store.activations("features", run=first.run_id),
                                      store.activations("features", run=second.run_id))


def test_recording_lab_name_without_checkpoints_records_its_initialisation(lab_run, run_cli, tmp_path):
    """`record lab:NAME` is the lab's model as built with seed 0, before any update: the lab's own step 0."""
    root, _ = lab_run
    probes = next((root / "store" / "probes").glob("collapse-*.npz"))
    with blas_threads(torch_threads=True):
        result = run_cli("record", "lab:collapse:test", probes, "--points", "features", "--out", tmp_path / "init",
                         "--quiet", "--batch-size", "1024")
    assert result.returncode == 0, result.stderr
    assert "run 'collapse'" in result.stdout
    first = open_store(root / "store").series("collapse")[0]
    assert first.step == 0
    np.testing.assert_array_equal(open_store(tmp_path / "init").activations("features", run="collapse"),
                                  open_store(root / "store").activations("features", run=first.run_id))


def test_running_the_lab_again_replaces_its_series(lab_run, run_cli):
    root, _ = lab_run
    result = run_cli("lab", "collapse", "--size", "test", "--steps", "40", "--out", root / "store", "--json")
    assert result.returncode == 0, result.stderr
    assert "replacing series 'collapse'" in result.stderr
    steps = [s.step for s in open_store(root / "store").series("collapse")]
    assert steps[-1] == 40 and steps == [r["step"] for r in json.loads(result.stdout)["results"]]


@pytest.mark.parametrize("args, message", [
    (("lab", "grokkin", "--out", "{tmp}/s"), "did you mean grokking"),
    (("lab", "collapse"), "give --out STORE"),
    (("lab", "collapse", "--sweep", "--out", "{tmp}/s"), "has no option 'sweep'"),
])
def test_bad_lab_requests_are_one_line(run_cli, tmp_path, args, message):
    result = run_cli(*(a.format(tmp=tmp_path) for a in args))
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "s").exists()


def test_too_few_checkpoints_for_phases_leave_nothing_behind(run_cli, tmp_path):
    """--steps 1 trains (checkpoints 0 and 1) but two checkpoints hold no two phases: one line, and neither the
    store nor the checkpoint folder this call made is left (it left both before)."""
    result = run_cli("lab", "superposition", "--size", "test", "--steps", "1", "--out", tmp_path / "s", "--json")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--steps 1 gave 2 checkpoints, too few to find phases (at least 4); give more --steps" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_steps_below_one_are_a_usage_error(run_cli, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        run_cli("lab", "collapse", "--steps", "0", "--out", tmp_path / "s")
    assert stopped.value.code == 2 and "--steps: must be at least 1" in capsys.readouterr().err


def test_lab_list_names_every_lab(run_cli):
    result = run_cli("lab", "--list")
    assert result.returncode == 0
    assert [line.split()[0] for line in result.stdout.splitlines()] == [
        "grokking", "induction", "superposition", "collapse", "flipflop", "integrator"]


class OneUnitLab(Lab):
    """A lab entry whose second point is one unit wide (a logit): y = w . x fitted to a planted w."""

    name, title, phase_curve, phase_transform, reduce = "one-unit", "a linear logit", "train_loss", "log", "none"
    options: dict = {}

    def build(self):
        import torch

        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 1))

    def points(self):
        return {"hidden": "0", "logit": "1"}

    def probe_data(self):
        import pandas as pd
        import torch

        return ProbeData(torch.randn(16, 4, generator=torch.Generator().manual_seed(1)), pd.DataFrame({"i": range(16)}))

    def train(self, model, checkpoint):
        import torch

        self.steps = self.steps or 20
        inputs = torch.randn(64, 4, generator=torch.Generator().manual_seed(2))
        target = inputs @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]])
        optimiser = torch.optim.SGD(model.parameters(), lr=0.05)
        for step in range(self.steps + 1):
            loss = torch.nn.functional.mse_loss(model(inputs), target)
            if step % 4 == 0:
                checkpoint(step, {"train_loss": float(loss.detach())})
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()

    def findings(self, model, results):
        return {"final_loss": results[-1]["train_loss"]}



def test_a_one_unit_point_is_recorded_but_left_out_of_the_geometry(tmp_path, monkeypatch):
    from neurometry.lab import LABS
    from neurometry.workflows.lab import run_lab

    monkeypatch.setitem(LABS, "one-unit", "tests.cli.test_lab_command:OneUnitLab")
    document = run_lab("one-unit", tmp_path / "store", progress=False)
    assert document["findings"]["final_loss"] < document["results"][0]["train_loss"]
    assert {r["point"] for r in document["geometry"]} == {"hidden"}  # no spectrum of one unit
    store = open_store(tmp_path / "store")
    assert store.activations("logit", run=store.series("one-unit")[-1].run_id).shape == (16, 1)
    store.close()
