"""The dashboard's Detect page: `/api/detect` holds the saved truth decoding of a planted store (read at the
point that holds the direction, chance at the other), its transfer matrix, output baselines and causal test, OOD
scores with their ROC curves and OOD AUROCs over a planted series whose classes tighten; headless Chromium draws
accuracy and AUROC against depth per method, the tables, the ROC curves and the series' AUROC and NC1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from neurometry.app import create_app
from neurometry.store import import_rows, open_store
from neurometry.store.results import TRUTH_BASELINE, TRUTH_CAUSAL, Result
from neurometry.store.writer import add_to_series
from neurometry.workflows.detect import detect_ood, detect_ood_series, detect_truth
from tests.cli.test_detect_command import planted_store

from .conftest import serve
from .test_browser import no_errors, visit, wait_ready


@pytest.fixture(scope="module")
def detect_store(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("detect")
    planted_store(folder / "a", seed=0)
    planted_store(folder / "b", seed=1)
    detect_truth(str(folder / "a"), label="label", group="group", transfer=[str(folder / "b")], controls=["group"],
                 progress=False)
    # a second run of three Gaussian classes and a fourth far from them, scored for OOD at its one point
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, size=(4, 12))
    centres[3] += 12.0
    classes = np.repeat(np.arange(4), 150)
    store = open_store(folder / "a")
    import_rows(store, "clusters", {"features": (centres[classes] + rng.normal(size=(600, 12))).astype(np.float32)},
                pd.DataFrame({"cls": classes}), "planted")
    store.close()
    detect_ood(str(folder / "a"), run="clusters", point="features", label="cls", in_values=["0", "1", "2"],
               bootstrap=0)
    # a series of three checkpoints whose classes tighten (NC1 falls), scored for OOD at every step
    store = open_store(folder / "a")
    for step in (1, 2, 4):
        features = centres[classes] + rng.normal(size=(600, 12)) * 3.0 / step
        import_rows(store, f"tight-{step}", {"features": features.astype(np.float32)}, pd.DataFrame({"cls": classes}),
                    "planted")
        add_to_series(store, f"tight-{step}", "tight", step, f"step {step}")
    # what `detect causal` and `detect truth --baselines` save (they need a language model; numbers as given)
    TRUTH_CAUSAL.save(store, "statements", [Result("late", "mass_mean", 0.5, params={"label": "label", "alphas": [-3.0, 3.0],
                      "statements": 10, "shots": 4, "seed": 0}, extra={"gap_true": [0.2, 0.8], "gap_false": [0.1, 0.5], "n": 10})])
    TRUTH_BASELINE.save(store, "statements", [
        Result("output", "log_probability", None, params={"label": "label", "statements": 20, "shots": 4, "seed": 0},
               extra={"auroc": 0.61, "n": 20}),
        Result("output", "few_shot", 0.55, params={"label": "label", "statements": 20, "shots": 4, "seed": 0},
               extra={"auroc": 0.57, "n": 20})])
    store.close()
    detect_ood_series(str(folder / "a"), series="tight", point="features", label="cls", in_values=["0", "1", "2"],
                      scores=["mahalanobis", "msp"], progress=False)
    return folder / "a"


def test_the_api_gives_truth_by_point_and_the_transfer(detect_store):
    with TestClient(create_app(detect_store), base_url="http://127.0.0.1:8765") as client:
        d = client.get("/api/detect").json()
    (truth,) = d["truth"]
    accuracy = {(r["point"], r["method"]): r["accuracy"] for r in truth["records"]}
    assert accuracy["late", "mass_mean"] > 0.85 and abs(accuracy["early", "mass_mean"] - 0.5) < 0.1
    assert len(d["transfer"]) == 6 and d["transfer"][0]["names"] == ["a", "b"]
    (ood,) = d["ood"]
    assert ood["point"] == "features" and ood["in"] == ["0", "1", "2"] and len(ood["records"]) == 6
    mahalanobis = next(r for r in ood["records"] if r["score"] == "mahalanobis")
    assert mahalanobis["auroc"] > 0.95 and len(mahalanobis["roc"]["tpr"]) == 101
    (series,) = d["ood_over_training"]
    assert series["steps"] == [1, 2, 4] and series["nc1"][2] < series["nc1"][0] / 4  # spread / 4: NC1 / 16
    assert {r["score"] for r in series["records"]} == {"mahalanobis", "msp"}
    assert d["causal"][0]["shift"] == 0.5
    assert {(b["kind"], b["method"]) for b in d["baselines"]} == {("output", "log_probability"), ("output", "few_shot"),
                                                                 ("control", "group")}


@pytest.fixture(scope="module")
def base_url(detect_store):
    yield from serve(create_app(detect_store))


def test_the_page_draws_accuracy_and_auroc_by_point_and_the_transfer(page):
    visit(page, "/")
    page.locator("tr.link", has_text="truth_probe").first.click()
    wait_ready(page)
    assert page.url.endswith("#/detect")
    charts = page.locator("#truth-0 svg.line")
    assert charts.first.is_visible() and page.locator("#ood-0 svg.line").is_visible()  # drawn, not only in the DOM
    assert charts.count() == 2 and charts.first.locator("polyline").count() == 3  # a line per method
    assert page.locator("table").count() == 10  # baselines, causal, a transfer table per point and method, OOD, series
    roc = page.locator("#ood-0 svg.line")
    assert roc.count() == 1 and roc.locator("polyline").count() == 7  # six scores and the dashed chance line
    assert roc.locator("polyline.reference").count() == 1
    assert roc.locator("text.x-label").text_content() == "false positive rate"  # the x axis says what it is
    assert page.locator("#ood-0 table tr").count() == 7  # a header and a row per score
    series = page.locator("#ood-series-0 svg.line")
    assert series.count() == 2 and series.first.is_visible() and series.first.locator("polyline").count() == 2
    assert page.locator("#baselines").is_visible() and page.locator("#causal").is_visible()
    assert page.get_by_text("control: group").count() == 1  # a control row, named as one
    no_errors(page)
