"""The fast paths that lean on private or platform interfaces (kit._native).

Each test fails loudly when a dependency changes underneath: then the fast path has
silently become the slow one, and kit._native needs a look.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import kit.runtime as kr
from kit._native import compiled_run, keep_freed_memory
from kit.artifact import MODEL_FILE


class _PublicOnly:
    """An InferenceSession seen through its public methods only."""

    def __init__(self, session: object) -> None:
        self._session = session

    def __getattr__(self, name: str) -> object:
        if name == "_sess":
            raise AttributeError(name)
        return getattr(self._session, name)


def test_onnxruntime_still_exposes_its_compiled_run(lenet_export: Path) -> None:
    session = ort.InferenceSession(
        str(lenet_export / MODEL_FILE), providers=["CPUExecutionProvider"]
    )
    run = compiled_run(session)
    assert run is not None, f"onnxruntime {ort.__version__} no longer has _sess.run"
    x = np.random.default_rng(6).standard_normal((3, 1, 28, 28), dtype=np.float32)
    (fast,) = run(["logits"], {"input": x}, None)
    np.testing.assert_array_equal(fast, session.run(None, {"input": x})[0])
    assert compiled_run(_PublicOnly(session)) is None


def test_predict_gives_the_same_answers_without_the_compiled_run(lenet_export: Path) -> None:
    model = kr.load(lenet_export)
    x = np.random.default_rng(6).standard_normal((3, 1, 28, 28), dtype=np.float32)
    public = model.session.run(None, {"input": x})[0]
    np.testing.assert_array_equal(model.predict(x)["logits"], public)
    wrapped = kr.Model(_PublicOnly(model.session), model.path)  # type: ignore[arg-type]
    np.testing.assert_array_equal(wrapped.predict(x)["logits"], public)
    with pytest.raises(kr.InputError, match="dtype float64"):
        wrapped.predict(x.astype(np.float64))


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="mallopt is glibc's; elsewhere keep_freed_memory() changes nothing",
)
def test_glibc_still_takes_the_allocator_settings() -> None:
    assert keep_freed_memory(), "glibc refused mallopt: training steps fault pages in again"


def test_uvicorn_still_has_the_protocol_kit_extends() -> None:
    """kit.server._uvicorn subclasses uvicorn's httptools protocol (one-packet responses,
    JSON for requests HTTP itself rejects, header limits and timeouts); the methods it
    overrides must still exist."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from kit.server._uvicorn import http_protocol
    from kit.server.config import ServerConfig

    protocol = http_protocol(ServerConfig())
    assert isinstance(protocol, type) and issubclass(protocol, HttpToolsProtocol)
    overridden = ("connection_made", "connection_lost", "send_400_response", "on_message_begin")
    overridden += ("on_url", "on_header", "on_headers_complete", "on_body", "on_message_complete")
    overridden += ("data_received",)
    for name in (*overridden, "on_response_complete"):
        assert callable(getattr(HttpToolsProtocol, name, None)), f"uvicorn has no {name}"
