"""The dashboard's Detect page: `/api/detect` holds the saved truth decoding of a planted store (read at the
point that holds the direction, chance at the other) and its transfer matrix; headless Chromium draws accuracy
and AUROC against depth per method and the transfer table."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from neurometry.app import create_app
from neurometry.workflows.detect import detect_truth
from tests.cli.test_detect_command import planted_store

from .conftest import serve
from .test_browser import no_errors, visit, wait_ready


@pytest.fixture(scope="module")
def detect_store(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("detect")
    planted_store(folder / "a", seed=0)
    planted_store(folder / "b", seed=1)
    detect_truth(str(folder / "a"), label="label", group="group", transfer=[str(folder / "b")], progress=False)
    return folder / "a"


def test_the_api_gives_truth_by_point_and_the_transfer(detect_store):
    with TestClient(create_app(detect_store), base_url="http://127.0.0.1:8765") as client:
        d = client.get("/api/detect").json()
    (truth,) = d["truth"]
    accuracy = {(r["point"], r["method"]): r["accuracy"] for r in truth["records"]}
    assert accuracy["late", "mass_mean"] > 0.85 and abs(accuracy["early", "mass_mean"] - 0.5) < 0.1
    assert len(d["transfer"]) == 6 and d["transfer"][0]["names"] == ["a", "b"]


@pytest.fixture(scope="module")
def base_url(detect_store):
    yield from serve(create_app(detect_store))


def test_the_page_draws_accuracy_and_auroc_by_point_and_the_transfer(page):
    visit(page, "/")
    page.locator("tr.link", has_text="truth_probe").first.click()
    wait_ready(page)
    assert page.url.endswith("#/detect")
    charts = page.locator("#truth-0 svg.line")
    assert charts.count() == 2 and charts.first.locator("polyline").count() == 3  # a line per method
    assert page.locator("table").count() == 6  # one transfer table per point and method
    no_errors(page)
