"""End to end in headless Chromium (Debian's `chromium`, driven by Playwright): each page of the running
app renders its plots, search finds a known unit and a known latent, hovering a heatmap cell shows its
value, and the playground returns generations from a tiny model. Screenshots of every page are saved
under test-artifacts/screenshots (or $NEUROMETRY_ARTIFACTS)."""

from __future__ import annotations

import numpy as np
import pytest

from neurometry.app import Playground, create_app
from neurometry.features.examples import display_token
from neurometry.store import open_store
from neurometry.store.results import COMPARE, SAE_FEATURES

from .conftest import TINY, serve


@pytest.fixture(scope="module")
def base_url(served):
    yield from serve(create_app(served.store, Playground(TINY, [served.vector])))


def visit(tab, route: str) -> None:
    """Open a page of the app and wait until it has rendered (app.js marks #page when done)."""
    tab.goto(f"{tab.base_url}/#{route}")
    wait_ready(tab)


def wait_ready(tab) -> None:
    tab.wait_for_function(
        "() => { const p = document.getElementById('page');"
        " return p.dataset.ready === 'true' && p.dataset.route === location.hash; }",
        timeout=60_000,
    )


def no_errors(tab) -> None:
    assert not tab.problems, tab.problems
    assert tab.locator(".error").count() == 0, tab.locator(".error").all_inner_texts()


def test_runs_and_measure_profiles(page):
    visit(page, "/")
    assert page.locator("table").first.inner_text().count("complete") == 2
    page.locator("tr.link", has_text="mean").first.click()
    wait_ready(page)
    assert page.url.endswith("#/run/mean")
    charts = page.locator("svg.plot.line")
    assert charts.count() == 2  # effective_rank and anisotropy, one chart each
    for k in range(2):
        assert charts.nth(k).locator("circle").count() == 3  # embed, resid.0, resid.1
        assert charts.nth(k).locator("polyline").count() == 1
    no_errors(page)


def test_comparison_heatmap_shows_values_on_hover(page, client_values):
    visit(page, "/comparisons")
    cells = page.locator("svg.plot.heatmap rect.cell")
    assert cells.count() == 9
    box = cells.nth(2).bounding_box()  # row embed, column resid.1
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tip = page.locator("#tooltip")
    assert tip.is_visible()
    text = tip.inner_text()
    assert "embed × resid.1" in text
    assert float(text.split("cka = ")[1].split()[0]) == pytest.approx(client_values["cka_embed_resid1"], rel=1e-3)
    cells.nth(2).click()
    assert "embed × resid.1" in page.locator(".detail").inner_text()
    no_errors(page)


def test_probe_and_encoding_curves(page):
    visit(page, "/probes")
    probe = page.locator("#probe-charts svg.plot.line")
    assert probe.count() == 1
    assert probe.locator("circle").count() == 3 and probe.locator("polygon").count() == 1  # points and interval
    encoding = page.locator("#encode-charts svg.plot.line")
    assert encoding.count() == 1 and encoding.locator("polyline").count() == 2  # mean and median r
    no_errors(page)


def test_neuron_search_finds_a_known_unit(page, served):
    store = open_store(served.store, read_only=True)
    x = store.activations("resid.0", "tokens")
    unit = int(np.argmax(x.max(0)))
    token = display_token(store.row_index("tokens")["token"].to_numpy()[int(np.argmax(x[:, unit]))])
    visit(page, "/neurons/tokens/resid.0")
    page.fill("#q", token)
    page.press("#q", "Enter")
    wait_ready(page)
    units = [int(t) for t in page.locator("#neuron-list tr.link td:first-child").all_inner_texts()]
    assert unit in units
    page.locator("#neuron-list tr.link", has=page.locator(f"td:first-child:text-is('{unit}')")).click()
    wait_ready(page)
    first = page.locator("table").nth(1).locator("tr").nth(1)
    assert first.locator(".tok").inner_text().strip() == token
    assert float(first.locator("td").nth(1).inner_text()) == pytest.approx(float(x[:, unit].max()), rel=1e-3)
    no_errors(page)


def test_feature_search_and_latent_page(page, served):
    records = SAE_FEATURES.load(open_store(served.store))
    records = {int(r.name.rsplit("/", 1)[1]): r.extra for r in records.itertuples()}
    latent, record = next((i, r) for i, r in sorted(records.items()) if r["top"])
    visit(page, "/features")
    histogram = page.locator("svg.plot.histogram rect")
    assert histogram.count() == 40
    page.fill("#q", display_token(record["top"][0]["token"]))
    page.press("#q", "Enter")
    wait_ready(page)
    latents = [int(t) for t in page.locator("#feature-list tr.link td:first-child").all_inner_texts()]
    assert latent in latents
    visit(page, f"/features/{served.sae}/{latent}")
    top = page.locator("table").nth(1)
    assert top.locator(".tok").count() == len(record["top"])
    assert top.locator(".tok").first.inner_text().strip() == display_token(record["top"][0]["token"])
    assert page.locator(".pill").count() == len(record["promoted"]) + len(record["suppressed"])
    no_errors(page)


def test_playground_generates(page):
    visit(page, "/steer")
    sweep = page.locator("svg.plot.line")
    assert sweep.count() == 2 and sweep.first.locator("circle").count() == 3  # shift and KL at 3 alphas
    patching = page.locator("svg.plot.heatmap rect.cell")
    assert patching.count() == 2 * 8  # resid.0 and resid.1 x the tokens of "[CLS] the cat sat on the mat [SEP]"
    assert page.locator("text=Model diffing").count() == 1
    page.fill("#alpha", "0")
    page.fill("#prompt", "the cat")
    page.fill("#tokens", "4")
    page.click("#generate")
    page.wait_for_function("() => document.getElementById('status').textContent.startsWith('alpha')", timeout=60_000)
    unsteered, steered = page.inner_text("#unsteered"), page.inner_text("#steered")
    assert unsteered.startswith("the cat ") and len(unsteered) > len("the cat ")
    assert steered == unsteered  # alpha 0 is the unsteered model
    page.fill("#alpha", "1000")
    page.click("#generate")
    page.wait_for_function("() => document.getElementById('status').textContent.startsWith('alpha 1000')",
                           timeout=60_000)
    assert page.inner_text("#steered") != page.inner_text("#unsteered")
    no_errors(page)
    page.fill("#alpha", "1e9")
    page.click("#generate")
    page.wait_for_selector("#status.error")
    assert "alpha must be" in page.inner_text("#status")
    assert all("status of 400" in p for p in page.problems), page.problems  # the refused request, nothing else


def test_errors_are_shown_as_messages(page):
    visit(page, "/neurons/tokens/resid.9")
    message = page.locator(".error").inner_text()
    assert "no point 'resid.9'" in message and "Traceback" not in message
    visit(page, "/no-such-page")
    assert "no page" in page.locator(".error").inner_text()


@pytest.fixture(scope="module")
def client_values(served) -> dict[str, float]:
    results = COMPARE.load(open_store(served.store))
    row = results[(results.point == "embed") & results.params.map(lambda p: p["point_b"] == "resid.1")]
    return {"cka_embed_resid1": float(row["value"].item())}
