"""`neurometry serve`: a local, read-only web app over one store.

The page (``static/index.html`` + ``app.js``) draws everything in the browser as SVG from the JSON API
below; the API is the functions of :mod:`neurometry.app.views`, one per page. Each request opens the
store read-only and closes it, so it sees exactly what is committed at that moment, also while a
``record`` is writing. Errors are JSON ``{"error": message}``; a stack trace never reaches the browser.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from neurometry.app import views
from neurometry.app.playground import Playground
from neurometry.errors import NeurometryError
from neurometry.store import open_store
from neurometry.store.store import Store, is_store

log = logging.getLogger("neurometry.app")

STATIC = Path(str(resources.files("neurometry.app") / "static"))


class GenerateRequest(BaseModel):
    vector: str
    alpha: float
    prompt: str
    max_new_tokens: int = 30


def check_store(store_path: str | Path) -> Path:
    """The store's resolved folder; a missing store or a wrong format version fails here, in one line."""
    root = Path(store_path).resolve()
    if not root.is_dir() or not is_store(root):
        raise NeurometryError(f"no store at {store_path}; record one with `neurometry record` first")
    open_store(root, read_only=True).close()
    return root


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


def allowed_host_names(host: str | None = None) -> Callable[[str], bool]:
    """Which ``Host`` header names (the port stripped, lower case) the app answers: the loopback names,
    plus ``host`` (the ``--host`` the server listens on). Listening on every interface (``0.0.0.0``,
    ``::``) also accepts any IP address and this machine's own names. Any other name is what a DNS
    rebinding page sends (its own domain, resolved to this machine), so it is refused."""
    import ipaddress
    import socket

    names = set(LOOPBACK_NAMES)
    wildcard = host is not None and host.strip("[]") in WILDCARD_HOSTS
    if host is not None and not wildcard:
        names.add(host.strip("[]").lower())
    if wildcard:
        names.add(socket.gethostname().lower())  # not getfqdn: a reverse lookup can hang offline

    def allowed(name: str) -> bool:
        if name in names:
            return True
        if not wildcard:
            return False
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    return allowed


def host_name(header: str) -> str:
    """The name part of a ``Host`` header (``localhost:8765`` -> ``localhost``, ``[::1]:8765`` -> ``::1``),
    lower case; '' when there is none."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else ""
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def create_app(store_path: str | Path, playground: Playground | None = None, host: str | None = None) -> FastAPI:
    """The web app over the store at ``store_path``; ``playground`` adds the steering page. Requests whose
    ``Host`` header names neither this machine's loopback nor ``host`` (the address ``serve`` listens on)
    get a 400 (:func:`allowed_host_names`): the defence against DNS rebinding."""
    root = check_store(store_path)
    neuron_cache, feature_cache = views.NeuronCache(), views.FeatureCache()
    app = FastAPI(title=f"neurometry · {root.name}", docs_url=None, redoc_url=None, openapi_url=None)
    allowed = allowed_host_names(host)

    @app.middleware("http")
    async def check_host(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        name = host_name(request.headers.get("host", ""))
        if not allowed(name):
            return JSONResponse(
                {"error": f"refused: the Host header names {name[:80] or 'nothing'!r}, not this server; open it at "
                          "http://127.0.0.1:PORT/ (or give that name with --host)"},
                status_code=400,
            )
        return await call_next(request)

    @contextmanager
    def reading() -> Iterator[Store]:
        store = open_store(root, read_only=True)
        try:
            yield store
        finally:
            store.close()

    @app.exception_handler(NeurometryError)
    async def user_error(_request: Request, exc: NeurometryError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
        return JSONResponse({"error": f"{where or 'request'}: {first.get('msg', 'invalid')}"}, status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        message = "not found" if exc.status_code == 404 else str(exc.detail)
        return JSONResponse({"error": message}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")  # the details go to the server's log, not to the page
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server's log"}, status_code=500)

    @app.get("/", response_class=HTMLResponse)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/summary")
    def summary() -> dict[str, Any]:
        with reading() as store:
            return {**views.summary(store), "playground": playground is not None}

    @app.get("/api/runs/{run}/points")
    def points(run: str) -> dict[str, Any]:
        with reading() as store:
            return views.run_points(store, run)

    @app.get("/api/comparisons")
    def comparisons() -> list[dict[str, Any]]:
        with reading() as store:
            return views.comparisons(store)

    @app.get("/api/probes")
    def probes() -> list[dict[str, Any]]:
        with reading() as store:
            return views.probes(store)

    @app.get("/api/encodings")
    def encodings() -> list[dict[str, Any]]:
        with reading() as store:
            return views.encodings(store)

    @app.get("/api/sweeps")
    def sweeps() -> list[dict[str, Any]]:
        with reading() as store:
            return views.sweeps(store)

    @app.get("/api/patching")
    def patching() -> list[dict[str, Any]]:
        with reading() as store:
            return views.patching(store)

    @app.get("/api/diffs")
    def diffs() -> list[dict[str, Any]]:
        with reading() as store:
            return views.diffs(store)

    @app.get("/api/dynamics")
    def dynamics() -> dict[str, Any]:
        with reading() as store:
            return views.dynamics(store)

    @app.get("/api/detect")
    def detectors() -> dict[str, Any]:
        with reading() as store:
            return views.detect(store)

    @app.get("/api/reading")
    def reading_times() -> list[dict[str, Any]]:
        with reading() as store:
            return views.reading(store)

    @app.get("/api/series")
    def series_list() -> list[dict[str, Any]]:
        with reading() as store:
            return views.series_list(store)

    @app.get("/api/series/{name}")
    def series(name: str) -> dict[str, Any]:
        with reading() as store:
            return views.series_page(store, name)

    @app.get("/api/results/{kind}")
    def results(kind: str, page: int = 1, per_page: int = views.PER_PAGE) -> dict[str, Any]:
        with reading() as store:
            return views.other_results(store, kind, page, per_page)

    @app.get("/api/neurons/{run}/{point}")
    def neurons(run: str, point: str, q: str = "", sort: str = "max", page: int = 1,
                per_page: int = views.PER_PAGE) -> dict[str, Any]:
        with reading() as store:
            return views.neurons(neuron_cache, store, run, point, q, sort, page, per_page)

    @app.get("/api/neurons/{run}/{point}/{unit}")
    def neuron(run: str, point: str, unit: int) -> dict[str, Any]:
        with reading() as store:
            return views.neuron(neuron_cache, store, run, point, unit)

    @app.get("/api/features")
    def feature_sets() -> list[dict[str, Any]]:
        with reading() as store:
            return views.feature_sets(feature_cache, store)

    @app.get("/api/features/{sae}")
    def features(sae: str, q: str = "", sort: str = "frequency", page: int = 1,
                 per_page: int = views.PER_PAGE) -> dict[str, Any]:
        with reading() as store:
            return views.features(feature_cache, store, sae, q, sort, page, per_page)

    @app.get("/api/features/{sae}/{latent}")
    def feature(sae: str, latent: int) -> dict[str, Any]:
        with reading() as store:
            return views.feature(feature_cache, store, sae, latent)

    @app.get("/api/playground")
    def playground_info() -> dict[str, Any]:
        if playground is None:
            raise NeurometryError("no steering playground: start the server with --model MODEL --vector V.safetensors")
        return playground.describe()

    @app.post("/api/playground/generate")
    def generate(request: GenerateRequest) -> dict[str, Any]:
        if playground is None:
            raise NeurometryError("no steering playground: start the server with --model MODEL --vector V.safetensors")
        return playground.generate(request.vector, request.alpha, request.prompt, request.max_new_tokens)

    @app.get("/files/{path:path}")
    def files(path: str) -> FileResponse:
        # only regular files inside the store: `..`, absolute paths and symlinks that lead out all
        # resolve to somewhere outside the root
        target = (root / path).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            raise HTTPException(404)
        return FileResponse(target)

    return app


def serve(store_path: str | Path, host: str = "127.0.0.1", port: int = 8765, model: str | None = None,
          vectors: list[str] | None = None) -> None:
    """Run the app until interrupted (Ctrl-C)."""
    import uvicorn

    if vectors and not model:
        raise NeurometryError("--vector needs --model: the model the vectors steer")
    port = _check_port(host, port)
    check_store(store_path)  # before a model is loaded
    playground = Playground(model, vectors or []) if model else None
    app = create_app(store_path, playground, host=host)
    print(f"serving {store_path} at http://{host}:{port}/ (read-only; Ctrl-C stops)", file=sys.stderr, flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: listening on {host}: anyone who can reach this machine can read the store", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _check_port(host: str, port: int) -> int:
    """The port to listen on (port 0: a free one, chosen here so that the address printed is the one served).
    Fails with one line, before loading anything, when the address is taken or not this machine's (uvicorn
    would log a traceback-like message and exit)."""
    import errno
    import socket

    if not 0 <= port <= 65535:
        raise NeurometryError(f"--port must be between 1 and 65535 (or 0: any free port), got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
                raise NeurometryError(f"cannot listen on {host} ({exc.strerror}); choose another --host, an address "
                                      "of this machine (default 127.0.0.1)") from None
            raise NeurometryError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None
        return probe.getsockname()[1]
