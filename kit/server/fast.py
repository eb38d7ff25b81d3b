"""The hot path: ``POST /v2/models/NAME[/versions/1]/infer`` as plain ASGI, in front of the
Starlette app that answers everything else.

An inference request is the one kind a busy server answers thousands of times a second, and
Starlette's Request and Response objects, its router and its middleware stack cost more
than the protocol's own parsing. Here the request is routed with two string tests, its
body read from ASGI's ``receive`` within the model's size limit and the shared body budget,
parsed, batched and answered with two ASGI messages. Every protection stays: a request this
path does not take whole (an unknown model, a foreign Host, a server not ready yet, another
method) goes to Starlette, which answers it with the protocol's JSON error; the body's time
limit is the connection's (:mod:`kit.server._uvicorn`).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from .decoding import Decoder
from .limits import BodyBudget, host_allowed
from .metrics import Metrics
from .protocol import HEADER_LENGTH, ProtocolError, encode_response
from .served import VERSION, ServedModel

__all__ = ["InferPath"]

log = logging.getLogger("kit.server")

_PREFIX, _SUFFIX = "/v2/models/", "/infer"
_VERSIONS = "/versions/"
#: a client that hung up: nothing to answer, one log line
GONE = 499
_HEADER = HEADER_LENGTH.lower().encode()
_JSON = [(b"content-type", b"application/json")]
_BINARY = (b"content-type", b"application/octet-stream")


class Serving(Protocol):
    """What the hot path needs of the app behind it."""

    ready: bool
    served: dict[str, ServedModel]
    budget: BodyBudget
    decoder: Decoder
    metrics: Metrics


class InferPath:
    """ASGI: infer requests straight to their model, everything else to ``fallback``."""

    def __init__(self, fallback: Any, app: Serving, hosts: set[str] | None) -> None:
        self.fallback, self.app, self.hosts = fallback, app, hosts

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        entry = self._route(scope) if scope["type"] == "http" else None
        if entry is None:
            await self.fallback(scope, receive, send)
            return
        await self._infer(entry, scope, receive, send)

    def _route(self, scope: Any) -> ServedModel | None:
        """The served model a ready server answers this request for, or None."""
        path = scope["path"]
        if scope["method"] != "POST" or not path.endswith(_SUFFIX) or not self.app.ready:
            return None
        if not path.startswith(_PREFIX):
            return None
        name, versioned, version = path[len(_PREFIX) : -len(_SUFFIX)].partition(_VERSIONS)
        if "/" in name or (versioned and version != VERSION):
            return None
        if self.hosts is not None and not host_allowed(scope["headers"], self.hosts):
            return None
        return self.app.served.get(name)

    async def _infer(self, entry: ServedModel, scope: Any, receive: Any, send: Any) -> None:
        started = time.perf_counter()
        try:
            length, header = _lengths(scope["headers"])
            body = await self._body(entry, receive, length)
            req = await self.app.decoder.parse(entry, body, header)
            try:
                outputs, waited = await entry.infer(req.x)
            except Exception as exc:  # the runtime failed on valid input: a server error
                entry.failed.inc()
                log.exception("inference failed", extra={"event": "error", "model": entry.name})
                await _answer(send, 500, {"error": f"Inference failed: {exc}"})
                return
            payload, header_len = encode_response(entry.name, VERSION, req, outputs, entry.labels)
        except ProtocolError as exc:
            await self._refuse(entry, scope, send, exc)
            return
        entry.ok.inc()
        entry.queue.observe(waited)
        entry.latency.observe(time.perf_counter() - started)
        headers = [(b"content-length", b"%d" % len(payload))]
        if header_len is None:
            headers += _JSON
        else:
            headers += [_BINARY, (_HEADER, b"%d" % header_len)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _body(self, entry: ServedModel, receive: Any, length: int | None) -> bytes:
        """The body, within the model's limit (refused before reading when Content-Length
        says so) and the budget all clients share."""
        limit = entry.body_limit
        if length is not None and length > limit:
            raise ProtocolError(f"The body is {length} bytes; this model's limit is {limit}.", 413)
        size = limit if length is None else length
        budget = self.app.budget
        budget.take(size)
        try:
            chunks, total = [], 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ProtocolError("The client hung up before its body arrived.", GONE)
                chunk = message.get("body", b"")
                total += len(chunk)
                if total > limit:
                    raise ProtocolError(
                        f"The body exceeds this model's limit of {limit} bytes.", 413
                    )
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        finally:
            budget.release(size)

    async def _refuse(self, entry: ServedModel, scope: Any, send: Any, exc: ProtocolError) -> None:
        self.app.metrics.requests.labels(entry.name, str(exc.status)).inc()
        event = "gone" if exc.status == GONE else "rejected"
        extra = {"event": event, "path": scope["path"], "status": exc.status, "error": str(exc)}
        log.info(event, extra=extra)
        retry = [(b"retry-after", b"1")] if exc.status == 503 else []
        await _answer(send, exc.status, {"error": str(exc)}, retry)


def _lengths(headers: list[tuple[bytes, bytes]]) -> tuple[int | None, str | None]:
    """Content-Length (None when absent or not a number) and the binary extension's header
    length, from the raw ASGI headers in one pass."""
    length = header = None
    for key, value in headers:
        if key == b"content-length":
            length = int(value) if value.isdigit() and len(value) < 19 else None
        elif key == _HEADER:
            header = value.decode("latin-1")
    return length, header


async def _answer(
    send: Any, status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    import json

    raw = json.dumps(body).encode()
    headers = [*_JSON, (b"content-length", b"%d" % len(raw)), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})
