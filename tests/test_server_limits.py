"""No client can crash, freeze, exhaust or fool kit serve: each limit as a client meets it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from uvicorn.server import ServerState

import kit.runtime as kr
from kit.deploy.triton import TritonOptions
from kit.server._uvicorn import uvicorn_config
from kit.server.app import ServerConfig

from .server_utils import binary_body, decode_binary, json_body, request, running_server

RNG = np.random.default_rng(0)
INFER = "/v2/models/lenet/infer"


@pytest.fixture(scope="module")
def model(lenet_export: Path) -> kr.Model:
    return kr.load(lenet_export)


@pytest.fixture(scope="module")
def server(model: kr.Model):  # type: ignore[no-untyped-def]
    config = ServerConfig(header_timeout=1.0, body_timeout=1.0, max_connections=16)
    with running_server({"lenet": model}, config) as (url, _):
        yield url


def _error(status_body: tuple[int, dict[str, str], bytes]) -> tuple[int, str]:
    status, headers, body = status_body
    assert headers["content-type"].startswith("application/json"), body
    return status, json.loads(body)["error"]


def _raw(url: str, data: bytes, *, read: bool = True, wait: float = 5.0) -> bytes:
    """Send raw bytes on a fresh connection; what the server answers before closing."""
    host, port = url.split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as s:
        s.sendall(data)
        chunks = []
        while read:
            try:
                chunk = s.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def _status_and_error(raw: bytes) -> tuple[int, str]:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"application/json" in head.lower(), raw[:300]
    return int(head.split()[1]), json.loads(body)["error"]


# -- 1. one request may not carry any number of rows ------------------------------------------


def test_a_batch_over_the_limit_is_refused_before_its_tensor_is_read(server: str) -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [20_000, 1, 28, 28],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 20_000 * 3136},
                }
            ]
        }
    ).encode()
    # the header alone, no tensor bytes: the limit answers before any are needed
    got = request(
        server, "POST", INFER, header, {"Inference-Header-Content-Length": str(len(header))}
    )
    status, error = _error(got)
    assert status == 400 and "20000 rows" in error and "at most 64 per request" in error
    status, error = _error(
        request(server, "POST", INFER, json_body(np.zeros((65, 1, 28, 28), np.float32)))
    )
    assert status == 400 and "at most 64" in error
    config = json.loads(request(server, "GET", "/v2/models/lenet/config")[2])
    assert config["max_batch_size"] == 64 == TritonOptions().max_batch_size


def test_a_body_larger_than_any_honest_request_is_refused_unread(server: str) -> None:
    head = (
        f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {62_000_000}\r\n\r\n"
    ).encode()
    status, error = _status_and_error(_raw(server, head + b"{", wait=5))
    assert status == 413 and "this model's limit" in error


# -- 2. decoding does not run on the event loop ------------------------------------------------


def test_a_large_json_body_is_decoded_off_the_event_loop(model: kr.Model) -> None:
    config = ServerConfig(max_batch_size=4096, inline_decode_bytes=1 << 20)
    values = ["0.5"] * (4096 * 784 - 1) + ['"not a number"']
    body = (
        '{"inputs": [{"name": "input", "shape": [4096, 1, 28, 28], "datatype": "FP32", '
        f'"data": [{", ".join(values)}]}}]}}'
    ).encode()
    with running_server({"lenet": model}, config) as (url, _):
        assert request(url, "GET", "/v2/health/ready")[0] == 200
        finished: dict[str, float] = {}

        def post() -> None:
            finished["status"] = request(url, "POST", INFER, body)[0]
            finished["post"] = time.perf_counter()

        worker = threading.Thread(target=post)
        worker.start()
        time.sleep(0.3)  # the body is on its way and being decoded
        asked = time.perf_counter()
        assert request(url, "GET", "/v2/health/live")[0] == 200
        answered = time.perf_counter()
        worker.join(60)
        assert finished["status"] == 400  # the string, found after a full decode
        assert answered < finished["post"], "health waited for the decode"
        assert answered - asked < 2.0
        # a large valid body decoded in the worker process answers like a small one
        x = RNG.standard_normal((2048, 1, 28, 28), dtype=np.float32)
        status, _, resp = request(url, "POST", INFER, json_body(x))
        assert status == 200
        got = np.asarray(json.loads(resp)["outputs"][0]["data"], np.float32).reshape(2048, 10)
        np.testing.assert_allclose(got, model.predict(x)["logits"], rtol=1e-5, atol=1e-5)


# -- 3. scalars and zero-dimension tensors are a 400 -------------------------------------------


@pytest.mark.parametrize("shape", [[], [0, 1, 28, 28], [1, 0, 28, 28]])
def test_scalars_and_empty_tensors_are_a_400(server: str, shape: list[int]) -> None:
    as_json = json.dumps(
        {"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": []}]}
    )
    assert _error(request(server, "POST", INFER, as_json.encode()))[0] == 400
    body, headers = binary_body(np.zeros((1, 1, 28, 28), np.float32), shape=shape, size=0)
    assert (
        _error(
            request(
                server,
                "POST",
                INFER,
                body[: int(headers["Inference-Header-Content-Length"])],
                headers,
            )
        )[0]
        == 400
    )


# -- 4. timeouts and limits on connections -----------------------------------------------------


def test_a_client_that_stops_mid_headers_is_dropped(server: str) -> None:
    started = time.perf_counter()
    raw = _raw(
        server, b"POST /v2/models/lenet/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", wait=10
    )
    status, error = _status_and_error(raw)
    assert status == 408 and "headers did not arrive within 1 s" in error
    assert time.perf_counter() - started < 8


@pytest.mark.parametrize("pause", [0.0, 0.01])
def test_a_body_sent_in_pieces_arrives_whole_and_in_order(
    server: str, model: kr.Model, pause: float
) -> None:
    """The server hands a body on chunk by chunk, joining those that arrive before it reads:
    uneven pieces, back to back or apart, must make the same tensor (over 64 KB, so
    reading pauses and resumes too)."""
    x = RNG.standard_normal((40, *model.input_shape)).astype(np.float32)
    body, headers = binary_body(x)
    head = (
        f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        f"Inference-Header-Content-Length: {headers['Inference-Header-Content-Length']}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    host, port = server.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(head)
        sizes = iter([1, 7, 4093, 70_000, 3, 20_000, *([997] * 40)])
        start = 0
        while start < len(body):
            end = start + next(sizes, len(body))
            s.sendall(body[start:end])
            start = end
            time.sleep(pause)
        answer = b"".join(iter(lambda: s.recv(65536), b""))
    head_out, _, payload = answer.partition(b"\r\n\r\n")
    assert head_out.startswith(b"HTTP/1.1 200"), answer[:300]
    found = {
        k.lower(): v.strip()
        for k, _, v in (line.partition(":") for line in head_out.decode().split("\r\n")[1:])
    }
    np.testing.assert_allclose(
        decode_binary(found, payload), model.predict(x)["logits"], rtol=1e-5, atol=1e-5
    )


class _Transport(asyncio.Transport):
    """A connection's far end for the protocol alone: keeps what the server writes."""

    def __init__(self) -> None:
        super().__init__()
        self.written, self.closed, self.ended = bytearray(), False, False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.ended:
            raise RuntimeError("Cannot call write() after write_eof()")  # as uvloop does
        self.written += data

    def write_eof(self) -> None:
        self.ended = True

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 8000) if name in ("sockname", "peername") else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _echo_digest(scope: dict, receive: Any, send: Any) -> None:
    """ASGI: answers a body's length and SHA-256, read the way kit's infer path reads it."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    answer = f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()
    headers = [(b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@pytest.mark.parametrize("reads_between", [False, True])
def test_body_chunks_reach_the_app_whole_however_they_arrive(reads_between: bool) -> None:
    """kit's protocol hands each body chunk to ``receive`` as it is, and joins the chunks
    that arrive before the app reads (fed here back to back, or with the app reading
    between them): either way the app reads the body whole and in order."""
    body = RNG.integers(0, 256, 150_000, dtype=np.uint8).tobytes()
    head = f"POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n"
    data = head.encode() + body
    cuts = [len(head) + n for n in (0, 1, 9, 70_000, 70_001, 120_000)] + [len(data)]

    expected = f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()

    async def scenario() -> bytes:
        config = uvicorn_config(_echo_digest, ServerConfig())
        config.load()
        server_state = ServerState()
        protocol = config.http_protocol_class(config, server_state, app_state={})
        transport = _Transport()
        protocol.connection_made(transport)
        start = 0
        for end in cuts:
            protocol.data_received(data[start:end])
            start = end
            for _ in range(5 if reads_between else 0):
                await asyncio.sleep(0)  # the app's task runs and reads what has come
        for _ in range(400):
            if transport.written.endswith(expected):
                break
            await asyncio.sleep(0.005)
        protocol.connection_lost(None)
        return bytes(transport.written)

    answer = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert answer.split(b"\r\n\r\n", 1)[1] == expected


def test_an_answer_after_a_refusal_on_the_same_connection_is_dropped_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A request, then junk on the same connection: the junk is refused (400, half-close)
    while the first is still being answered; that answer, too late, goes nowhere, and
    nothing fails in the server's log."""

    async def slow(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await asyncio.sleep(0.05)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})

    async def scenario() -> _Transport:
        config = uvicorn_config(slow, ServerConfig())
        config.load()
        protocol = config.http_protocol_class(config, ServerState(), app_state={})
        transport = _Transport()
        protocol.connection_made(transport)
        protocol.data_received(b"GET /a HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n\x16\x03junk")
        await asyncio.sleep(0.2)
        protocol.connection_lost(None)
        return transport

    with caplog.at_level(logging.INFO):
        transport = asyncio.run(scenario())
    assert transport.ended and transport.written.startswith(b"HTTP/1.1 400"), transport.written
    assert b"late" not in transport.written
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_a_client_that_stops_mid_body_is_dropped(server: str) -> None:
    head = f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n".encode()
    status, error = _status_and_error(_raw(server, head + b'{"inputs": [', wait=10))
    assert status == 408 and "body did not arrive" in error


def test_headers_past_the_limits_get_431(server: str) -> None:
    big = b"GET /v2 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (256 * 1024) + b"\r\n\r\n"
    status, error = _status_and_error(_raw(server, big))
    assert status == 431 and "exceed 65536 bytes" in error
    many = b"GET /v2 HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(
        b"X-%d: 1\r\n" % i for i in range(1000)
    )
    status, error = _status_and_error(_raw(server, many + b"\r\n"))
    assert status == 431 and "more than 100 headers" in error


def test_a_client_still_writing_when_refused_reads_its_answer(server: str) -> None:
    """Refused while it is still sending (8 MB of headers), a client gets its 431: the server
    half-closes and drops the rest, where closing outright would reset the connection."""
    flood = b"GET /v2 HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-A: 1\r\n" * 1_000_000
    status, error = _status_and_error(_raw(server, flood, wait=10))
    assert status == 431 and "headers" in error


def test_a_refused_client_that_keeps_sending_is_closed_after_a_linger(server: str) -> None:
    """After a refusal the server half-closes (the client reads its answer, then the end of
    the stream), drops what else comes, and closes within its linger."""
    host, port = server.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"\x16\x03\x01\x02\x00" + bytes(200))  # a TLS hello, not HTTP
        answer = b"".join(iter(lambda: s.recv(65536), b""))  # ends: the server wrote its EOF
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
        started = time.perf_counter()
        with pytest.raises(OSError):  # reset once the server has closed
            while time.perf_counter() - started < 8:
                s.sendall(b"more junk " * 100)
                time.sleep(0.05)
        assert time.perf_counter() - started < 4  # the linger (2 s) and a sweep (0.25 s)


@pytest.mark.parametrize("value", ["9" * 5000, "1" * 19])
def test_a_header_length_no_integer_holds_is_a_400(server: str, value: str) -> None:
    """Python refuses to convert a number of 4,300 digits or more: a 400, not a 500."""
    headers = {"Inference-Header-Content-Length": value, "Content-Type": "application/octet-stream"}
    status, error = _error(request(server, "POST", INFER, b'{"inputs": []}', headers))
    assert status == 400 and "Inference-Header-Content-Length" in error


def test_connections_past_the_limit_get_503_and_the_server_recovers(model: kr.Model) -> None:
    config = ServerConfig(max_connections=4, header_timeout=30)
    with running_server({"lenet": model}, config) as (url, _):
        host, port = url.split(":")
        idle = [socket.create_connection((host, int(port))) for _ in range(4)]
        try:
            time.sleep(0.2)
            status, error = _status_and_error(
                _raw(url, b"GET /v2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            )
            assert status == 503 and "limit of 4 connections" in error
        finally:
            for s in idle:
                s.close()
        time.sleep(0.2)
        assert request(url, "GET", "/v2/health/live")[0] == 200


def test_a_client_hanging_up_is_one_line_not_a_traceback(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    head = f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000\r\n\r\n".encode()
    with caplog.at_level(logging.INFO):
        _raw(server, head + b'{"inputs"', read=False)
        time.sleep(0.5)
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("request_bytes", "status", "says"),
    [
        (b"\x16\x03\x01\x02\x00" + bytes(200), 400, "not a valid HTTP/1.1 request"),
        (b"GET /v2 HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-A: 1\r\n" * 20_000, 431, "headers"),
    ],
)
def test_a_request_http_rejects_is_one_line_saying_why(
    server: str, caplog: pytest.LogCaptureFixture, request_bytes: bytes, status: int, says: str
) -> None:
    """kit's line (the status and the client's sentence), not uvicorn's bare warning."""
    with caplog.at_level(logging.INFO):
        assert _status_and_error(_raw(server, request_bytes))[0] == status
        time.sleep(0.2)
    lines = [r for r in caplog.records if r.name.startswith(("kit", "uvicorn"))]
    assert [(r.getMessage(), r.status, says in r.error) for r in lines] == [  # type: ignore[attr-defined]
        ("rejected", status, True)
    ]


# -- 5. the Host header ------------------------------------------------------------------------


def test_only_loopback_host_names_are_answered_on_loopback(server: str, model: kr.Model) -> None:
    port = server.split(":")[1]
    for host in ("localhost", f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert request(server, "GET", "/v2", headers={"Host": host})[0] == 200, host
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example"):
        status, error = _error(
            request(server, "GET", "/ui/models/lenet/model.onnx", headers={"Host": host})
        )
        assert status == 400 and "is not served here" in error and "--allow-host" in error
    config = ServerConfig(allowed_hosts=("kit.internal",))
    with running_server({"lenet": model}, config) as (url, _):
        assert request(url, "GET", "/v2", headers={"Host": "kit.internal:8000"})[0] == 200
        assert request(url, "GET", "/v2", headers={"Host": "evil.example"})[0] == 400


def test_the_host_check_follows_the_bound_address() -> None:
    from kit.server.config import LOOPBACK_HOSTS
    from kit.server.limits import allowed_hosts

    assert allowed_hosts("127.0.0.1", (), LOOPBACK_HOSTS) == set(LOOPBACK_HOSTS)
    assert allowed_hosts("::1", ("a",), LOOPBACK_HOSTS) == {*LOOPBACK_HOSTS, "a"}
    assert allowed_hosts("0.0.0.0", (), LOOPBACK_HOSTS) is None  # behind a proxy: any
    assert allowed_hosts("0.0.0.0", ("kit.example",), LOOPBACK_HOSTS) == {"kit.example"}


# -- 6. errors in the protocol's form, counted; the port said --------------------------------


def test_a_failing_model_is_counted_as_500(lenet_export: Path) -> None:
    broken = kr.load(lenet_export)

    def predict(x: np.ndarray, *, validate: bool = True) -> dict[str, np.ndarray]:
        raise RuntimeError("the accelerator fell off")

    with running_server({"lenet": broken}, ServerConfig(batching=False)) as (url, _):
        broken.predict = predict  # type: ignore[method-assign]  # after start-up's timing
        status, error = _error(
            request(url, "POST", INFER, json_body(np.zeros((1, 1, 28, 28), np.float32)))
        )
        assert status == 500 and "Inference failed: the accelerator fell off" in error
        metrics = request(url, "GET", "/metrics")[2].decode()
        assert 'kit_requests_total{model="lenet",status="500"} 1.0' in metrics


def test_websocket_and_range_requests_stay_in_the_protocol(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13"}
    upgrade["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ=="
    with caplog.at_level(logging.INFO):
        status, _, body = request(server, "GET", "/nope", headers=upgrade)
    assert status == 404 and json.loads(body)["error"].startswith("No endpoint")
    # kit serves no websockets by design: no advice to install a library for them
    assert not [r for r in caplog.records if "WebSocket library" in r.getMessage()]
    for bad in ("bytes=999999999-", "bytes=5-1", "lines=1-2"):
        status, _headers, body = request(server, "GET", "/", headers={"Range": bad})
        assert status == 200 and b"<html" in body.lower()  # the whole page, never plain text


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.add(int(stat.parent.name))
    return found


def test_port_0_logs_its_port_and_sigterm_leaves_no_worker(shipped: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kit", "serve", str(shipped / "lenet"), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        port = None
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if '"listening"' in line:
                port = json.loads(line)["port"]
        assert isinstance(port, int) and port > 0
        ready = False
        while not ready and time.monotonic() < deadline:
            try:
                ready = request(f"127.0.0.1:{port}", "GET", "/v2/health/ready")[0] == 200
            except OSError:
                time.sleep(0.2)
        assert ready
        # a JSON body over the inline limit starts the decoding worker process
        values = ", ".join(["0.12345678901234567"] * (64 * 784))
        body = (
            '{"inputs": [{"name": "input", "shape": [64, 1, 28, 28], "datatype": "FP32", '
            f'"data": [{values}]}}]}}'
        ).encode()
        assert len(body) > 1 << 20
        assert request(f"127.0.0.1:{port}", "POST", INFER, body)[0] == 200
        workers = _children(proc.pid)
        assert workers, "no decoding worker was started"
    finally:
        proc.terminate()
        proc.wait(30)
    # uvicorn ends the process with the SIGTERM it caught: nothing at exit reaps a worker
    deadline = time.monotonic() + 10
    while (
        left := [p for p in workers if Path(f"/proc/{p}").exists()]
    ) and time.monotonic() < deadline:
        time.sleep(0.1)
    names = [Path(f"/proc/{p}/cmdline").read_bytes() for p in left]
    for pid in left:  # do not leave them running past a failure
        os.kill(pid, signal.SIGKILL)
    assert not left, names


# -- 15. numbers only; a non-finite output says so ---------------------------------------------


@pytest.mark.parametrize("bad", ['"0.5"', "true", "null", "[0.5]", '{"a": 1}'])
def test_strings_and_booleans_are_not_numbers(server: str, bad: str) -> None:
    values = ["0.5"] * 783 + [bad]
    body = (
        '{"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", '
        f'"data": [{", ".join(values)}]}}]}}'
    ).encode()
    status, error = _error(request(server, "POST", INFER, body))
    assert status == 400 and "list of float32 numbers" in error


def test_an_output_that_overflows_is_an_error_not_null(server: str) -> None:
    x = np.full((1, 1, 28, 28), 3e38, np.float32)  # finite, but lenet's sums overflow
    status, error = _error(request(server, "POST", INFER, json_body(x)))
    assert status == 400 and "NaN or infinite values for this input" in error
