"""A store with every kind of result the dashboard shows, recorded from a tiny seeded Llama, and a
steering vector for the playground; shared by the API and browser tests."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from neurometry.cli import main
from tests.conftest import TENSE_WORDS, write_planted_finetune, write_tense_sentences

TINY = "neurometry.models.tiny:tiny_llama"
CHROMIUM = os.environ.get("NEUROMETRY_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("NEUROMETRY_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
# Chromium's background services try the network at start; on a closed network that only costs time
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def serve(app) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free local port in a thread; yields its base URL, then stops it."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}: `./dev.sh test` installs Debian's chromium (apt), or set "
                    "NEUROMETRY_CHROMIUM to a Chromium binary")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, base_url, request):
    """A fresh tab on ``base_url`` (each test module serves its own app as ``base_url``), with the page errors
    and console errors it meets in ``tab.problems``; a screenshot is kept under the artifacts afterwards."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    tab.on("console", lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None)
    tab.problems = problems
    tab.base_url = base_url
    yield tab
    (ARTIFACTS / "screenshots").mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / "screenshots" / f"{request.node.name}.png"), full_page=True)
    context.close()


@dataclass(frozen=True)
class Served:
    folder: Path
    store: Path  # reduce=tokens run "tokens" and reduce=mean run "mean", with results
    vector: Path
    sae: str  # the SAE's name in the catalog


@pytest.fixture(scope="package")
def served(tmp_path_factory) -> Served:
    from neurometry.record import record

    folder = tmp_path_factory.mktemp("serve")
    data = write_tense_sentences(folder / "d.jsonl")
    store = folder / "s.nmstore"
    record(TINY, data, ["embed", "resid.0", "resid.1", "attn_pattern.0"], out=store, reduce="tokens", run="tokens",
           progress=False)
    record(TINY, data, ["embed", "resid.0", "resid.1"], out=store, reduce="mean", run="mean", progress=False)
    pairs = folder / "pairs.jsonl"
    pairs.write_text("".join(
        json.dumps({"positive": f"the {w} is good", "negative": f"the {w} is bad", "target": " good", "opposite": " bad"})
        + "\n" for w in TENSE_WORDS
    ))
    vector = folder / "goodness.safetensors"
    # targets planted as a linear map of resid.1 (plus a little noise): encoding r is near 1 there
    from neurometry.store import open_store

    x = open_store(store).activations("resid.1", "mean").astype(np.float64)
    rng = np.random.default_rng(0)
    y = x @ rng.standard_normal((x.shape[1], 3))
    np.save(folder / "targets.npy", y + 0.01 * y.std() * rng.standard_normal(y.shape))
    weights, texts = write_planted_finetune(folder)
    for args in (
        ("measure", str(store), "--run", "mean", "--measures", "effective_rank,anisotropy", "--json"),
        ("compare", str(store), "--run-a", "mean", "--metric", "cka", "--json"),
        ("probe", str(store), "--run", "mean", "--label", "tense", "--json"),
        ("sae", "train", str(store), "--run", "tokens", "--point", "resid.1", "--latents", "32", "--k", "4",
         "--batch-size", "64", "--out", str(folder / "sae"), "--json"),
        ("sae", "features", str(folder / "sae"), str(store), "--run", "tokens", "--top", "5", "--model", TINY,
         "--json"),
        ("encode", str(store), "--run", "mean", "--targets", str(folder / "targets.npy"), "--json"),
        ("steer", "build", TINY, str(pairs), "--point", "resid.1", "--train", "6", "--out", str(vector), "--json"),
        ("steer", "eval", TINY, str(vector), "--alphas", "0,2,4", "--store", str(store), "--json"),
        ("patch", TINY, "--clean", "the cat sat on the mat", "--corrupted", "the dog sat on the mat", "--correct",
         "cat", "--wrong", "dog", "--no-heads", "--store", str(store), "--json"),
        ("diff", TINY, str(weights), "--texts", str(texts), "--top-k", "3", "--store", str(store), "--json"),
    ):
        assert main(list(args)) == 0, args
    return Served(folder, store, vector, "sae")
