"""``kit serve``: one server process, or N answering on one listening socket.

One process answers HTTP on one event loop, and on a CPU that loop and onnxruntime take
turns: while the loop parses and answers requests, onnxruntime waits for its next batch.
Several processes, each with its own loop, its own copy of every model and its share of the
cores, keep the cores busy (docs/DESIGN.md, "Serving").

uvicorn's own supervisor starts the processes, restarts one that dies, and stops them all on
SIGINT/SIGTERM. uvicorn calls a factory without arguments in each process, so what a
process needs (the folder, the limits) travels in one environment variable, as JSON that
kit wrote itself. prometheus_client's multiprocess mode adds the processes' metrics up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import KitError
from ..runtime import Model
from ..runtime.providers import CPU, check_providers
from ._uvicorn import http_protocol, json_logs, listen_socket, uvicorn_config
from .app import create_app
from .config import ServerConfig
from .repository import load_models

__all__ = ["app", "per_process", "serve", "threads_each"]

log = logging.getLogger("kit.server")

#: the environment variable that carries a process's settings from ``kit serve``
SPEC_ENV = "KIT_SERVE_PROCESS"
#: prometheus_client's multiprocess mode: each process writes its metrics to files here
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def serve(
    directory: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    config: ServerConfig | None = None,
    providers: list[Any] | None = None,
    threads: int | None = None,
    log_level: str = "info",
    processes: int = 1,
) -> None:
    """Load every model in ``directory``, then serve them until SIGINT/SIGTERM (from
    ``processes`` processes on one port, each loading the models itself).

    Shutdown stops accepting connections, finishes in-flight requests, then exits.
    """
    import uvicorn

    sock = listen_socket(host, port)  # before loading: a busy port fails in milliseconds
    bound = sock.getsockname()[1]
    json_logs(log_level)
    cfg = config or ServerConfig()
    if processes > 1:  # each process loads its own copy; this one refuses what none could
        check_providers(providers or [])  # without starting a GPU it would then hold
        _load_logged(directory, [CPU], 1, event="checked")
        log.info("listening", extra={"event": "listening", "host": host, "port": bound})
        _run_processes(
            sock,
            directory,
            host=host,
            cfg=cfg,
            providers=providers,
            threads=threads,
            log_level=log_level,
            processes=processes,
        )
        return
    models = _load_logged(directory, providers, threads, event="loaded")  # refused here
    app = create_app(models, cfg, host=host)
    log.info("listening", extra={"event": "listening", "host": host, "port": bound})
    server = uvicorn.Server(uvicorn_config(app, cfg, host=host, port=bound))
    server.run(sockets=[sock])


def _load_logged(
    directory: Path, providers: list[Any] | None, threads: int | None, *, event: str
) -> dict[str, Model]:
    """Every model under ``directory``, and one log line saying where each runs."""
    t0 = time.perf_counter()
    models = load_models(directory, providers=providers, threads=threads)
    log.info(
        event,
        extra={
            "event": event,
            "seconds": round(time.perf_counter() - t0, 3),
            "models": {
                n: {"provider": m.provider, "input": list(m.input_shape)} for n, m in models.items()
            },
        },
    )
    return models


#: in a process of several, batches expected within this run on its event loop
PROCESS_INLINE_SECONDS = 0.01


def per_process(cfg: ServerConfig, processes: int) -> ServerConfig:
    """``cfg`` for one of ``processes``: the limits all clients share split between them, so
    the whole server still keeps them (each process counts only its own connections and
    bodies), and batches of up to ``PROCESS_INLINE_SECONDS`` run on the event loop (beside
    the other processes, a thread reading requests while a batch runs gains less than the
    handovers to it and back cost: docs/BENCHMARKS.md, issue 26)."""
    return dataclasses.replace(
        cfg,
        max_connections=max(1, cfg.max_connections // processes),
        max_inflight_body_bytes=max(1, cfg.max_inflight_body_bytes // processes),
        inline_seconds=max(cfg.inline_seconds, PROCESS_INLINE_SECONDS),
    )


def threads_each(processes: int) -> int:
    """onnxruntime threads per model in each process: the CPUs, shared out (two processes
    whose onnxruntime threads outnumber the cores slow each other down)."""
    return max(1, (os.cpu_count() or 1) // processes)


def _run_processes(
    sock: socket.socket,
    directory: Path,
    *,
    host: str,
    cfg: ServerConfig,
    providers: list[str] | None,
    threads: int | None,
    log_level: str,
    processes: int,
) -> None:
    """Serve ``directory`` from ``processes`` processes on ``sock`` until SIGINT/SIGTERM."""
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    spec = {
        "directory": str(directory),
        "host": host,
        "providers": providers,
        "threads": threads or threads_each(processes),
        "log_level": log_level,
        "config": dataclasses.asdict(per_process(cfg, processes)),
    }
    config = uvicorn_config(f"{__name__}:app", cfg, host=host, port=sock.getsockname()[1])
    config.factory, config.workers = True, processes
    if not isinstance(config.http, str):  # the class is rebuilt in each process, by name
        config.http = f"{__name__}:Protocol"
    with (
        tempfile.TemporaryDirectory(prefix="kit-serve-metrics-") as metrics,
        _environment({SPEC_ENV: json.dumps(spec), METRICS_ENV: metrics}),
    ):
        supervisor = Multiprocess(config, sockets=[sock])
        supervisor.run()
    if any(p.process.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        raise KitError("A server process failed to start (its log above says why).")


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in the environment the processes inherit, restored afterwards."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@functools.cache
def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(os.environ[SPEC_ENV])
    fields = spec["config"]
    spec["config"] = ServerConfig(**{**fields, "allowed_hosts": tuple(fields["allowed_hosts"])})
    return spec


def app() -> Any:
    """uvicorn's factory, in each process: its own copy of the models, and the app. A
    process that cannot load them exits with uvicorn's start-up failure code, so the
    supervisor stops instead of starting it again and again."""
    from uvicorn.config import STARTUP_FAILURE

    spec = _spec()
    json_logs(spec["log_level"])
    try:
        models = _load_logged(
            Path(spec["directory"]), spec["providers"], spec["threads"], event="loaded"
        )
        return create_app(models, spec["config"], host=spec["host"])
    except Exception as exc:  # the process's boundary: one line, then the code
        log.error("could not start", extra={"event": "failed", "error": str(exc)})
        raise SystemExit(STARTUP_FAILURE) from None


def __getattr__(name: str) -> Any:
    """``Protocol``: uvicorn's HTTP protocol with this server's limits, which uvicorn imports
    by name in each process (a class made at run time does not travel to a new process)."""
    if name == "Protocol":
        return _protocol()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _protocol() -> Any:
    return http_protocol(_spec()["config"])
