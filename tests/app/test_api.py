"""The dashboard's JSON API (through FastAPI's test client): values equal the store's and a direct
NumPy computation, search finds a planted unit and a known latent, pagination, errors as one-line
messages without stack traces, path traversal refused, read-only, and reads during a `record`."""

from __future__ import annotations

import json
import socket
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from neurometry.app import Playground, create_app
from neurometry.app import views as views_module
from neurometry.app.neurons import neuron_table
from neurometry.cli import main
from neurometry.errors import NeurometryError
from neurometry.features.examples import display_token
from neurometry.store import open_store
from neurometry.store.results import MEASURE, SAE_FEATURES, Result

from .conftest import TINY

LOCAL = "http://127.0.0.1:8765"  # the test client's default Host, "testserver", is refused like any other name


@pytest.fixture(scope="module")
def client(served):
    with TestClient(create_app(served.store), raise_server_exceptions=False, base_url=LOCAL) as test_client:
        yield test_client


def ok(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def error(response, status: int = 400) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and "Traceback" not in body["error"] and "\n" not in body["error"]
    return body["error"]


# -- values ------------------------------------------------------------------------------------------
def test_neuron_table_equals_numpy(served):
    store = open_store(served.store, read_only=True)
    x = store.activations("resid.1", "tokens").astype(np.float64)
    table = neuron_table(store, "tokens", "resid.1", top=7, chunk_rows=50)  # several blocks, a ragged last one
    assert table.n_rows == len(x) == 360
    np.testing.assert_allclose(table.mean, x.mean(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(table.std, x.std(0), rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(table.max, x.max(0))
    np.testing.assert_array_equal(table.min, x.min(0))
    np.testing.assert_allclose(table.active, (x > 0).mean(0))
    # top rows: the 7 largest per unit, largest first, the earlier row first on a tie
    expected = np.lexsort((np.broadcast_to(np.arange(len(x))[:, None], x.shape), -x.astype(np.float32)), axis=0)[:7].T
    np.testing.assert_array_equal(table.top_rows, expected)  # the tiny model repeats contexts: many ties
    np.testing.assert_array_equal(table.top_values, np.take_along_axis(x.T, expected, 1).astype(np.float32))


def test_summary_points_and_comparisons_equal_the_catalog(client, served):
    summary = ok(client.get("/api/summary"))
    assert [(r["run"], r["committed_rows"]) for r in summary["runs"]] == [("tokens", 360), ("mean", 40)]
    assert summary["results"] == {"compare": 9, "encode": 3, "measure": 6, "probe": 3, "sae_features": 32,
                                  "steer_sweep": 3, "patch": 2, "diff": 2}
    assert summary["playground"] is False

    points = ok(client.get("/api/runs/mean/points"))
    assert [p["point"] for p in points["points"]] == ["embed", "resid.0", "resid.1"]
    catalog = MEASURE.load(open_store(served.store))
    rank = points["measures"].index("effective_rank")
    for p in points["points"]:
        want = catalog[(catalog.point == p["point"]) & (catalog.name == "effective_rank")]["value"].item()
        assert p["values"][rank] == pytest.approx(want, rel=1e-12)

    (cka,) = ok(client.get("/api/comparisons"))
    assert cka["metric"] == "cka" and cka["against"] == "itself"
    assert cka["points_a"] == cka["points_b"] == ["embed", "resid.0", "resid.1"]
    matrix = np.array(cka["values"])
    np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-12)  # CKA of a point with itself
    np.testing.assert_allclose(matrix, matrix.T, atol=1e-12)
    x = open_store(served.store).activations("embed", "mean").astype(np.float64)
    y = open_store(served.store).activations("resid.1", "mean").astype(np.float64)
    x, y = x - x.mean(0), y - y.mean(0)
    linear_cka = np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))
    assert matrix[0, 2] == pytest.approx(linear_cka, rel=1e-9)

    (probe,) = ok(client.get("/api/probes"))
    assert probe["label"] == "tense" and probe["baseline"] == 0.5 and len(probe["scores"]) == 3

    (sweep,) = ok(client.get("/api/sweeps"))
    assert sweep["vector"] == "goodness" and sweep["point"] == "resid.1"
    assert [r["alpha"] for r in sweep["rows"]] == [0.0, 2.0, 4.0]
    assert sweep["rows"][0]["shift"] == 0.0 and sweep["rows"][0]["kl"] == 0.0  # alpha 0 changes nothing
    assert sweep["rows"][2]["kl"] > sweep["rows"][1]["kl"] > 0

    (patch,) = ok(client.get("/api/patching"))
    scores = np.array(patch["scores"], dtype=float)
    assert patch["points"] == ["resid.0", "resid.1"] and scores.shape == (2, len(patch["tokens"]))
    # the last block at the last position carries the whole clean run, so patching it restores it: 1
    assert scores[-1, -1] == pytest.approx(1.0) and patch["correct"] == "cat"

    (diff,) = ok(client.get("/api/diffs"))
    assert diff["finetuned"] == "fine.safetensors"
    norms = {p["point"]: p["norm"] for p in diff["points"]}
    assert norms["resid.0"] == 0.0 and norms["resid.1"] > 0  # only layer 1 was changed by the finetune
    assert len(next(p for p in diff["points"] if p["point"] == "resid.1")["lens"]) == 3

    (encoding,) = ok(client.get("/api/encodings"))  # targets planted as a linear map of resid.1
    assert encoding["points"] == ["embed", "resid.0", "resid.1"] and encoding["n_targets"] == 3
    assert encoding["mean_r"][2] > 0.99 and encoding["mean_r"][0] < encoding["mean_r"][2]


# -- search and pagination -----------------------------------------------------------------------------
def test_neuron_search_finds_the_unit_of_a_token(client, served):
    store = open_store(served.store, read_only=True)
    x = store.activations("resid.0", "tokens")
    tokens = store.row_index("tokens")["token"].to_numpy()
    unit = int(np.argmax(x.max(0)))  # the unit with the largest activation anywhere
    token = display_token(tokens[int(np.argmax(x[:, unit]))])
    found = ok(client.get("/api/neurons/tokens/resid.0", params={"q": token.upper(), "per_page": 500}))
    assert unit in [u["unit"] for u in found["items"]]
    assert all(token in [t.lower() for t in u["top"]] for u in found["items"])
    by_number = ok(client.get("/api/neurons/tokens/resid.0", params={"q": str(unit)}))
    assert [u["unit"] for u in by_number["items"]] == [unit]
    assert by_number["items"][0]["max"] == pytest.approx(float(x[:, unit].max()))
    detail = ok(client.get(f"/api/neurons/tokens/resid.0/{unit}"))
    assert detail["examples"][0]["activation"] == pytest.approx(float(x[:, unit].max()))
    assert detail["examples"][0]["token"].strip() == token


def test_neurons_of_a_per_input_run_show_the_input_text(client, served):
    store = open_store(served.store, read_only=True)
    x = store.activations("resid.1", "mean")
    unit = 3
    detail = ok(client.get(f"/api/neurons/mean/resid.1/{unit}"))
    best = int(np.argmax(x[:, unit]))
    assert detail["examples"][0]["row"] == best
    assert detail["examples"][0]["text"] == store.inputs(store.run_info("mean").dataset_id)["text"][best]


def test_pagination(client):
    first = ok(client.get("/api/neurons/tokens/resid.1", params={"sort": "unit", "per_page": 10}))
    width = first["units"]
    assert first["total"] == width and first["pages"] == -(-width // 10) and len(first["items"]) == 10
    assert [u["unit"] for u in first["items"]] == list(range(10))
    last = ok(client.get("/api/neurons/tokens/resid.1", params={"sort": "unit", "per_page": 10, "page": first["pages"]}))
    assert [u["unit"] for u in last["items"]] == list(range(10 * (first["pages"] - 1), width))
    by_max = ok(client.get("/api/neurons/tokens/resid.1", params={"per_page": width}))
    maxima = [u["max"] for u in by_max["items"]]
    assert maxima == sorted(maxima, reverse=True)
    assert "per_page" in error(client.get("/api/neurons/tokens/resid.1", params={"per_page": 100000}))
    assert "page must be" in error(client.get("/api/neurons/tokens/resid.1", params={"page": 0}))
    results = ok(client.get("/api/results/measure", params={"per_page": 4, "page": 2}))
    assert results["total"] == 6 and len(results["items"]) == 2


def test_feature_search_and_detail(client, served):
    (sae,) = ok(client.get("/api/features"))
    assert sae["sae"] == served.sae and sae["latents"] == 32 and sum(sae["histogram"]["counts"]) == 32
    records = SAE_FEATURES.load(open_store(served.store))
    records = {int(r.name.rsplit("/", 1)[1]): r.extra for r in records.itertuples()}
    latent, record = next((i, r) for i, r in sorted(records.items()) if r["top"])
    token = display_token(record["top"][0]["token"])
    found = ok(client.get(f"/api/features/{served.sae}", params={"q": token, "per_page": 500}))
    assert latent in [f["latent"] for f in found["items"]]
    promoted = display_token(record["promoted"][0][0])
    found = ok(client.get(f"/api/features/{served.sae}", params={"q": promoted, "per_page": 500}))
    assert latent in [f["latent"] for f in found["items"]]
    listing = ok(client.get(f"/api/features/{served.sae}", params={"per_page": 32}))
    frequencies = [f["frequency"] for f in listing["items"]]
    assert frequencies == sorted(frequencies, reverse=True)
    detail = ok(client.get(f"/api/features/{served.sae}/{latent}"))
    assert detail["max"] == pytest.approx(record["max_activation"])
    assert [c["row"] for c in detail["top"]] == [c["row"] for c in record["top"]]
    assert len(detail["promoted"]) == len(record["promoted"])


# -- errors and safety ----------------------------------------------------------------------------------
def test_user_errors_are_one_line_messages(client, served, monkeypatch):
    assert "resid.0" in error(client.get("/api/neurons/tokens/resid.9"))  # did you mean
    assert "no run 'nope'" in error(client.get("/api/runs/nope/points"))
    assert "one feature axis" in error(client.get("/api/neurons/tokens/attn_pattern.0"))
    assert "out of range" in error(client.get("/api/neurons/tokens/resid.0/100000"))
    assert "unit" in error(client.get("/api/neurons/tokens/resid.0/abc"))
    assert "unknown sort" in error(client.get("/api/neurons/tokens/resid.0", params={"sort": "bogus"}))
    assert "no feature examples" in error(client.get("/api/features/nope"))
    assert "out of range" in error(client.get(f"/api/features/{served.sae}/999"))
    assert "no results of kind" in error(client.get("/api/results/nope"))
    assert "--model" in error(client.get("/api/playground"))
    assert error(client.get("/api/nothing-here"), 404) == "not found"

    def broken(*_args, **_kwargs):
        raise ValueError("secret internal detail")

    monkeypatch.setattr(views_module, "probes", broken)
    message = error(client.get("/api/probes"), 500)
    assert "ValueError" in message and "secret" not in message


@pytest.mark.parametrize(
    "path",
    [
        "/files/../neurometry.json",
        "/files/..%2F..%2F..%2Fetc%2Fpasswd",
        "/files/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/files//etc/passwd",
        "/files/outside-link",
        "/files/arrays",
        "/files/no-such-file",
        "/static/../app.py",
        "/static/%2e%2e/app.py",
    ],
)
def test_only_files_inside_the_store_are_served(served, path):
    (served.store / "outside-link").unlink(missing_ok=True)
    (served.store / "outside-link").symlink_to(served.folder / "d.jsonl")  # inside the folder, outside the store
    raw = _raw_get(served, path)
    assert raw.startswith(b"HTTP/1.1 404"), raw[:200]
    assert b"root:" not in raw and b"the red cat" not in raw and b"create_app" not in raw


def test_a_file_inside_the_store_is_served(client, served):
    response = client.get("/files/neurometry.json")
    assert response.status_code == 200
    assert response.content == (served.store / "neurometry.json").read_bytes()


# -- Host header (DNS rebinding) ---------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["localhost", "localhost:8765", "LocalHost:1", "127.0.0.1", "127.0.0.1:8765",
                                  "[::1]", "[::1]:8765"])
def test_loopback_host_names_are_answered(served, host):
    with TestClient(create_app(served.store), raise_server_exceptions=False, base_url=f"http://{host}") as client:
        assert client.get("/files/catalog.sqlite").content == (served.store / "catalog.sqlite").read_bytes()
        assert [r["run"] for r in ok(client.get("/api/summary"))["runs"]] == ["tokens", "mean"]


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "testserver", "127.0.0.1.evil.example",
                                  "localhost.evil.example:8765", "192.168.1.7:8765", "[::2]:8765"])
@pytest.mark.parametrize("path", ["/", "/api/summary", "/files/catalog.sqlite", "/static/app.js"])
def test_a_foreign_host_header_is_refused(served, host, path):
    """What a DNS-rebinding page sends: its own name, resolved to this machine. The store never leaves."""
    with TestClient(create_app(served.store), raise_server_exceptions=False, base_url=f"http://{host}") as client:
        response = client.get(path)
    message = error(response, 400)
    assert message.startswith("refused: the Host header names ") and "--host" in message
    assert b"SQLite format" not in response.content


def test_a_foreign_host_header_is_refused_on_the_wire(served):
    """Raw requests to a running server: a rebinding page's Host header gets a one-line JSON 400, the
    loopback name the file."""
    refused = _raw_get(served, "/files/catalog.sqlite", host="attacker.example:8765")
    head, _, body = refused.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head, refused[:300]
    assert json.loads(body) == {"error": "refused: the Host header names 'attacker.example', not this server; "
                                         "open it at http://127.0.0.1:PORT/ (or give that name with --host)"}
    served_file = _raw_get(served, "/files/catalog.sqlite", host="127.0.0.1:8765")
    assert served_file.startswith(b"HTTP/1.1 200") and b"SQLite format 3" in served_file


def test_the_host_given_with_serve_is_answered_too(served):
    assert _raw_get(served, "/api/summary", host="dashboard.lab:8765", listen="dashboard.lab").startswith(
        b"HTTP/1.1 200")
    assert _raw_get(served, "/api/summary", host="192.168.1.7:8765", listen="192.168.1.7").startswith(b"HTTP/1.1 200")
    assert _raw_get(served, "/api/summary", host="other.lab:8765", listen="dashboard.lab").startswith(b"HTTP/1.1 400")
    # every interface: any address and this machine's name, never another domain name
    assert _raw_get(served, "/api/summary", host="10.1.2.3:8765", listen="0.0.0.0").startswith(b"HTTP/1.1 200")
    assert _raw_get(served, "/api/summary", host=f"{socket.gethostname()}:8765", listen="::").startswith(
        b"HTTP/1.1 200")
    assert _raw_get(served, "/api/summary", host="evil.example", listen="0.0.0.0").startswith(b"HTTP/1.1 400")
    assert _raw_get(served, "/api/summary", host="", listen="0.0.0.0").startswith(b"HTTP/1.1 400")


def _raw_get(served, path: str, host: str = "localhost", listen: str | None = None) -> bytes:
    """The server's answer to a request line sent verbatim (HTTP clients normalise `..` away) with the
    header ``Host: host``, from an app told it listens on ``listen`` (``serve --host``)."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(served.store, host=listen)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 20
        while not server.started and time.time() < deadline:
            time.sleep(0.02)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)
    finally:
        server.should_exit = True
        thread.join(10)


def test_the_app_is_read_only(client, served):
    assert client.post("/api/summary").status_code == 405
    assert client.delete("/files/neurometry.json").status_code == 405
    store = open_store(served.store, read_only=True)
    with pytest.raises(NeurometryError, match="read-only"):
        MEASURE.save(store, "mean", [Result("embed", "x", 1.0, params={"label": None, "seed": 0}, extra={"n_rows": 1})])


def test_reads_while_record_writes_show_only_committed_rows(tmp_path):
    """A record in another thread (slowed, so that it commits many times) while the API is polled: every
    answer shows whole committed chunks, and the neuron statistics are those of exactly those rows."""
    from neurometry.models import load_model
    from neurometry.record import record

    rows = [{"text": f"sentence number {i} about a {w} thing"} for i, w in enumerate(["red", "blue", "old"] * 40)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store_path = tmp_path / "live.nmstore"
    model = load_model(TINY)
    model.module.register_forward_pre_hook(lambda *_: time.sleep(0.03))
    chunk = 16
    record(model, data, ["resid.1"], store_path, reduce="mean", run="live", batch_size=4, chunk_rows=chunk,
           progress=False)
    final = open_store(store_path).activations("resid.1", "live").astype(np.float64)  # the same model again

    writer = threading.Thread(
        target=record, args=(model, data, ["resid.1"], store_path),
        kwargs=dict(reduce="mean", run="polled", batch_size=4, chunk_rows=chunk, progress=False),
    )
    seen: list[int] = []
    with TestClient(create_app(store_path), raise_server_exceptions=False, base_url=LOCAL) as client:
        writer.start()
        deadline = time.time() + 120
        while (writer.is_alive() or not seen or seen[-1] < len(rows)) and time.time() < deadline:
            runs = {r["run"]: r for r in ok(client.get("/api/summary"))["runs"]}
            if "polled" not in runs or runs["polled"]["committed_rows"] == 0:
                continue
            committed = runs["polled"]["committed_rows"]
            assert committed % chunk == 0 or committed == len(rows)
            listing = ok(client.get("/api/neurons/polled/resid.1", params={"sort": "unit", "per_page": 500}))
            assert listing["rows"] >= committed and (listing["rows"] % chunk == 0 or listing["rows"] == len(rows))
            means = np.array([u["mean"] for u in listing["items"]])
            np.testing.assert_allclose(means, final[: listing["rows"]].mean(0), rtol=1e-9, atol=1e-12)
            seen.append(listing["rows"])
        writer.join()
    assert len(set(seen)) >= 3, seen  # several partial states were read, each consistent
    assert seen[-1] == len(rows)


# -- playground --------------------------------------------------------------------------------------------
def test_playground_generates_steered_and_unsteered(served):
    playground = Playground(TINY, [served.vector])
    with TestClient(create_app(served.store, playground), raise_server_exceptions=False, base_url=LOCAL) as client:
        info = ok(client.get("/api/playground"))
        assert info["vectors"][0]["name"] == "goodness" and info["vectors"][0]["point"] == "resid.1"
        request = {"vector": "goodness", "alpha": 0.0, "prompt": "the cat", "max_new_tokens": 4}
        same = ok(client.post("/api/playground/generate", json=request))
        assert same["steered"] == same["unsteered"] and same["unsteered"]  # alpha 0 is the unsteered model
        far = ok(client.post("/api/playground/generate", json={**request, "alpha": 1000.0}))
        assert far["unsteered"] == same["unsteered"] and far["steered"] != far["unsteered"]
        assert "alpha" in error(client.post("/api/playground/generate", json={**request, "alpha": 1e9}))
        assert "no vector" in error(client.post("/api/playground/generate", json={**request, "vector": "../x"}))
        assert "prompt" in error(client.post("/api/playground/generate", json={**request, "prompt": "  "}))
        assert "max_new_tokens" in error(client.post("/api/playground/generate", json={**request, "max_new_tokens": 0}))
        assert "prompt" in error(client.post("/api/playground/generate", json={"vector": "goodness", "alpha": 1}))


def test_serve_cli_errors_exit_2(served, tmp_path, capsys):
    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert "no store at" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["serve", str(served.store), "--port", str(busy.getsockname()[1])]) == 2
        assert "choose another --port" in capsys.readouterr().err
    assert main(["serve", str(served.store), "--vector", str(served.vector), "--port", "0"]) == 2
    assert "--vector needs --model" in capsys.readouterr().err
    wrong = tmp_path / "wrong.safetensors"
    wrong.write_bytes(served.vector.read_bytes())
    (tmp_path / "wrong.json").write_text(
        json.dumps({**json.loads(served.vector.with_suffix(".json").read_text()), "model": "other-model"})
    )
    assert main(["serve", str(served.store), "--model", TINY, "--vector", str(wrong), "--port", "0"]) == 2
    assert "was built on other-model" in capsys.readouterr().err


def test_an_empty_store_shows_empty_pages(tmp_path):
    open_store(tmp_path / "empty.nmstore", create=True).close()
    with TestClient(create_app(tmp_path / "empty.nmstore"), raise_server_exceptions=False, base_url=LOCAL) as client:
        summary = ok(client.get("/api/summary"))
        assert summary["runs"] == [] and summary["results"] == {}
        for path in ("/api/comparisons", "/api/probes", "/api/encodings", "/api/sweeps", "/api/features"):
            assert ok(client.get(path)) == []
        assert client.get("/").status_code == 200 and "app.js" in client.get("/").text
    with pytest.raises(NeurometryError, match="no store at"):
        create_app(tmp_path)  # a folder that is not a store


def test_search_prefers_whole_tokens():
    texts = {0: ["train", "cat"], 1: ["Rain"], 2: ["rainy"]}
    assert views_module.matching("rain", texts) == [1]  # whole token, any case
    assert views_module.matching("rai", texts) == [0, 1, 2]  # no whole token: inside one
    assert views_module.matching("dog", texts) == []


def test_neuron_cache_computes_each_point_once_and_points_in_parallel(served, monkeypatch):
    """Concurrent requests for one point compute it once; a slow point does not hold up another."""
    from neurometry.app import neurons as neurons_module

    calls: list[str] = []
    slow = threading.Event()
    real = neurons_module.neuron_table

    def counted(store, run, point, **kwargs):
        calls.append(point)
        if point == "resid.0":
            assert slow.wait(20), "resid.1 was not served while resid.0 was computing"
        return real(store, run, point, **kwargs)

    monkeypatch.setattr(views_module, "neuron_table", counted)
    cache = views_module.NeuronCache()

    def get(point: str) -> None:
        cache.get(open_store(served.store, read_only=True), "tokens", point)

    waiting = [threading.Thread(target=get, args=("resid.0",)) for _ in range(3)]
    for thread in waiting:
        thread.start()
    get("resid.1")  # served while resid.0 is still computing
    slow.set()
    for thread in waiting:
        thread.join(30)
    assert sorted(calls) == ["resid.0", "resid.1"]
