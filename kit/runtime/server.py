"""``kit serve``: exported models over the Open Inference Protocol (KServe v2 REST).

Starlette routes on uvicorn (uvloop + httptools when installed; asyncio and uvloop set
TCP_NODELAY on every connection). Each model has a :class:`~kit.runtime.batching.Batcher`
that merges concurrent requests into one onnxruntime run. Names in a URL resolve only to
the models loaded at start, never to paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..artifact import MODEL_FILE
from ..errors import ArtifactError
from ._uvicorn import JsonFormatter, listen_socket, uvicorn_config
from .batching import Batcher, BatchStats
from .protocol import (
    HEADER_LENGTH,
    ONNX_DATATYPES,
    ProtocolError,
    encode_response,
    parse_infer_request,
)
from .session import Model, load

__all__ = ["ServerConfig", "create_app", "discover_models", "serve"]

log = logging.getLogger("kit.server")
VERSION = "1"


@dataclass
class ServerConfig:
    """Serving knobs (``kit serve`` options)."""

    max_batch_size: int = 64
    max_queue_delay_us: int = 500
    max_body_bytes: int = 64 * 1024 * 1024
    workers: int = 4
    #: batches expected to run faster than this run on the event loop, not a worker thread
    inline_seconds: float = 1e-3


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kit_requests",
            "Inference requests by model and HTTP status.",
            ["model", "status"],
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "kit_batch_size",
            "Rows per onnxruntime run.",
            ["model"],
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        buckets = (
            1e-4,
            2.5e-4,
            5e-4,
            1e-3,
            2.5e-3,
            5e-3,
            0.01,
            0.025,
            0.05,
            0.1,
            0.25,
            0.5,
            1,
            2.5,
        )
        self.queue = Histogram(
            "kit_queue_seconds",
            "Time a request waited to be batched.",
            ["model"],
            registry=self.registry,
            buckets=buckets,
        )
        self.compute = Histogram(
            "kit_compute_seconds",
            "onnxruntime time per batch.",
            ["model"],
            registry=self.registry,
            buckets=buckets,
        )
        self.latency = Histogram(
            "kit_request_seconds",
            "Time from request read to response.",
            ["model"],
            registry=self.registry,
            buckets=buckets,
        )


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _inline_rows(model: Model, budget: float) -> int:
    """How many rows ``model`` runs within ``budget`` seconds, from a few batch-1 runs."""
    if budget <= 0:
        return 0
    x = np.zeros((1, *model.input_shape), np.float32)  # type: ignore[misc,type-var]
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        model.predict(x)
        best = min(best, time.perf_counter() - t)
    return int(budget // best)  # per-row cost only falls with batch size: a safe estimate


class _Served:
    """One loaded model with its batcher."""

    def __init__(
        self, name: str, model: Model, metrics: _Metrics, executor: Executor, inline_rows: int = 0
    ) -> None:
        self.name = name
        self.model = model
        self.batcher: Batcher | None = None
        self.executor = executor
        self.inline_rows = inline_rows
        # labelled children looked up once, not on every request
        self.ok = metrics.requests.labels(name, "200")
        self.queue = metrics.queue.labels(name)
        self.latency = metrics.latency.labels(name)
        self.batch_rows = metrics.batch_rows.labels(name)
        self.compute = metrics.compute.labels(name)
        self.sample_shape = tuple(int(d) for d in model.input_shape)  # type: ignore[arg-type]
        outs = model.session.get_outputs()
        self.metadata: dict[str, Any] = {
            "name": name,
            "versions": [VERSION],
            "platform": "onnxruntime_onnx",
            "inputs": [
                {"name": model.input_name, "datatype": "FP32", "shape": [-1, *self.sample_shape]}
            ],
            "outputs": [
                {
                    "name": o.name,
                    "datatype": ONNX_DATATYPES.get(o.type, "FP32"),
                    "shape": [d if isinstance(d, int) else -1 for d in o.shape],
                }
                for o in outs
            ],
        }

    async def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """``model.predict(x)``: on the event loop when that is cheaper than a thread hop.

        Handing a run to a worker thread and back costs ~0.2 ms on a small VM, more than
        the loop loses by running a batch the model answers in well under a millisecond.
        """
        # parse_infer_request has checked every request (dtype, shape, finite values)
        if len(x) <= self.inline_rows:
            return self.model.predict(x, validate=False)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executor, functools.partial(self.model.predict, x, validate=False)
        )

    def observe_batch(self, stats: BatchStats) -> None:
        self.batch_rows.observe(stats.rows)
        self.compute.observe(stats.compute_seconds)


def create_app(models: dict[str, Model], config: ServerConfig | None = None) -> Starlette:
    """An ASGI app serving ``models`` (name -> loaded model) over the v2 protocol."""
    from .. import __version__

    cfg = config or ServerConfig()
    metrics = _Metrics()
    executor = ThreadPoolExecutor(
        max_workers=max(cfg.workers, len(models)), thread_name_prefix="kit-infer"
    )
    served: dict[str, _Served] = {}
    state = {"ready": False}

    def lookup(request: Request) -> _Served:
        name = request.path_params["model"]
        entry = served.get(name)
        if entry is None:
            raise ProtocolError(f"Unknown model {name!r}; this server has {sorted(served)}.", 404)
        version = request.path_params.get("version")
        if version is not None and version != VERSION:
            raise ProtocolError(
                f"Model {name!r} has no version {version!r}; it has [{VERSION!r}].", 404
            )
        return entry

    async def server_metadata(request: Request) -> Response:
        return JSONResponse(
            {"name": "kit", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    async def live(request: Request) -> Response:
        return Response(status_code=200)

    async def ready(request: Request) -> Response:
        return Response(status_code=200 if state["ready"] else 503)

    async def model_metadata(request: Request) -> Response:
        try:
            return JSONResponse(lookup(request).metadata)
        except ProtocolError as exc:
            return _error(str(exc), exc.status)

    async def model_ready(request: Request) -> Response:
        try:
            lookup(request)
        except ProtocolError as exc:
            return _error(str(exc), exc.status)
        return Response(status_code=200 if state["ready"] else 503)

    async def model_config(request: Request) -> Response:
        try:
            entry = lookup(request)
        except ProtocolError as exc:
            return _error(str(exc), exc.status)
        md = entry.metadata
        return JSONResponse(
            {
                "name": entry.name,
                "platform": "onnxruntime_onnx",
                "max_batch_size": cfg.max_batch_size,
                "input": [
                    {"name": i["name"], "data_type": "TYPE_FP32", "dims": i["shape"][1:]}
                    for i in md["inputs"]
                ],
                "output": [
                    {
                        "name": o["name"],
                        "data_type": f"TYPE_{o['datatype']}",
                        "dims": o["shape"][1:],
                    }
                    for o in md["outputs"]
                ],
            }
        )

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > cfg.max_body_bytes:
            raise ProtocolError(
                f"The body is {length} bytes; the limit is {cfg.max_body_bytes}.", 413
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > cfg.max_body_bytes:
                raise ProtocolError(
                    f"The body exceeds the limit of {cfg.max_body_bytes} bytes.", 413
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def infer(request: Request) -> Response:
        started = time.perf_counter()
        name = request.path_params["model"]
        try:
            if not state["ready"]:
                raise ProtocolError("The server is not ready.", 503)
            entry = lookup(request)
            body = await read_body(request)
            req = parse_infer_request(
                body,
                request.headers.get(HEADER_LENGTH),
                input_name=entry.model.input_name,
                sample_shape=entry.sample_shape,
                output_names=entry.model.output_names,
            )
            if entry.batcher is not None:
                outputs, waited = await entry.batcher.submit(req.x)
            else:
                t = time.perf_counter()
                outputs = await entry.run(req.x)
                waited = 0.0
                entry.observe_batch(BatchStats(len(req.x), 1, time.perf_counter() - t))
            payload, header_len = encode_response(entry.name, VERSION, req, outputs)
        except ProtocolError as exc:
            known = name if name in served else "_unknown"
            metrics.requests.labels(known, str(exc.status)).inc()
            log.info(
                json.dumps(
                    {"event": "rejected", "model": name, "status": exc.status, "error": str(exc)}
                )
            )
            return _error(str(exc), exc.status)
        except Exception as exc:  # the runtime failed on valid input: a server error
            metrics.requests.labels(name, "500").inc()
            log.exception(json.dumps({"event": "error", "model": name}))
            return _error(f"Inference failed: {exc}", 500)
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

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        batching = cfg.max_batch_size > 1
        for name, model in models.items():
            inline = _inline_rows(model, cfg.inline_seconds)
            entry = _Served(name, model, metrics, executor, inline)
            if batching:
                entry.batcher = Batcher(
                    entry.run,
                    max_batch=cfg.max_batch_size,
                    max_delay=cfg.max_queue_delay_us / 1e6,
                    on_batch=entry.observe_batch,
                )
                entry.batcher.start()
            served[name] = entry
        state["ready"] = True
        log.info(
            json.dumps(
                {
                    "event": "ready",
                    "models": {n: m.provider for n, m in models.items()},
                    "max_batch_size": cfg.max_batch_size,
                    "max_queue_delay_us": cfg.max_queue_delay_us,
                    "inline_rows": {n: e.inline_rows for n, e in served.items()},
                }
            )
        )
        try:
            yield
        finally:
            state["ready"] = False
            for entry in served.values():
                if entry.batcher is not None:
                    await entry.batcher.stop()
            executor.shutdown(wait=True)
            log.info(json.dumps({"event": "stopped"}))

    prefixes = ["/v2/models/{model}", "/v2/models/{model}/versions/{version}"]
    # Starlette tries routes in order: the hot one first saves a regex match per route.
    routes = [Route(f"{p}/infer", infer, methods=["POST"]) for p in prefixes]
    routes += [
        Route("/v2", server_metadata),
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/metrics", prometheus),
    ]
    for p in prefixes:
        routes += [
            Route(p, model_metadata),
            Route(f"{p}/ready", model_ready),
            Route(f"{p}/config", model_config),
        ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own answers (404 for no route, 405 for a wrong method) in the protocol's
    ``{"error": ...}`` form."""
    assert isinstance(exc, HTTPException)
    message = {404: f"No endpoint {request.url.path!r}; see /v2 and /v2/models/NAME."}.get(
        exc.status_code, f"{exc.detail} ({request.method} {request.url.path})."
    )
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception(json.dumps({"event": "error", "path": request.url.path}))
    return _error("Internal server error; the server log has the details.", 500)


def discover_models(directory: Path) -> dict[str, Path]:
    """``{name: dir}`` for ``directory`` itself (if it holds a model) or each child that does.

    Raises:
        ArtifactError: the directory does not exist or holds no model.
    """
    if not directory.is_dir():
        raise ArtifactError(f"{directory} is not a directory of exported models.")
    if (directory / MODEL_FILE).is_file():
        return {directory.name: directory}
    found = {
        d.name: d for d in sorted(directory.iterdir()) if d.is_dir() and (d / MODEL_FILE).is_file()
    }
    if not found:
        raise ArtifactError(
            f"No exported model (NAME/{MODEL_FILE}) found in {directory}; run kit export first."
        )
    return found


def load_models(
    directory: Path,
    *,
    providers: list[Any] | None = None,
    threads: int | None = None,
    warmup_batches: tuple[int, ...] = (1,),
) -> dict[str, Model]:
    """Load and warm every model under ``directory`` (sha256 verified against manifests)."""
    models = {}
    for name, path in discover_models(directory).items():
        model = load(path, providers=providers, threads=threads, warmup=False)
        model.warmup(warmup_batches)
        models[name] = model
    return models


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
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    for name in ("kit", "uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers = [handler]
        lg.setLevel(log_level.upper())
        lg.propagate = False
    cfg = config or ServerConfig()
    t0 = time.perf_counter()
    models = load_models(directory, providers=providers, threads=threads)
    log.info(
        json.dumps(
            {
                "event": "loaded",
                "seconds": round(time.perf_counter() - t0, 3),
                "models": {
                    n: {"provider": m.provider, "input": list(m.input_shape)}
                    for n, m in models.items()
                },
            }
        )
    )
    server = uvicorn.Server(uvicorn_config(create_app(models, cfg), host=host, port=port))
    server.run(sockets=[sock])
