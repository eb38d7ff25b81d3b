"""kit serve: the Open Inference Protocol, Triton's client, batching, bad input, load."""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import kit.runtime as kr
from kit.server.app import ServerConfig

from .server_utils import binary_body, decode_binary, json_body, request, running_server

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def model(lenet_export: Path) -> kr.Model:
    return kr.load(lenet_export)


@pytest.fixture(scope="module")
def server(model: kr.Model):  # type: ignore[no-untyped-def]
    with running_server({"lenet": model}, ServerConfig(max_body_bytes=1 << 20)) as (url, _):
        yield url


def test_triton_client_works_unchanged(server: str, model: kr.Model) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(server)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("lenet")
    meta = client.get_model_metadata("lenet")
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    x = RNG.standard_normal((3, 1, 28, 28), dtype=np.float32)
    expected = model.predict(x)["logits"]
    for binary in (True, False):
        inp = httpclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        out = httpclient.InferRequestedOutput("logits", binary_data=binary)
        result = client.infer("lenet", [inp], outputs=[out], request_id="r1")
        np.testing.assert_array_equal(result.as_numpy("logits"), expected)
        assert result.get_response()["id"] == "r1"
    with pytest.raises(InferenceServerException, match="Unknown model 'resnet'"):
        client.infer("resnet", [inp])
    bad = httpclient.InferInput("input", [1, 1, 28, 27], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 1, 28, 27), np.float32))
    with pytest.raises(InferenceServerException, match=r"takes \[-1, 1, 28, 28\]"):
        client.infer("lenet", [bad])
    assert not client.is_model_ready("resnet")


def test_server_metadata_and_health(server: str) -> None:
    status, _, body = request(server, "GET", "/v2")
    assert status == 200 and "binary_tensor_data" in json.loads(body)["extensions"]
    assert request(server, "GET", "/v2/health/live")[0] == 200
    assert request(server, "GET", "/v2/health/ready")[0] == 200
    assert request(server, "GET", "/v2/models/lenet/versions/1/ready")[0] == 200
    status, _, body = request(server, "GET", "/v2/models/lenet/versions/2")
    assert status == 404 and "no version '2'" in json.loads(body)["error"]


def test_json_and_binary_infer_with_version_path(server: str, model: kr.Model) -> None:
    x = RNG.standard_normal((2, 1, 28, 28), dtype=np.float32)
    expected = model.predict(x)["logits"]
    status, _, body = request(server, "POST", "/v2/models/lenet/versions/1/infer", json_body(x))
    assert status == 200
    out = json.loads(body)["outputs"][0]
    assert out["shape"] == [2, 10] and out["datatype"] == "FP32"
    np.testing.assert_allclose(np.array(out["data"]).reshape(2, 10), expected, rtol=1e-6)
    body_bin, headers = binary_body(x)
    status, resp_headers, body = request(
        server, "POST", "/v2/models/lenet/infer", body_bin, headers
    )
    assert status == 200
    np.testing.assert_array_equal(decode_binary(resp_headers, body), expected)
    nested = json.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [2, 1, 28, 28], "datatype": "FP32", "data": x.tolist()}
            ]
        }
    ).encode()
    assert request(server, "POST", "/v2/models/lenet/infer", nested)[0] == 200


def _bad_requests() -> list[tuple[str, str, bytes, dict[str, str], int, str]]:
    x = np.zeros((1, 1, 28, 28), np.float32)
    nan = x.copy()
    nan[0, 0, 3, 3] = np.nan
    header_too_long = binary_body(x)[0]
    two_inputs = json.loads(json_body(x))
    two_inputs["inputs"].append(dict(two_inputs["inputs"][0], name="extra"))
    binary_nan, binary_nan_headers = binary_body(nan)
    return [
        ("malformed JSON", "/v2/models/lenet/infer", b"{nope", {}, 400, "not valid JSON"),
        (
            "unknown model",
            "/v2/models/resnet/infer",
            json_body(x),
            {},
            404,
            "Unknown model 'resnet'",
        ),
        (
            "missing input",
            "/v2/models/lenet/infer",
            json.dumps({"inputs": []}).encode(),
            {},
            400,
            "non-empty 'inputs'",
        ),
        (
            "wrong input name",
            "/v2/models/lenet/infer",
            json_body(x, name="image"),
            {},
            400,
            "Input 'input' is missing",
        ),
        (
            "extra input",
            "/v2/models/lenet/infer",
            json.dumps(two_inputs).encode(),
            {},
            400,
            "Unexpected input",
        ),
        (
            "wrong datatype",
            "/v2/models/lenet/infer",
            json_body(x, datatype="INT64"),
            {},
            400,
            "datatype 'INT64'",
        ),
        (
            "shape vs data",
            "/v2/models/lenet/infer",
            json_body(x, shape=[2, 1, 28, 28]),
            {},
            400,
            "holds 784",
        ),
        (
            "wrong sample shape",
            "/v2/models/lenet/infer",
            json_body(np.zeros((1, 1, 28, 27), np.float32)),
            {},
            400,
            "model takes",
        ),
        (
            "header longer than body",
            "/v2/models/lenet/infer",
            header_too_long,
            {"Inference-Header-Content-Length": str(len(header_too_long) + 1)},
            400,
            "body holds",
        ),
        (
            "binary size mismatch",
            "/v2/models/lenet/infer",
            *binary_body(x, size=100),
            400,
            "binary_data_size is 100",
        ),
        ("NaN in JSON", "/v2/models/lenet/infer", json_body(nan), {}, 400, "NaN or infinite"),
        (
            "NaN in binary",
            "/v2/models/lenet/infer",
            binary_nan,
            binary_nan_headers,
            400,
            "NaN or infinite",
        ),
        (
            "empty batch",
            "/v2/models/lenet/infer",
            json_body(np.zeros((0, 1, 28, 28), np.float32)),
            {},
            400,
            "batch is empty",
        ),
        ("body over the limit", "/v2/models/lenet/infer", b"x" * ((1 << 20) + 1), {}, 413, "limit"),
        (
            "unknown output",
            "/v2/models/lenet/infer",
            json.dumps(
                {"inputs": json.loads(json_body(x))["inputs"], "outputs": [{"name": "probs"}]}
            ).encode(),
            {},
            400,
            "Unknown output 'probs'",
        ),
        (
            "deeply nested JSON",
            "/v2/models/lenet/infer",
            b"[" * 5000 + b"]" * 5000,
            {},
            400,
            "must be a JSON object with an 'inputs' list",
        ),
        (
            "deeply nested JSON inside",
            "/v2/models/lenet/infer",
            b'{"inputs": [{"data": ' + b"[" * 5000 + b"]" * 5000 + b"}]}",
            {},
            400,
            "nests JSON too deeply",
        ),
        (
            "deeply nested data",
            "/v2/models/lenet/infer",
            json.dumps({"inputs": [dict(json.loads(json_body(x))["inputs"][0], data=[])]})
            .replace("[]", "[" * 900 + "]" * 900)
            .encode(),
            {},
            400,
            "",
        ),
        (
            "a number float32 cannot hold",
            "/v2/models/lenet/infer",
            json_body(x, data=[10**400] * 784),
            {},
            400,
            "float32 numbers",
        ),
        (
            "the same output twice",
            "/v2/models/lenet/infer",
            json.dumps(
                {
                    "inputs": json.loads(json_body(x))["inputs"],
                    "outputs": [{"name": "logits"}, {"name": "logits"}],
                }
            ).encode(),
            {},
            400,
            "requested more than once",
        ),
    ]


@pytest.mark.parametrize("case", _bad_requests(), ids=lambda c: c[0])
def test_bad_requests_get_protocol_errors(server: str, case: tuple) -> None:  # type: ignore[type-arg]
    _, path, body, headers, status, message = case
    got, resp_headers, resp = request(server, "POST", path, body, headers)
    assert got == status
    assert resp_headers["content-type"].startswith("application/json")
    assert message in json.loads(resp)["error"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nope", 404),
        ("GET", "/v2/models/..%2F..%2Fetc%2Fpasswd", 404),
        ("GET", "/v2/models/lenet/infer", 405),
        ("DELETE", "/v2/models/lenet", 405),
        ("POST", "/v2/health/live", 405),
    ],
)
def test_unrouted_requests_get_protocol_errors(
    server: str, method: str, path: str, status: int
) -> None:
    got, headers, body = request(server, method, path)
    assert got == status
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]


def _mutate(valid: bytes, header_len: int, rng: random.Random) -> tuple[bytes, dict[str, str]]:
    kind = rng.randrange(6)
    body, headers = bytearray(valid), {"Inference-Header-Content-Length": str(header_len)}
    if kind == 0:  # flip random bytes in the JSON header
        for _ in range(rng.randint(1, 8)):
            body[rng.randrange(header_len)] = rng.randrange(256)
    elif kind == 1:  # truncate anywhere
        body = body[: rng.randrange(len(body))]
    elif kind == 2:  # lie about the header length
        headers["Inference-Header-Content-Length"] = rng.choice(
            ["-1", "abc", str(len(body) + rng.randint(1, 99)), "0"]
        )
    elif kind == 3:  # random JSON values in the header
        head = json.loads(bytes(body[:header_len]))
        target = head["inputs"][0]
        key = rng.choice(["shape", "datatype", "name", "parameters"])
        target[key] = rng.choice(
            [None, -1, "x", [], [1, -2], {"binary_data_size": "7"}, [1.5], True, [2, 1, 28, 28]]
        )
        new_head = json.dumps(head).encode()
        body = bytearray(new_head + bytes(body[header_len:]))
        headers["Inference-Header-Content-Length"] = str(len(new_head))
    elif kind == 4:  # random garbage
        body = bytearray(rng.randbytes(rng.randint(0, 300)))
        if rng.random() < 0.5:
            headers = {}
    else:  # NaN/Inf injected into the binary tensor
        off = header_len + 4 * rng.randrange((len(body) - header_len) // 4)
        body[off : off + 4] = np.array([rng.choice([np.nan, np.inf, -np.inf])], "<f4").tobytes()
    return bytes(body), headers


def test_thousand_malformed_requests_then_a_valid_one(server: str, model: kr.Model) -> None:
    rng = random.Random(1234)
    x = RNG.standard_normal((2, 1, 28, 28), dtype=np.float32)
    valid, headers = binary_body(x)
    header_len = int(headers["Inference-Header-Content-Length"])
    statuses: dict[int, int] = {}
    for _ in range(1000):
        body, hdrs = _mutate(valid, header_len, rng)
        status, resp_headers, resp = request(server, "POST", "/v2/models/lenet/infer", body, hdrs)
        statuses[status] = statuses.get(status, 0) + 1
        if status != 200:  # a harmless mutation (a flipped byte inside a float) may still be valid
            assert 400 <= status < 500, (status, resp)
            assert "error" in json.loads(resp)
    assert sum(v for k, v in statuses.items() if k >= 400) >= 900
    status, resp_headers, resp = request(server, "POST", "/v2/models/lenet/infer", valid, headers)
    assert status == 200
    np.testing.assert_array_equal(decode_binary(resp_headers, resp), model.predict(x)["logits"])


# inline_seconds 0: every batch runs on a worker thread; 1 s: every batch on the event loop
@pytest.mark.parametrize("inline_seconds", [0.0, 1.0])
def test_dynamic_batching_returns_each_caller_its_rows(
    model: kr.Model, inline_seconds: float
) -> None:
    config = ServerConfig(
        max_batch_size=16, max_queue_delay_us=50_000, inline_seconds=inline_seconds
    )
    with running_server({"lenet": model}, config) as (url, _):
        inputs = [RNG.standard_normal((1 + i % 3, 1, 28, 28), dtype=np.float32) for i in range(24)]

        def call(x: np.ndarray) -> np.ndarray:
            body, headers = binary_body(x)
            status, h, resp = request(url, "POST", "/v2/models/lenet/infer", body, headers)
            assert status == 200
            return decode_binary(h, resp)

        with ThreadPoolExecutor(24) as pool:
            results = list(pool.map(call, inputs))
        for x, got in zip(inputs, results, strict=True):
            np.testing.assert_allclose(got, model.predict(x)["logits"], rtol=1e-5, atol=1e-6)
        metrics = request(url, "GET", "/metrics")[2].decode()
        count = float(metrics.split('kit_batch_size_count{model="lenet"} ')[1].split()[0])
        rows = float(metrics.split('kit_batch_size_sum{model="lenet"} ')[1].split()[0])
        assert rows == sum(len(x) for x in inputs)
        assert count < len(inputs), "no two requests were merged into one run"
        assert 'kit_requests_total{model="lenet",status="200"} 24.0' in metrics
        assert "kit_queue_seconds_bucket" in metrics and "kit_compute_seconds_bucket" in metrics


@pytest.mark.parametrize("inline_seconds", [0.0, 1.0])
def test_batching_off_still_serves(model: kr.Model, inline_seconds: float) -> None:
    config = ServerConfig(batching=False, inline_seconds=inline_seconds)
    with running_server({"lenet": model}, config) as (url, _):
        x = RNG.standard_normal((3, 1, 28, 28), dtype=np.float32)
        body, headers = binary_body(x)
        status, h, resp = request(url, "POST", "/v2/models/lenet/infer", body, headers)
        assert status == 200
        np.testing.assert_array_equal(decode_binary(h, resp), model.predict(x)["logits"])


def test_inline_rows_follow_the_measured_cost(model: kr.Model) -> None:
    from kit.server.served import inline_rows as _inline_rows

    assert _inline_rows(model, 0.0) == 0
    assert _inline_rows(model, 10.0) > 1000  # lenet answers a row in well under 10 ms
    assert 0 < _inline_rows(model, 0.01) < _inline_rows(model, 10.0)


@pytest.mark.parametrize(
    ("low", "high", "multiple", "timed"),
    [
        (1, 64, 1, (1, 8)),
        (1, 4, 1, (1, 4)),
        (2, 64, 2, (2, 8)),
        (5, 100, 5, (5, 5)),
        (16, 64, 16, (16, 16)),
    ],
)
def test_the_inline_estimate_times_only_batches_the_rule_allows(
    low: int, high: int, multiple: int, timed: tuple[int, int]
) -> None:
    from types import SimpleNamespace

    from kit.artifact.shapes import AxisRule, ShapeRules
    from kit.server.served import _timed_batches

    rule = AxisRule(low, high, multiple)
    model = SimpleNamespace(rules=ShapeRules(batch=rule))
    assert _timed_batches(model) == timed  # type: ignore[arg-type]
    assert all(rule.allows(size) for size in timed)


@pytest.mark.parametrize(
    ("inline", "large", "on_loop"), [(0, 0, False), (0, 1 << 30, True), (64, 0, True)]
)
def test_a_large_batch_is_joined_where_it_runs(
    model: kr.Model, monkeypatch: pytest.MonkeyPatch, inline: int, large: int, on_loop: bool
) -> None:
    """A large batch for a worker thread is joined there: the copy (19 MB for 32 AlexNet
    images) leaves the event loop. A small one, or one run on the loop, is joined on the
    loop."""
    import asyncio
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from kit.server import served as served_module
    from kit.server.batching import Batch
    from kit.server.metrics import Metrics
    from kit.server.served import ServedModel

    monkeypatch.setattr(served_module, "THREAD_JOIN_BYTES", large)

    joined_on: list[threading.Thread] = []

    def join(parts: list[np.ndarray]) -> np.ndarray:
        joined_on.append(threading.current_thread())
        return np.concatenate(parts)

    parts = [RNG.standard_normal((n, 1, 28, 28), dtype=np.float32) for n in (1, 2)]
    with ThreadPoolExecutor(1) as pool:
        served = ServedModel("lenet", model, Metrics(), pool, inline=inline)
        out = asyncio.run(served.run(Batch(parts, join)))
    np.testing.assert_array_equal(out["logits"], model.predict(np.concatenate(parts))["logits"])
    assert (joined_on == [threading.main_thread()]) is on_loop and len(joined_on) == 1


def test_a_model_slower_than_the_budget_never_runs_on_the_event_loop(model: kr.Model) -> None:
    from kit.server.served import inline_rows as _inline_rows

    class Slow:  # a model whose fixed cost alone (20 ms) is past a 10 ms budget
        example_shape = model.example_shape
        rules = None

        def predict(self, x: np.ndarray) -> None:
            time.sleep(0.02 + 0.001 * len(x))

    assert _inline_rows(Slow(), 0.01) == 0  # type: ignore[arg-type]
    # 20 ms fixed + 1 ms a row: a 40 ms budget holds about 20 rows (sleep only overshoots)
    assert 10 <= _inline_rows(Slow(), 0.04) <= 20  # type: ignore[arg-type]


def test_graceful_shutdown_finishes_in_flight_requests(lenet_export: Path) -> None:
    slow = kr.load(lenet_export)
    original = slow.predict

    def predict(x: np.ndarray, *, validate: bool = True) -> dict[str, np.ndarray]:
        time.sleep(0.5)
        return original(x, validate=validate)

    slow.predict = predict  # type: ignore[method-assign]
    with running_server({"lenet": slow}) as (url, server):
        result: dict[str, int] = {}
        body, headers = binary_body(np.zeros((1, 1, 28, 28), np.float32))
        t = threading.Thread(
            target=lambda: result.update(
                status=request(url, "POST", "/v2/models/lenet/infer", body, headers)[0]
            )
        )
        t.start()
        time.sleep(0.2)
        server.should_exit = True
        t.join(10)
    assert result.get("status") == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.slow
def test_load_10k_requests_over_64_connections(lenet_export: Path, tmp_path: Path) -> None:
    """`kit serve` in its own process: 10,000 requests, 64 keep-alive connections, no errors."""
    import http.client

    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kit",
            "serve",
            str(lenet_export),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if request(url, "GET", "/v2/health/ready")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, (
                "server did not become ready"
            )
            time.sleep(0.1)
        x = RNG.standard_normal((1, 1, 28, 28), dtype=np.float32)
        body, headers = binary_body(x)

        def worker(n: int) -> tuple[int, int]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            ok = bad = 0
            for _ in range(n):
                conn.request("POST", "/v2/models/lenet/infer", body, headers)
                resp = conn.getresponse()
                resp.read()
                ok, bad = (ok + 1, bad) if resp.status == 200 else (ok, bad + 1)
            conn.close()
            return ok, bad

        # warm-up round, then measure memory around the real load
        worker(200)
        before = _rss_kib(proc.pid)
        per = [10_000 // 64 + (1 if i < 10_000 % 64 else 0) for i in range(64)]
        with ThreadPoolExecutor(64) as pool:
            results = list(pool.map(worker, per))
        after = _rss_kib(proc.pid)
        ok = sum(r[0] for r in results)
        bad = sum(r[1] for r in results)
        growth_mib = (after - before) / 1024
        print(
            f"\nload: {ok} ok, {bad} errors, server RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB ({growth_mib:+.1f} MiB)"
        )
        assert ok == 10_000 and bad == 0
        assert growth_mib < 64, f"server memory grew by {growth_mib:.1f} MiB over 10k requests"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    # uvicorn finishes in-flight work, then re-raises the SIGTERM it caught (exit -15)
    output = (proc.stdout.read() if proc.stdout else b"").decode()
    assert proc.returncode in (0, -signal.SIGTERM) and "Traceback" not in output, output[-2000:]


def test_connections_have_tcp_nodelay(model: kr.Model) -> None:
    """Without TCP_NODELAY a small response can stall ~40 ms (Nagle + delayed ACK)."""
    import http.client

    with running_server({"lenet": model}) as (url, server):
        host, port = url.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", "/v2/health/live")
        conn.getresponse().read()
        transports = [c.transport for c in server.server_state.connections]
        assert transports, "no open server-side connection to inspect"
        for transport in transports:
            sock = transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        conn.close()
