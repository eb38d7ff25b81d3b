"""uvicorn plumbing for ``kit serve``: its config, socket, log format and one-packet writes.

Kept apart from :mod:`kit.server.app` (the protocol's routes, batching and metrics),
which uses it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT

from ..errors import UsageError
from .config import ServerConfig

if TYPE_CHECKING:  # the mixin below is checked as what it extends
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpTools
else:  # and made without it: httptools may be missing (see http_protocol)
    _HttpTools = object

__all__ = ["JsonFormatter", "http_protocol", "json_logs", "listen_socket", "uvicorn_config"]


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


def json_logs(level: str) -> None:
    """kit's and uvicorn's log lines as JSON objects on stderr, from ``level`` up."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    for name in ("kit", "uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers = [handler]
        lg.setLevel(level.upper())
        lg.propagate = False


class _CoalescingTransport:
    """A transport that sends the writes of one event-loop step as one ``send``.

    uvicorn writes a response's status line and headers, then its body, in two calls;
    with TCP_NODELAY each becomes a packet and the client wakes twice. Joined, a small
    inference response is one packet.
    Everything but ``write``, ``write_eof`` and ``close`` goes straight to the real transport.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []
        self._ended = False  # write_eof: a refusal was the last answer

    def write(self, data: bytes) -> None:
        if self._ended:  # an answer to a request before the refused one: too late
            return
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if self._pending and not self._transport.is_closing():
            self._transport.write(b"".join(self._pending))
        self._pending.clear()

    def write_eof(self) -> None:
        self._flush()
        self._ended = True
        self._transport.write_eof()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


_REASONS = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large"}
_REASONS[503] = "Service Unavailable"


def _answer(transport: Any, status: int, message: str) -> None:
    """The protocol's JSON error, as the connection's last answer."""
    body = json.dumps({"error": message}).encode()
    transport.write(
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (status, _REASONS[status].encode(), len(body), body)
    )


def _refuse(transport: Any, status: int, message: str) -> None:
    """Answer with the protocol's JSON error and close: a connection past the limit, or a
    client whose headers or body missed their deadline."""
    _answer(transport, status, message)
    transport.close()


#: uvicorn's warnings kit replaces: any request httptools rejects (kit logs its own line,
#: with the reason), and advice to install a websocket library (kit serves none, by design)
_DROPPED = ("Invalid HTTP request received.", "No supported WebSocket library detected.")


class _OwnRefusalLines(logging.Filter):
    """Drops the uvicorn warnings in ``_DROPPED``: kit logs each refused request once, with
    what was wrong (the status and the sentence the client got)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(_DROPPED))


_OWN_REFUSAL_LINES = _OwnRefusalLines()  # one instance: adding it twice adds it once


class _TooLarge(Exception):
    """Headers past the limits; raised inside httptools' callbacks to stop the parser."""


class _Deadlines:
    """One timer for all of a server's connections: each connection notes when its current
    stage (headers, body) must be over, and a sweep every ``SWEEP_S`` refuses those past it.
    Two per-request timers cost more than the request's parsing; a deadline costs a store.
    """

    SWEEP_S = 0.25

    def __init__(self) -> None:
        self.open: set[Any] = set()
        self._handle: asyncio.TimerHandle | None = None

    def add(self, protocol: Any) -> None:
        self.open.add(protocol)
        if self._handle is None:
            self._handle = protocol.loop.call_later(self.SWEEP_S, self._sweep, protocol.loop)

    def discard(self, protocol: Any) -> None:
        self.open.discard(protocol)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for protocol in [p for p in self.open if p.deadline is not None and p.deadline[0] < now]:
            protocol.expire()
        self._handle = loop.call_later(self.SWEEP_S, self._sweep, loop) if self.open else None


class _Refusing(_HttpTools):
    """uvicorn's httptools protocol with deadlines, and refusals that let the client read them.

    A client refused while it still sends (headers past the limits, say) would lose the
    answer if the server closed at once: closing with unread data resets the connection.
    So a refusal half-closes, drops whatever else comes, and closes when the client does,
    or ``LINGER_S`` later.
    """

    LINGER_S = 2.0
    #: (loop time, status, message): when the current stage must be over, and the answer
    deadline: tuple[float, int, str] | None = None
    _refused = False

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with ``message``, then half-close and linger."""
        extra = {"event": "rejected", "status": status, "error": message}
        logging.getLogger("kit.server").info("rejected", extra=extra)
        self._refused = True
        self.deadline = (self.loop.time() + self.LINGER_S, status, message)
        _answer(self.transport, status, message)
        if not self.transport.is_closing():  # the client may be gone already
            self.transport.write_eof()

    def expire(self) -> None:
        """The deadline passed: refuse with its answer, or close after a refusal's linger."""
        assert self.deadline is not None
        _, status, message = self.deadline
        self.deadline = None
        if self._refused:
            self.transport.close()
        else:
            _refuse(self.transport, status, message)


class _ChunksHandedOn(_HttpTools):
    """uvicorn's httptools protocol, handing each body chunk to ``receive`` as it is when none
    is waiting there: uvicorn appends every chunk to a bytearray, which ``receive`` then
    copies into bytes, two copies of every body (of 600 KB, for an AlexNet image)."""

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle.body or cycle.response_complete or self.parser.should_upgrade():
            super().on_body(body)  # appended (bytes + bytes), or uvicorn's own case
            return
        cycle.body = body  # type: ignore[assignment]  # receive() takes bytes(body): itself
        if len(body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()


def http_protocol(cfg: ServerConfig) -> type[asyncio.Protocol] | str:
    """uvicorn's httptools protocol with coalesced writes, JSON errors, a connection limit, header
    limits, header and body timeouts, body chunks not copied ("auto" without httptools)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # uvicorn without its [standard] extras
        logging.getLogger("kit.server").warning("httptools is missing: no header limits")
        return "auto"

    logging.getLogger("uvicorn.error").addFilter(_OWN_REFUSAL_LINES)
    deadlines = _Deadlines()
    headers_late = (408, f"The request headers did not arrive within {cfg.header_timeout:g} s.")
    body_late = (408, f"The body did not arrive within {cfg.body_timeout:g} s.")

    class Protocol(_Refusing, _ChunksHandedOn, HttpToolsProtocol):
        _refusal: tuple[int, str] | None = None
        _header_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(_CoalescingTransport(transport))  # type: ignore[arg-type]
            if len(self.connections) > cfg.max_connections:
                message = f"The server holds its limit of {cfg.max_connections} connections; retry shortly."
                _refuse(self.transport, 503, message)
                return
            deadlines.add(self)
            self._expect(cfg.header_timeout, headers_late)

        def _expect(self, seconds: float, answer: tuple[int, str]) -> None:
            """Refuse with ``answer`` unless the next stage comes within ``seconds``."""
            self.deadline = (self.loop.time() + seconds, *answer)

        def connection_lost(self, exc: Exception | None) -> None:
            deadlines.discard(self)
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._header_bytes = 0
            if self.deadline is None:
                self._expect(cfg.header_timeout, headers_late)

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value))
            if len(self.headers) >= cfg.max_headers:
                self._refusal = (431, f"The request has more than {cfg.max_headers} headers.")
                raise _TooLarge()
            super().on_header(name, value)

        def _count(self, size: int) -> None:
            self._header_bytes += size
            if self._header_bytes > cfg.max_header_bytes:
                limit = cfg.max_header_bytes
                self._refusal = (431, f"The request line and headers exceed {limit} bytes.")
                raise _TooLarge()

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._expect(cfg.body_timeout, body_late)

        def on_message_complete(self) -> None:
            self.deadline = None
            super().on_message_complete()

        def on_response_complete(self) -> None:
            self.deadline = None  # answered (a 413 before its body, say): nothing to wait for
            super().on_response_complete()

        def send_400_response(self, msg: str) -> None:
            """What HTTP parsing itself rejects gets the protocol's JSON error too."""
            default = (400, f"{msg.rstrip('.')}: not a valid HTTP/1.1 request.")
            self.refuse(*(self._refusal or default))

    return Protocol


def uvicorn_config(
    app: Any,
    cfg: ServerConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    graceful_seconds: int = 30,
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
        timeout_keep_alive=int(cfg.keep_alive_timeout),
        server_header=False,
        proxy_headers=False,  # kit logs no client addresses; skip the per-request middleware
        ws="none",  # no websockets: an upgrade request is answered as plain HTTP (JSON)
        http=http_protocol(cfg),
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
