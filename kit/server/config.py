"""The server's knobs, light enough for the CLI to read its defaults at start-up."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LOOPBACK_HOSTS", "ServerConfig"]

#: the Host names a server bound to a loopback address answers (DNS rebinding defence)
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass
class ServerConfig:
    """Serving knobs; ``kit serve``'s options take their defaults from here.

    Attributes:
        max_batch_size: The most rows one request may carry and one run may merge (the
            Triton config kit writes says the same number).
        batching: Merge concurrent requests into one run (dynamic batching).
        max_queue_delay_us: The longest the oldest request waits for company.
        max_body_bytes: The largest request body; each model's own limit is smaller when
            ``max_batch_size`` rows need fewer bytes, even as JSON.
        workers: Threads running onnxruntime.
        inline_seconds: Batches expected to run faster than this run on the event loop.
        header_timeout: Seconds a client has to send its request line and headers.
        body_timeout: Seconds a client has to send its whole body.
        keep_alive_timeout: Seconds an idle connection is kept open.
        max_connections: Connections (and in-flight requests) before new ones get 503.
        max_header_bytes: The most bytes of request line and headers.
        max_headers: The most header lines.
        max_inflight_body_bytes: Request bodies held at once, all clients together; past
            it a request gets 503 (retry), so memory stays bounded.
        inline_decode_bytes: Larger JSON bodies are decoded in a worker process, so the
            event loop (health checks, other models) never waits for one.
        allowed_hosts: Host names answered besides the loopback names (when bound to a
            loopback address) or instead of any (when bound elsewhere, if given).
    """

    max_batch_size: int = 64
    batching: bool = True
    max_queue_delay_us: int = 500
    max_body_bytes: int = 64 * 1024 * 1024
    workers: int = 4
    inline_seconds: float = 1e-3
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    max_connections: int = 256
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    max_inflight_body_bytes: int = 512 * 1024 * 1024
    inline_decode_bytes: int = 1024 * 1024
    allowed_hosts: tuple[str, ...] = ()
