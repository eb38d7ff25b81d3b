"""uvicorn plumbing for ``kit serve``: its config, socket, log format and one-packet writes.

Kept apart from :mod:`kit.server.app` (the protocol's routes, batching and metrics),
which uses it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

from starlette.applications import Starlette

from ..errors import UsageError

__all__ = ["JsonFormatter", "listen_socket", "uvicorn_config"]


#: attributes every LogRecord has; anything else on a record came through ``extra=``
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger, message, and the ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _CoalescingTransport:
    """A transport that sends the writes of one event-loop step as one ``send``.

    uvicorn writes a response's status line and headers, then its body, in two calls;
    with TCP_NODELAY each becomes a packet and the client wakes twice. Joined, a small
    inference response is one packet.
    Everything but ``write`` and ``close`` goes straight to the real transport.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if self._pending and not self._transport.is_closing():
            self._transport.write(b"".join(self._pending))
        self._pending.clear()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _http_protocol() -> type[asyncio.Protocol] | str:
    """uvicorn's httptools protocol with coalesced writes ("auto" without httptools)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # uvicorn without its [standard] extras: h11, as uvicorn picks
        return "auto"

    class Protocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(_CoalescingTransport(transport))  # type: ignore[arg-type]

        def send_400_response(self, msg: str) -> None:
            """A request HTTP itself rejects (a control character in a header, say) gets
            the protocol's JSON error too, not uvicorn's plain text."""
            body = json.dumps({"error": f"{msg.rstrip('.')}: not a valid HTTP/1.1 request."})
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body.encode())
            )
            self.transport.close()

    return Protocol


def uvicorn_config(
    app: Starlette, *, host: str = "127.0.0.1", port: int = 8000, graceful_seconds: int = 30
) -> Any:
    """The ``uvicorn.Config`` that ``kit serve`` runs ``app`` with (tests run the same)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=graceful_seconds,
        server_header=False,
        proxy_headers=False,  # kit logs no client addresses; skip the per-request middleware
        http=_http_protocol(),
    )


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket for ``host:port`` (uvicorn listens on it), or a sentence why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise UsageError(
            f"Cannot listen on {host}:{port} ({reason.lower()}); choose another --port, or "
            "stop the process that holds it."
        ) from None
    return sock
