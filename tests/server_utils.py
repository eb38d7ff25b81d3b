"""Helpers to run the v2 server in-process (a thread) and talk raw HTTP to it."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import uvicorn

from kit.runtime import Model
from kit.server._uvicorn import uvicorn_config
from kit.server.app import ServerConfig, create_app


@contextlib.contextmanager
def running_server(
    models: dict[str, Model], config: ServerConfig | None = None
) -> Iterator[tuple[str, uvicorn.Server]]:
    config = config or ServerConfig()
    app = create_app(models, config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, config, graceful_seconds=10))  # kit serve's
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.01)
    try:
        yield f"127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def request(
    url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def json_body(x: np.ndarray, **overrides: Any) -> bytes:
    inp = {
        "name": "input",
        "shape": list(x.shape),
        "datatype": "FP32",
        "data": x.reshape(-1).tolist(),
    }
    inp.update(overrides)
    return json.dumps({"inputs": [inp]}).encode()


def binary_body(
    x: np.ndarray, *, size: int | None = None, shape: list[int] | None = None
) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": shape or list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes if size is None else size},
                }
            ],
            "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return header + x.astype("<f4").tobytes(), {"Inference-Header-Content-Length": str(len(header))}


def decode_binary(headers: dict[str, str], body: bytes) -> np.ndarray:
    n = int(headers["inference-header-content-length"])
    head = json.loads(body[:n])
    out = head["outputs"][0]
    return np.frombuffer(body[n:], dtype="<f4").reshape(out["shape"])
