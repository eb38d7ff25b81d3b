"""``kit serve``: exported models over the Open Inference Protocol (KServe v2 REST).

Starlette routes on uvicorn (uvloop + httptools; asyncio and uvloop set TCP_NODELAY on every
connection). Each model has a :class:`~kit.server.batching.Batcher` that merges concurrent
requests into one onnxruntime run. Names in a URL resolve only to the models loaded at
start, never to paths. What no client may do (hold a connection, send a body without end,
exhaust memory, block the event loop, rebind DNS) is limited here and in :mod:`.limits`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import time
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..runtime.session import Model
from ._uvicorn import JsonFormatter, listen_socket, uvicorn_config
from .config import LOOPBACK_HOSTS, ServerConfig
from .limits import BodyBudget, HostCheck, allowed_hosts, read_body
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .page import page_routes
from .protocol import (
    HEADER_LENGTH,
    InferRequest,
    ProtocolError,
    encode_response,
    parse_infer_request,
)
from .repository import load_models
from .served import VERSION, ServedModel, inline_rows

__all__ = ["ServerConfig", "create_app", "load_models", "serve"]

log = logging.getLogger("kit.server")

#: a client that hung up: nothing to answer, one log line
_GONE = 499


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class _Decoder:
    """Parses request bodies: small ones on the event loop, large JSON in a worker process
    (decoding holds the GIL, so a thread would still stall every other client)."""

    def __init__(self, inline_bytes: int) -> None:
        self.inline_bytes = inline_bytes
        self._pool: ProcessPoolExecutor | None = None

    async def parse(self, entry: ServedModel, body: bytes, header: str | None) -> InferRequest:
        digits = header is not None and header.isascii() and header.isdigit()
        json_bytes = int(header) if digits else len(body)  # type: ignore[arg-type]
        job = functools.partial(
            parse_infer_request,
            body,
            header,
            input_name=entry.model.input_name,
            sample_shape=entry.sample_shape,
            output_names=entry.model.output_names,
            max_batch=entry.max_batch,
            classes=entry.classes,
        )
        if json_bytes <= self.inline_bytes:
            return job()
        loop = asyncio.get_running_loop()
        try:  # the job is pickled to the worker: a module function and plain arguments
            return await loop.run_in_executor(self._workers(), job)
        except BrokenProcessPool:
            self.close()
            raise ProtocolError("The decoding worker stopped; retry the request.", 503) from None

    def _workers(self) -> Executor:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")  # never fork a threaded server
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class _App:
    """The v2 protocol's routes over the served models; one object, no closures."""

    def __init__(self, models: dict[str, Model], cfg: ServerConfig) -> None:
        self.models, self.cfg = models, cfg
        self.metrics = Metrics()
        self.executor = ThreadPoolExecutor(
            max_workers=max(cfg.workers, len(models)), thread_name_prefix="kit-infer"
        )
        self.served: dict[str, ServedModel] = {}
        self.ready = False
        self.budget = BodyBudget(cfg.max_inflight_body_bytes)
        self.decoder = _Decoder(cfg.inline_decode_bytes)

    def lookup(self, request: Request) -> ServedModel:
        name = request.path_params["model"]
        entry = self.served.get(name)
        if entry is None:
            raise ProtocolError(
                f"Unknown model {name!r}; this server has {sorted(self.served)}.", 404
            )
        version = request.path_params.get("version")
        if version is not None and version != VERSION:
            raise ProtocolError(
                f"Model {name!r} has no version {version!r}; it has [{VERSION!r}].", 404
            )
        return entry

    async def server_metadata(self, request: Request) -> Response:
        from .. import __version__

        return JSONResponse(
            {"name": "kit", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    async def live(self, request: Request) -> Response:
        return Response(status_code=200)

    async def server_ready(self, request: Request) -> Response:
        return Response(status_code=200 if self.ready else 503)

    async def model_metadata(self, request: Request) -> Response:
        return JSONResponse(self.lookup(request).metadata)

    async def model_ready(self, request: Request) -> Response:
        self.lookup(request)
        return Response(status_code=200 if self.ready else 503)

    async def model_config(self, request: Request) -> Response:
        return JSONResponse(self.lookup(request).config())

    async def _request(self, request: Request, entry: ServedModel) -> InferRequest:
        """The request's body, read within its limits and parsed (off the loop if large)."""
        length = request.headers.get("content-length", "")
        size = min(int(length), entry.body_limit) if length.isdigit() else entry.body_limit
        async with self.budget.hold(size):
            try:
                body = await read_body(request, entry.body_limit, self.cfg.body_timeout)
            except ClientDisconnect:
                raise ProtocolError("The client hung up before its body arrived.", _GONE) from None
            return await self.decoder.parse(entry, body, request.headers.get(HEADER_LENGTH))

    async def infer(self, request: Request) -> Response:
        started = time.perf_counter()
        if not self.ready:
            raise ProtocolError("The server is not ready.", 503)
        entry = self.lookup(request)
        req = await self._request(request, entry)
        try:
            outputs, waited = await entry.infer(req.x)
        except Exception as exc:  # the runtime failed on valid input: a server error
            self.metrics.requests.labels(entry.name, "500").inc()
            log.exception("inference failed", extra={"event": "error", "model": entry.name})
            return _error(f"Inference failed: {exc}", 500)
        payload, header_len = encode_response(entry.name, VERSION, req, outputs, entry.labels)
        entry.ok.inc()
        entry.queue.observe(waited)
        entry.latency.observe(time.perf_counter() - started)
        if header_len is None:
            return Response(payload, media_type="application/json")
        return Response(
            payload,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(header_len)},
        )

    async def repository_index(self, request: Request) -> Response:
        """Triton's repository index: every served model, ready (the page lists them)."""
        state = "READY" if self.ready else "UNAVAILABLE"
        return JSONResponse(
            [{"name": n, "version": VERSION, "state": state} for n in sorted(self.served)]
        )

    async def prometheus(self, request: Request) -> Response:
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    def count(self, request: Request, status: int) -> None:
        """An infer request's answer, in ``kit_requests_total`` by model and status."""
        name = request.path_params.get("model")
        if name is not None and request.url.path.endswith("/infer"):
            known = name if name in self.served else "_unknown"
            self.metrics.requests.labels(known, str(status)).inc()

    async def protocol_error(self, request: Request, exc: Exception) -> Response:
        """Every ProtocolError a route raises, as the protocol's ``{"error": ...}``."""
        assert isinstance(exc, ProtocolError)
        self.count(request, exc.status)
        event = "gone" if exc.status == _GONE else "rejected"
        extra = {"event": event, "path": request.url.path, "status": exc.status, "error": str(exc)}
        log.info(event, extra=extra)
        answer = _error(str(exc), exc.status)
        if exc.status == 503:  # busy or changing: the same request may succeed in a moment
            answer.headers["Retry-After"] = "1"
        return answer

    async def server_error(self, request: Request, exc: Exception) -> Response:
        self.count(request, 500)
        log.exception("unhandled error", extra={"event": "error", "path": request.url.path})
        return _error("Internal server error; the server log has the details.", 500)

    def routes(self) -> list[Route]:
        prefixes = ["/v2/models/{model}", "/v2/models/{model}/versions/{version}"]
        # Starlette tries routes in order: the hot one first saves a regex match per route.
        routes = [Route(f"{p}/infer", self.infer, methods=["POST"]) for p in prefixes]
        routes += [
            Route("/v2", self.server_metadata),
            Route("/v2/health/live", self.live),
            Route("/v2/health/ready", self.server_ready),
            Route("/metrics", self.prometheus),
            Route("/v2/repository/index", self.repository_index, methods=["POST"]),
            *page_routes(lambda request: self.lookup(request).model.path),
        ]
        for p in prefixes:
            routes += [
                Route(p, self.model_metadata),
                Route(f"{p}/ready", self.model_ready),
                Route(f"{p}/config", self.model_config),
            ]
        return routes


@contextlib.asynccontextmanager
async def _lifespan(self: _App) -> AsyncIterator[None]:
    """Start each model's batcher, say what is served; at shutdown, stop them in order."""
    cfg = self.cfg
    for name, model in self.models.items():
        entry = ServedModel(
            name,
            model,
            self.metrics,
            self.executor,
            inline=inline_rows(model, cfg.inline_seconds),
            max_batch=cfg.max_batch_size,
            max_body=cfg.max_body_bytes,
        )
        if cfg.batching and cfg.max_batch_size > 1:
            entry.start_batching(cfg.max_batch_size, cfg.max_queue_delay_us / 1e6)
        self.served[name] = entry
    self.ready = True
    log.info(
        "ready",
        extra={
            "event": "ready",
            "models": {n: m.provider for n, m in self.models.items()},
            "max_batch_size": cfg.max_batch_size,
            "max_queue_delay_us": cfg.max_queue_delay_us,
            "inline_rows": {n: e.inline_rows for n, e in self.served.items()},
        },
    )
    try:
        yield
    finally:
        self.ready = False
        for entry in self.served.values():
            if entry.batcher is not None:
                await entry.batcher.stop()
        self.executor.shutdown(wait=True)
        self.decoder.close()
        log.info("stopped", extra={"event": "stopped"})


def create_app(
    models: dict[str, Model], config: ServerConfig | None = None, *, host: str = "127.0.0.1"
) -> Starlette:
    """An ASGI app serving ``models`` (name -> loaded model) over the v2 protocol, answering
    only the Host names that fit ``host``, the address it is bound to."""
    cfg = config or ServerConfig()
    app = _App(models, cfg)
    hosts = allowed_hosts(host, cfg.allowed_hosts, LOOPBACK_HOSTS)
    return Starlette(
        routes=app.routes(),
        middleware=[Middleware(HostCheck, allowed=hosts)],
        lifespan=lambda _: _lifespan(app),
        exception_handlers={
            ProtocolError: app.protocol_error,
            HTTPException: _http_error,
            Exception: app.server_error,
        },
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own answers (404 for no route, 405 for a wrong method) in the protocol's
    ``{"error": ...}`` form."""
    assert isinstance(exc, HTTPException)
    message = {404: f"No endpoint {request.url.path!r}; see /v2 and /v2/models/NAME."}.get(
        exc.status_code, f"{exc.detail} ({request.method} {request.url.path})."
    )
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)


def _json_logs(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    for name in ("kit", "uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers = [handler]
        lg.setLevel(level.upper())
        lg.propagate = False


def serve(
    directory: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    config: ServerConfig | None = None,
    providers: list[Any] | None = None,
    threads: int | None = None,
    log_level: str = "info",
) -> None:
    """Load every model in ``directory``, then serve them until SIGINT/SIGTERM.

    Shutdown stops accepting connections, finishes in-flight requests, then exits.
    """
    import uvicorn

    sock = listen_socket(host, port)  # before loading: a busy port fails in milliseconds
    bound = sock.getsockname()[1]
    _json_logs(log_level)
    cfg = config or ServerConfig()
    t0 = time.perf_counter()
    models = load_models(directory, providers=providers, threads=threads)
    log.info(
        "loaded",
        extra={
            "event": "loaded",
            "seconds": round(time.perf_counter() - t0, 3),
            "models": {
                n: {"provider": m.provider, "input": list(m.input_shape)} for n, m in models.items()
            },
        },
    )
    app = create_app(models, cfg, host=host)
    log.info("listening", extra={"event": "listening", "host": host, "port": bound})
    server = uvicorn.Server(uvicorn_config(app, cfg, host=host, port=bound))
    server.run(sockets=[sock])
