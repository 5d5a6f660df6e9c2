"""The dashboard's Reading page: `/api/reading` holds a saved reading-time fit (a planted 12 ms/bit slope on a
tiny causal model's word surprisal), the sources in order and the scatter's words; in headless Chromium the page
draws the layer profile, the surprisal-reading time scatter with its fit line, and the residual table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from neurometry.app import create_app
from neurometry.models.tiny import tiny_llama
from neurometry.workflows.language import reading_fit, surprisal_to_store

from .conftest import serve
from .test_browser import no_errors, visit, wait_ready


@pytest.fixture(scope="module")
def reading_store(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("reading")
    rng = np.random.default_rng(0)
    vocabulary = "the a cat dog sat ran on under mat tree house".split()
    words = pd.DataFrame([{"item": item, "zone": zone, "word": str(rng.choice(vocabulary))}
                          for item in (1, 2, 3) for zone in range(1, 61)])
    words.to_csv(folder / "words.tsv", sep="\t", index=False)
    run, scores = surprisal_to_store(tiny_llama(seed=1), folder / "words.tsv", folder / "s.nmstore", lens=True,
                                     progress=False)
    surprisal = np.nan_to_num(scores.words["surprisal"].to_numpy(float))
    words.assign(rt=300 + 12 * surprisal + rng.normal(0, 0.5, len(words))).to_csv(folder / "rt.tsv", sep="\t",
                                                                                   index=False)
    reading_fit(folder / "s.nmstore", folder / "rt.tsv", target="rt", spillover=1, permutations=50)
    return folder / "s.nmstore"


def test_the_api_gives_the_fit_by_source_and_its_words(reading_store):
    with TestClient(create_app(reading_store), base_url="http://127.0.0.1:8765") as client:
        (fit,) = client.get("/api/reading").json()
    assert [s["source"] for s in fit["sources"]] == ["final", "resid.0", "resid.1"]
    assert fit["sources"][0]["slope_ms_per_bit"] == pytest.approx(12, abs=1.0)
    kept = fit["sources"][0]["words"]
    assert fit["scatter"]["words"] == kept == len(fit["scatter"]["surprisal"])  # fewer than 2,000: all drawn
    assert len(fit["largest_residuals"]) == 20 and fit["settings"]["target"] == "rt"


@pytest.fixture(scope="module")
def base_url(reading_store):
    yield from serve(create_app(reading_store))


def test_the_page_draws_the_profile_the_scatter_and_the_residual_words(page):
    visit(page, "/")
    page.locator("tr.link", has_text="reading_fit").first.click()
    wait_ready(page)
    assert page.url.endswith("#/reading")
    box = page.locator("#fit-0")
    assert box.locator("svg.line").is_visible()  # drawn, not only in the DOM
    assert box.locator("svg.line polyline").count() == 1  # the lens layers' gain
    scatter = box.locator("svg.scatter")
    assert scatter.locator("circle.word").count() > 150 and scatter.locator("line.fit").count() == 1
    assert box.locator("table").nth(0).locator("tr").count() == 4  # a header and three sources
    assert box.locator("table").nth(1).locator("tr").count() == 21  # a header and twenty words
    no_errors(page)
