"""``kit serve``: exported models over the Open Inference Protocol (KServe v2 REST).

Starlette routes on uvicorn (uvloop + httptools; asyncio and uvloop set TCP_NODELAY on every
connection). Each model has a :class:`~kit.server.batching.Batcher` that merges concurrent
requests into one onnxruntime run. Names in a URL resolve only to the models loaded at
start, never to paths. What no client may do (hold a connection, send a body without end,
exhaust memory, block the event loop, rebind DNS) is limited here and in :mod:`.limits`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..artifact import capped_batch
from ..runtime.session import Model
from .config import LOOPBACK_HOSTS, ServerConfig
from .decoding import Decoder
from .fast import GONE as _GONE
from .fast import InferPath
from .limits import BodyBudget, HostCheck, allowed_hosts
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .page import page_routes
from .protocol import (
    ProtocolError,
)
from .repository import load_models
from .served import VERSION, ServedModel, inline_rows

__all__ = ["ServerConfig", "create_app", "load_models"]

log = logging.getLogger("kit.server")


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


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
        self.decoder = Decoder(cfg.inline_decode_bytes)

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

    async def declined_infer(self, request: Request) -> Response:
        """An infer request the hot path (:mod:`.fast`) did not take: why, in the protocol's
        words (a server not ready, an unknown model or version)."""
        if not self.ready:
            raise ProtocolError("The server is not ready.", 503)
        self.lookup(request)
        raise ProtocolError("The server is not ready.", 503)  # it was a moment ago: retry

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
        routes = [Route(f"{p}/infer", self.declined_infer, methods=["POST"]) for p in prefixes]
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
        # a batch rule's maximum (kit export --dynamic batch=..) caps requests and runs
        most = capped_batch(model.rules, cfg.max_batch_size)
        entry = ServedModel(
            name,
            model,
            self.metrics,
            self.executor,
            inline=inline_rows(model, cfg.inline_seconds),
            max_batch=most,
            max_body=cfg.max_body_bytes,
        )
        if cfg.batching and most > 1:
            entry.start_batching(most, cfg.max_queue_delay_us / 1e6)
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
        self.decoder.close(wait=True)
        log.info("stopped", extra={"event": "stopped"})


def create_app(
    models: dict[str, Model], config: ServerConfig | None = None, *, host: str = "127.0.0.1"
) -> InferPath:
    """An ASGI app serving ``models`` (name -> loaded model) over the v2 protocol, answering
    only the Host names that fit ``host``, the address it is bound to."""
    cfg = config or ServerConfig()
    app = _App(models, cfg)
    hosts = allowed_hosts(host, cfg.allowed_hosts, LOOPBACK_HOSTS)
    rest = Starlette(
        routes=app.routes(),
        middleware=[Middleware(HostCheck, allowed=hosts)],
        lifespan=lambda _: _lifespan(app),
        exception_handlers={
            ProtocolError: app.protocol_error,
            HTTPException: _http_error,
            Exception: app.server_error,
        },
    )
    return InferPath(rest, app, hosts)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own answers (404 for no route, 405 for a wrong method) in the protocol's
    ``{"error": ...}`` form."""
    assert isinstance(exc, HTTPException)
    message = {404: f"No endpoint {request.url.path!r}; see /v2 and /v2/models/NAME."}.get(
        exc.status_code, f"{exc.detail} ({request.method} {request.url.path})."
    )
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)
