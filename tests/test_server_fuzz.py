"""Property-based fuzzing of the whole request surface of ``kit serve``.

hypothesis draws request bodies (JSON structure and types at every level, binary
tensors with true and false header lengths and sizes, parameters), headers, paths and
methods. Whatever arrives, the server must answer below 500 with the protocol's
``{"error": ...}`` body for every error, never hang, and still answer a valid request
correctly afterwards.
"""

from __future__ import annotations

import contextlib
import json
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import kit.runtime as kr
from kit.server.app import ServerConfig

from .server_utils import binary_body, decode_binary, request, running_server

FUZZ = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,  # the same cases on every run: a CI failure reproduces locally
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=16,
)
# float32's extremes and numbers beyond what float32 (or a double) can hold
numbers = (
    st.floats(width=32, allow_nan=True, allow_infinity=True)
    | st.integers()
    | st.sampled_from([3.5e38, 1e308, 2**128, 10**309, -(10**400)])
)
input_entry = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["input", "x", ""]) | json_values,
        "shape": st.lists(st.integers(-2, 40), max_size=5) | st.just([1, 1, 28, 28]) | json_values,
        "datatype": st.sampled_from(["FP32", "FP16", "INT64", "BYTES"]) | json_values,
        "data": st.lists(numbers, max_size=800) | st.just([0.5] * 784) | json_values,
        "parameters": st.dictionaries(
            st.sampled_from(["binary_data_size", "x"]), st.integers(-5, 5000) | json_values
        )
        | json_values,
    },
)
output_entry = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["logits", "nope"]) | json_values,
        "parameters": st.dictionaries(st.sampled_from(["binary_data", "x"]), json_values)
        | json_values,
    },
)
infer_request = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "inputs": st.lists(input_entry, max_size=3) | json_values,
        "outputs": st.lists(output_entry, max_size=3) | json_values,
        "parameters": st.dictionaries(st.sampled_from(["binary_data_output", "x"]), json_values)
        | json_values,
    },
)
VALID_INPUT = {"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.5] * 784}


def _request(**changes: Any) -> dict[str, Any]:
    """A valid request with ``changes`` (``None`` drops a field); top-level keys start with _."""
    entry = {k: v for k, v in {**VALID_INPUT, **changes}.items() if not k.startswith("_")}
    body: dict[str, Any] = {"inputs": [{k: v for k, v in entry.items() if v is not None}]}
    body.update({k[1:]: v for k, v in changes.items() if k.startswith("_")})
    return body


# a valid request with one part changed: reaches the checks deep in the parser
near_valid = st.one_of(
    st.builds(_request, name=st.none() | json_values),
    st.builds(_request, shape=st.none() | st.lists(st.integers(-2, 10**6), max_size=5)),
    st.builds(_request, datatype=st.none() | st.sampled_from(["FP16", "INT64", "BYTES"])),
    st.builds(
        _request,
        data=st.builds(
            lambda v, i: [0.5] * i + [v] + [0.5] * (783 - i), numbers, st.integers(0, 783)
        )
        | st.lists(numbers, max_size=8)
        | json_values,
    ),
    st.builds(
        _request,
        parameters=st.fixed_dictionaries({"binary_data_size": st.integers(-5, 5000) | json_values}),
    ),
    st.builds(_request, _outputs=st.lists(output_entry, max_size=3) | json_values),
    st.builds(_request, _parameters=json_values, _id=json_values),
)
PATH_PARTS = ("v2", "models", "lenet", "versions", "1", "2", "infer", "ready", "config")
PATH_PARTS += ("health", "live", "metrics", "..", "%2F", "%00", "nope", "")
segments = st.sampled_from(PATH_PARTS) | st.text(max_size=5).map(
    lambda t: urllib.parse.quote(t, safe="")
)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])


@pytest.fixture(scope="module")
def model(lenet_export: Path) -> kr.Model:
    return kr.load(lenet_export, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def server(model: kr.Model) -> Iterator[str]:
    with running_server({"lenet": model}, ServerConfig(max_body_bytes=1 << 20)) as (url, _):
        yield url


def _assert_protocol_answer(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status < 500, (status, body[:300])
    if status >= 400:
        assert headers["content-type"].startswith("application/json"), headers
        assert isinstance(json.loads(body)["error"], str)


def _assert_still_serves(server: str, model: kr.Model) -> None:
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28), dtype=np.float32)
    body, headers = binary_body(x)
    status, resp_headers, resp = request(server, "POST", "/v2/models/lenet/infer", body, headers)
    assert status == 200
    np.testing.assert_array_equal(decode_binary(resp_headers, resp), model.predict(x)["logits"])


@FUZZ
@given(payload=near_valid | infer_request | json_values)
def test_any_json_body(server: str, payload: Any) -> None:
    body = json.dumps(payload).encode()
    _assert_protocol_answer(*request(server, "POST", "/v2/models/lenet/infer", body))


@FUZZ
@given(
    head=infer_request,
    tensor=st.binary(max_size=4000),
    header_length=st.none() | st.integers(-10, 9000) | st.text(max_size=6) | st.just("true"),
)
def test_any_binary_body(server: str, head: Any, tensor: bytes, header_length: Any) -> None:
    header = json.dumps(head).encode()
    value = len(header) if header_length == "true" else header_length
    headers = {} if value is None else {"Inference-Header-Content-Length": str(value)}
    try:
        status, resp_headers, body = request(
            server, "POST", "/v2/models/lenet/infer", header + tensor, headers
        )
    except (UnicodeEncodeError, ValueError):  # http.client refuses such header values itself
        return
    _assert_protocol_answer(status, resp_headers, body)


@FUZZ
@given(method=methods, parts=st.lists(segments, max_size=7), body=st.binary(max_size=64))
def test_any_path_and_method(server: str, method: str, parts: list[str], body: bytes) -> None:
    path = "/" + "/".join(parts)
    _assert_protocol_answer(*request(server, method, path, body or None))


# request heads: bytes of any kind, or a real request line cut or spoiled anywhere
heads = st.binary(max_size=300) | st.builds(
    lambda cut, junk: b"POST /v2/models/lenet/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"[:cut] + junk,
    st.integers(0, 60),
    st.binary(max_size=40),
)


def _on_the_wire(url: str, data: bytes) -> bytes:
    """Send ``data`` on a new connection; what comes back before the server ends the stream
    or falls silent for a second (a request it took as whole, on a kept-alive connection)."""
    host, port = url.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(data)
        s.settimeout(1.0)
        chunks = []
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


@FUZZ
@given(head=heads)
def test_any_bytes_as_a_request_head(server: str, head: bytes) -> None:
    """Whatever the request line and headers hold, the answer is HTTP, below 500, with the
    protocol's JSON error for an error (a head the parser takes whole may get any page)."""
    answer = _on_the_wire(server, head + b"\r\n\r\n")
    if not head.strip(b"\r\n"):  # blank lines before a request are skipped: none came yet
        assert answer == b""
        return
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    status = int(answer[9:12])
    assert status < 500, answer[:300]
    top, _, body = answer.partition(b"\r\n\r\n")
    if status >= 400 and b"content-type: application/json" in top.lower():
        assert isinstance(json.loads(body[: int(_header(top, b"content-length"))])["error"], str)


def _header(top: bytes, name: bytes) -> bytes:
    for line in top.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    raise AssertionError(f"no {name!r} in {top[:300]!r}")


def test_the_server_answers_correctly_after_the_fuzzing(server: str, model: kr.Model) -> None:
    """Runs after the fuzz tests above (file order): the server kept serving through them."""
    _assert_still_serves(server, model)


@FUZZ
@given(values=st.lists(numbers, max_size=64) | json_values)
@example(values=[2**63, 2**64 - 1, 1e308, 5e-324, -0.0, 3])
@example(values=[0.5, -(2**63) - 1])
@example(values=[[0.5], 0.5])
def test_the_fast_json_path_agrees_with_the_strict_one(values: Any) -> None:
    """simdjson's flat-list path either declines (None) or gives exactly what the strict
    msgspec path gives; nested and non-numeric data always take the strict path."""
    import warnings

    from kit.server.protocol import _flat_numbers

    raw = json.dumps(values, allow_nan=False) if _json_safe(values) else None
    if raw is None:
        return
    fast = _flat_numbers(raw.encode())
    flat_numbers = isinstance(values, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    )
    if not flat_numbers:
        assert fast is None
        return
    if fast is None:  # only an integer past 64 bits sends a flat list to the strict path
        assert any(isinstance(v, int) and not -(2**63) <= v < 2**64 for v in values)
        return
    with warnings.catch_warnings(), np.errstate(over="ignore"):
        warnings.simplefilter("ignore")
        expected = np.array([float(v) for v in values], np.float64).astype(np.float32)
    assert fast.dtype == np.float32 and np.array_equal(fast, expected)


def _json_safe(value: Any) -> bool:
    """JSON can carry it (no NaN or infinity anywhere)."""
    if isinstance(value, float):
        return value == value and abs(value) != float("inf")
    if isinstance(value, list):
        return all(_json_safe(v) for v in value)
    if isinstance(value, dict):
        return all(_json_safe(v) for v in value.values())
    return True
