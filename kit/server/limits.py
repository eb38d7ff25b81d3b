"""What keeps one client from exhausting or fooling the server: a budget of request body
bytes shared by all clients, and Host names checked against the address the server is bound
to (DNS rebinding). Each model's body size limit is applied as its body is read
(:mod:`kit.server.fast`); the time limits are the connection's (:mod:`kit.server._uvicorn`)."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from .protocol import ProtocolError

__all__ = ["BodyBudget", "HostCheck", "allowed_hosts", "host_allowed"]


class BodyBudget:
    """Bytes of request bodies held at once, all clients together (one event loop: no lock)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.held = limit, 0

    def take(self, size: int) -> None:
        """Hold ``size`` bytes (give them back with :meth:`release`), or refuse with 503
        when they do not fit."""
        if self.held + size > self.limit:
            raise ProtocolError(
                "The server is holding as many request bodies as it allows; retry shortly.", 503
            )
        self.held += size

    def release(self, size: int) -> None:
        self.held -= size


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(bound: str, extra: tuple[str, ...], loopback: tuple[str, ...]) -> set[str] | None:
    """The Host names to answer: the loopback names plus ``extra`` when bound to a loopback
    address; ``extra`` alone when bound elsewhere and it is given; None (any) otherwise."""
    names = {h.lower() for h in extra}
    if _is_loopback(bound):
        return names | set(loopback)
    return names or None


def _host_name(value: str) -> str:
    """``[::1]:8000`` -> ``::1``, ``Localhost:8000`` -> ``localhost``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def host_allowed(headers: list[tuple[bytes, bytes]], allowed: set[str]) -> bool:
    """Whether the request's Host header (raw ASGI headers) names one of ``allowed``."""
    host = next((v.decode("latin-1") for k, v in headers if k == b"host"), "")
    return _host_name(host) in allowed


class HostCheck:
    """ASGI middleware: a request whose Host header is not allowed gets the protocol's 400
    (so a web page on another origin cannot read a server on a user's machine through DNS
    rebinding)."""

    def __init__(self, app: Any, allowed: set[str] | None) -> None:
        self.app, self.allowed = app, allowed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.allowed is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if host_allowed(scope["headers"], self.allowed):
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
        body = json.dumps(
            {"error": f"Host {host!r} is not served here; kit serve --allow-host adds a name."}
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 400, "headers": headers})
        await send({"type": "http.response.body", "body": body})
