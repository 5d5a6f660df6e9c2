"""The dashboard's "Over training" page: `/api/series` and `/api/series/NAME` equal what the store holds
(checkpoints, training metrics, saved phases, measures per step and point, similarity with the reference
step, a lab's findings), the runs page and the comparisons leave a series' checkpoints to that page, and in
headless Chromium the page draws the shaded phases at the saved boundaries and a heatmap per measure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from neurometry.app import create_app
from neurometry.store import import_array, open_store
from neurometry.store.results import COMPARE, LAB, MEASURE, PHASES, Result, set_name
from neurometry.workflows.series import (
    compare_series,
    measure_series,
    series_phases,
    training_curves,
)
from tests.conftest import train_series

from .conftest import ARTIFACTS, serve
from .test_browser import wait_ready

LOCAL = "http://127.0.0.1:8765"
FINDINGS = {"final_test_accuracy": 0.96875, "grok_step": 7, "key_frequencies": [3, 11], "nothing": float("nan")}




@pytest.fixture(scope="module")
def series_store(tmp_path_factory) -> Path:
    """Series ``toy`` (10 checkpoints with metrics, two phases results, two measures, CKA with step 9 and a
    lab's findings), series ``other`` (4 checkpoints, metrics only) and a plain run ``plain``."""
    store = tmp_path_factory.mktemp("series") / "s.nmstore"
    train_series(store, "toy", 10, seed=0)
    train_series(store, "other", 4, seed=1)
    opened = open_store(store)
    import_array(opened, "plain", "p", [np.random.default_rng(0).standard_normal((40, 6)).astype(np.float32)], 40)
    series_phases(opened, "toy", "train_loss", method="binseg", n_changes=2)
    measure_series(opened, "toy", measures=["effective_rank", "anisotropy"], progress=False)
    series_phases(opened, "toy", "effective_rank", point="hidden.1", method="binseg", n_changes=1)
    compare_series(opened, "toy", "cka", progress=False)
    LAB.save(opened, "toy-step9", [Result("", "toy", None, params={"lab": "toy", "size": "test", "seed": 0},
                                          extra={"findings": FINDINGS, "seconds": 1.5}, result_set=set_name(lab="toy"))])
    opened.close()
    return store


@pytest.fixture(scope="module")
def client(series_store):
    with TestClient(create_app(series_store), raise_server_exceptions=False, base_url=LOCAL) as test_client:
        yield test_client


def ok(response):
    assert response.status_code == 200, response.text
    return response.json()


def test_series_overview_equals_the_store(client, series_store):
    store = open_store(series_store, read_only=True)
    assert ok(client.get("/api/series")) == [
        {"series": "other", "model": "other", "checkpoints": 4, "complete": 4, "first_step": 0, "last_step": 3},
        {"series": "toy", "model": "toy", "checkpoints": 10, "complete": 10, "first_step": 0, "last_step": 9},
    ]
    o = ok(client.get("/api/series/toy"))
    steps = store.series("toy")
    assert [(s["step"], s["run"], s["source"]) for s in o["steps"]] == [(s.step, s.run_id, s.source) for s in steps]
    assert o["points"] == ["hidden.0", "hidden.1"]
    curves = training_curves(store, "toy")
    assert o["training"]["steps"] == curves["step"].tolist() == list(range(10))
    for metric in ("train_loss", "test_loss"):
        np.testing.assert_allclose(o["training"]["metrics"][metric], curves[metric].to_numpy(), rtol=1e-12)
    # phases: the saved boundaries, ranges and means, the training metric's first
    saved = {(r.params["curve"], r.params["point"]): r.extra for r in PHASES.load(store).itertuples()}
    assert [(p["curve"], p["point"]) for p in o["phases"]] == [("train_loss", None), ("effective_rank", "hidden.1")]
    for p in o["phases"]:
        extra = saved[(p["curve"], p["point"])]
        assert p["boundaries"] == extra["boundaries"] and len(p["boundaries"]) == {"train_loss": 2}.get(p["curve"], 1)
        assert p["phases"] == extra["phases"] and p["steps"] == extra["steps"]
        np.testing.assert_allclose(p["values"], extra["values"], rtol=1e-12)
    # measures: points x steps, each cell the MEASURE row of that step's run
    measures = MEASURE.load(store)
    assert sorted(m["measure"] for m in o["measures"]) == ["anisotropy", "effective_rank"]
    for m in o["measures"]:
        assert m["points"] == ["hidden.0", "hidden.1"] and m["steps"] == list(range(10))
        for i, point in enumerate(m["points"]):
            for j, step in enumerate(m["steps"]):
                row = measures[(measures.run_id == f"toy-step{step}") & (measures.point == point)
                               & (measures.name == m["measure"])]
                assert m["values"][i][j] == pytest.approx(row["value"].item(), rel=1e-12)
    # similarity with step 9: 1 at step 9 itself, each cell the COMPARE row of that step's run
    (cka,) = o["similarity"]
    compared = COMPARE.load(store)
    assert cka["metric"] == "cka" and cka["reference_step"] == 9 and cka["steps"] == list(range(10))
    for i, point in enumerate(cka["points"]):
        for j, step in enumerate(cka["steps"]):
            row = compared[(compared.run_id == f"toy-step{step}") & (compared.point == point)]
            assert cka["values"][i][j] == pytest.approx(row["value"].item(), rel=1e-12)
        assert cka["values"][i][-1] == pytest.approx(1.0, abs=1e-6)
    (lab,) = o["labs"]
    assert lab["lab"] == "toy" and lab["seconds"] == 1.5
    assert lab["findings"] == {**FINDINGS, "nothing": None}  # NaN comes back as JSON null

    other = ok(client.get("/api/series/other"))
    assert [s["step"] for s in other["steps"]] == [0, 1, 2, 3]
    assert other["phases"] == other["measures"] == other["similarity"] == other["labs"] == []
    assert set(other["training"]["metrics"]) == {"train_loss", "test_loss"}


def test_unknown_series_is_a_one_line_error(client):
    response = client.get("/api/series/toys")
    assert response.status_code == 400
    message = response.json()["error"]
    assert "no series 'toys'" in message and "toy" in message and "\n" not in message


def test_summary_and_comparisons_leave_series_to_their_page(client):
    summary = ok(client.get("/api/summary"))
    by_run = {r["run"]: (r["series"], r["step"]) for r in summary["runs"]}
    assert by_run["plain"] == (None, None) and by_run["toy-step4"] == ("toy", 4) and by_run["other-step3"] == ("other", 3)
    assert [s["series"] for s in summary["series"]] == ["other", "toy"]
    assert ok(client.get("/api/comparisons")) == []  # the only comparisons are the steps of toy with step 9


def test_store_without_series(tmp_path):
    store = open_store(tmp_path / "plain.nmstore", create=True)
    import_array(store, "r", "p", [np.zeros((4, 2), np.float32)], 4)
    store.close()
    with TestClient(create_app(tmp_path / "plain.nmstore"), raise_server_exceptions=False, base_url=LOCAL) as client:
        assert ok(client.get("/api/series")) == []
        assert ok(client.get("/api/summary"))["series"] == []
        assert "no series 'x'" in client.get("/api/series/x").json()["error"]


# -- in the browser ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base_url(series_store):
    yield from serve(create_app(series_store))


def test_training_page_draws_phases_heatmaps_and_findings(page, series_store):
    page.goto(f"{page.base_url}/#/")
    wait_ready(page)
    runs = page.locator("table").first.inner_text()
    assert "plain" in runs and "toy-step" not in runs  # checkpoints are listed by series, not run by run
    page.locator("tr.link", has_text="toy").first.click()
    wait_ready(page)
    assert page.url.endswith("#/training/toy")
    store = open_store(series_store, read_only=True)
    assert page.locator("#series").get_attribute("data-series") == "toy"
    assert page.inner_text("#series-steps") == ", ".join(str(s.step) for s in store.series("toy"))

    saved = {r.params["curve"]: r.extra for r in PHASES.load(store).itertuples()}
    loss = page.locator("#training-charts svg.plot.steps")
    assert loss.count() == 1 and loss.locator("polyline").count() == 2  # train_loss and test_loss
    assert loss.locator("rect.phase").count() == len(saved["train_loss"]["phases"]) == 3
    drawn = [float(v) for v in loss.locator("line.boundary").evaluate_all("ls => ls.map(l => l.dataset.step)")]
    assert drawn == saved["train_loss"]["boundaries"]
    rank = page.locator('.phases[data-curve="effective_rank"]')
    assert rank.locator("rect.phase").count() == 2
    shown = [float(v) for v in rank.locator("line.boundary").evaluate_all("ls => ls.map(l => l.dataset.step)")]
    assert shown == saved["effective_rank"]["boundaries"]
    assert rank.locator(".boundaries").inner_text() == f"boundary at step {saved['effective_rank']['boundaries'][0]:g}"

    maps = page.locator("#measure-maps .chart")
    assert sorted(maps.evaluate_all("cs => cs.map(c => c.dataset.measure)")) == ["anisotropy", "effective_rank"]
    for k in range(2):
        assert maps.nth(k).locator("rect.cell").count() == 2 * 10  # points x steps
    # hovering a cell shows the saved value of that step and point
    cell = page.locator('#measure-maps .chart[data-measure="effective_rank"] rect.cell').first  # deepest point, step 0
    cell.hover()
    tip = page.locator("#tooltip").inner_text()
    measures = MEASURE.load(store)
    want = measures[(measures.run_id == "toy-step0") & (measures.point == "hidden.1")
                    & (measures.name == "effective_rank")]["value"].item()
    assert tip.startswith("hidden.1 at step 0") and float(tip.split("= ")[1]) == pytest.approx(want, rel=1e-3)

    similarity = page.locator("#similarity-charts svg.plot.steps")
    assert similarity.count() == 1 and similarity.locator("polyline").count() == 2
    assert similarity.locator("circle").count() == 2 * 10
    findings = page.locator(".findings").inner_text()
    assert "grok_step\t7" in findings and "key_frequencies\t3, 11" in findings and "0.9688" in findings

    (ARTIFACTS / "screenshots").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "screenshots" / "test_training_page.png"), full_page=True)

    page.goto(f"{page.base_url}/#/training/other")
    wait_ready(page)
    other = page.locator("#training-charts svg.plot.steps")
    assert other.count() == 1 and other.locator("rect.phase").count() == 0
    assert page.locator("#measure-maps").count() == 0
    assert not page.problems, page.problems
    assert page.locator(".error").count() == 0
    page.goto(f"{page.base_url}/#/training/nope")
    wait_ready(page)
    assert "no series 'nope'" in page.locator(".error").inner_text()
