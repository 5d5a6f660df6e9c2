"""The dashboard's Dynamics page: `/api/dynamics` holds the saved fixed points of the bistable unit
h' = tanh(2h + x) (two stable points at +-h*, an unstable one at 0) placed in the plane of its recorded
trajectories, and its Lyapunov spectrum; in headless Chromium the page draws the trajectories, the points
coloured by stability and the eigenvalues against the unit circle."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy.optimize import brentq

from neurometry.app import create_app
from neurometry.models.load import wrap_module
from neurometry.record import record
from neurometry.store import open_store
from neurometry.workflows.dynamics import fixed_points_of_run, lyapunov_of_run
from tests.conftest import Bistable

from .conftest import serve
from .test_browser import no_errors, visit, wait_ready

ROOT = brentq(lambda h: math.tanh(2 * h) - h, 0.5, 1.0)


@pytest.fixture(scope="module")
def dynamics_store(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dynamics")
    inputs = np.zeros((12, 25, 1), dtype=np.float32)
    inputs[:, :3, 0] = np.random.default_rng(0).choice([-1.0, 1.0], size=(12, 1))
    np.save(folder / "trials.npy", inputs)
    model = wrap_module(Bistable(), "bistable")
    record(model, folder / "trials.npy", ["rnn"], folder / "s.nmstore", reduce="steps", progress=False)
    store = open_store(folder / "s.nmstore")
    fixed_points_of_run(model, store, initial_states=64, noise=0.3)
    lyapunov_of_run(model, store, discard=10)
    store.close()
    return folder / "s.nmstore"


def test_the_api_places_the_saved_points_in_the_trajectories_plane(dynamics_store):
    with TestClient(create_app(dynamics_store), base_url="http://127.0.0.1:8765") as client:
        d = client.get("/api/dynamics").json()
    (search,) = d["searches"]
    assert len(search["lines"]) == 12 and len(search["lines"][0]) == 25
    assert sorted(p["stability"] for p in search["points"]) == ["stable", "stable", "unstable"]
    # one state unit: the plane's first axis is the unit itself (up to sign), about the trajectories' mean
    xs = sorted(p["x"] for p in search["points"])
    assert xs[2] - xs[0] == pytest.approx(2 * ROOT, abs=1e-9) and xs[1] - xs[0] == pytest.approx(ROOT, abs=1e-9)
    assert all(p["y"] == 0 for p in search["points"])
    unstable = next(p for p in search["points"] if p["stability"] == "unstable")
    assert unstable["eigenvalues"] == [[pytest.approx(2.0), 0.0]] and unstable["unstable_directions"] == 1
    (spectrum,) = d["spectra"]
    assert spectrum["exponents"][0] == pytest.approx(math.log(2 * (1 - ROOT**2)), abs=1e-6)


@pytest.fixture(scope="module")
def base_url(dynamics_store):
    yield from serve(create_app(dynamics_store))


def test_the_page_draws_trajectories_points_and_the_unit_circle(page):
    visit(page, "/")
    page.locator("tr.link", has_text="fixed_point_search").first.click()
    wait_ready(page)
    assert page.url.endswith("#/dynamics")
    plane = page.locator("#search-0 svg.plane").first
    assert plane.is_visible()  # drawn, not only in the DOM (an HTML box made as an SVG element is not)
    assert plane.locator("polyline.trajectory").count() == 12
    assert plane.locator("circle.dot.stable").count() == 2 and plane.locator("circle.dot.unstable").count() == 1
    eigen = page.locator("#search-0 svg.plane").nth(1)
    assert eigen.locator("circle.unit-circle").count() == 1 and eigen.locator("circle.eigenvalue").count() == 3
    assert page.locator("#search-0 table tr").count() == 4  # a header and three points
    assert "Kaplan-Yorke" in page.inner_text("#page")
    no_errors(page)
