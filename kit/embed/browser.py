"""ONNX files run by onnxruntime-web (WebAssembly) in a headless system Chromium.

A throwaway local origin serves onnxruntime-web's files, the model and each input batch as
raw little-endian float32; the page runs them and hands the outputs back as raw bytes
(base64), never as JSON numbers. playwright drives the browser (``pip install playwright``;
the browser is the system's Chromium, never a download).
"""

from __future__ import annotations

import base64
import functools
import http.server
import importlib.util
import tempfile
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..datatypes import JS_DTYPES
from ..errors import KitError
from ._explain import explain
from .packages import ORT_JS_VERSION, WEB_FILES, RuntimeMissing, find_browser, install_web_files

__all__ = ["BROWSER_RUNTIME", "BrowserError", "browser_ready", "run_in_browser"]

#: how reports name this runtime
BROWSER_RUNTIME = f"onnxruntime-web {ORT_JS_VERSION} (wasm, chromium)"


#: runs every batch in the page; outputs come back as base64 of their bytes
_RUN = """async ({batches}) => {
  const ort = await import('/ort/ort.wasm.min.mjs');
  ort.env.wasm.wasmPaths = location.origin + '/ort/';
  ort.env.wasm.numThreads = 1;
  const base64 = (bytes) => {
    let text = '';
    for (let i = 0; i < bytes.length; i += 0x8000) {
      text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    }
    return btoa(text);
  };
  let session;
  try {
    session = await ort.InferenceSession.create('/model');
  } catch (err) {
    return { error: `cannot load the model: ${err.message || err}` };
  }
  const answers = [];
  for (const batch of batches) {
    const data = new Float32Array(await (await fetch(batch.file)).arrayBuffer());
    const input = new ort.Tensor('float32', data, batch.shape);
    const outputs = await session.run({ [session.inputNames[0]]: input });
    answers.push(session.outputNames.map((name) => {
      const t = outputs[name];
      const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      return { name, type: t.type, dims: t.dims, data: base64(bytes) };
    }));
  }
  return { answers };
}"""


class BrowserError(KitError):
    """onnxruntime-web could not load or run a model (its own words are in the message)."""


_TYPES = {".mjs": "text/javascript", ".wasm": "application/wasm", ".html": "text/html"}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def guess_type(self, path: Any) -> str:  # ES modules and wasm need their own types
        return _TYPES.get(Path(str(path)).suffix, "application/octet-stream")

    def log_message(self, *args: Any) -> None:  # the origin is an implementation detail
        pass


@contextmanager
def _origin(root: Path) -> Iterator[str]:
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _site(root: Path, model: Path, batches: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    """Lay out the origin's files in ``root``; returns the batches' descriptions."""
    (root / "ort").mkdir()
    for name in WEB_FILES:
        (root / "ort" / name).symlink_to(install_web_files(quiet=True) / name)
    (root / "model").symlink_to(model.resolve())
    (root / "index.html").write_text("<!doctype html><title>kit</title>")
    (root / "favicon.ico").write_bytes(b"")
    described = []
    for i, x in enumerate(batches):
        np.ascontiguousarray(x, dtype="<f4").tofile(root / f"in-{i}")
        described.append({"file": f"/in-{i}", "shape": list(x.shape)})
    return described


def browser_ready() -> str:
    """The system Chromium's path, once onnxruntime-web's files are in kit's cache.

    Raises:
        RuntimeMissing: no system Chromium, or playwright is not installed.
        KitError: the onnxruntime-web files cannot be fetched.
    """
    executable = find_browser()
    if executable is None:
        raise RuntimeMissing(
            "No system Chromium found; apt-get install chromium (or set $KIT_CHROMIUM)."
        )
    if importlib.util.find_spec("playwright") is None:
        raise RuntimeMissing("The browser runtime needs playwright: pip install playwright.")
    install_web_files(quiet=True)
    return executable


def run_in_browser(model: Path, batches: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
    """Every output of ``model`` for each float32 batch, computed by onnxruntime-web.

    Raises:
        RuntimeMissing: no system Chromium, or playwright is not installed.
        BrowserError: onnxruntime-web refused the model or an input.
    """
    executable = browser_ready()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="kit-web-") as tmp, _origin(Path(tmp)) as url:
        described = _site(Path(tmp), model, batches)
        # its own thread: playwright's sync API refuses a thread with an event loop running
        with ThreadPoolExecutor(max_workers=1) as pool:
            result = pool.submit(_evaluate, sync_playwright, executable, url, described).result()
    if "error" in result:
        raise BrowserError(explain(BROWSER_RUNTIME, result["error"], model))
    return [
        [
            np.frombuffer(base64.b64decode(o["data"]), dtype=JS_DTYPES[o["type"]]).reshape(
                o["dims"]
            )
            for o in outputs
        ]
        for outputs in result["answers"]
    ]


def _evaluate(
    sync_playwright: Any, executable: str, url: str, described: list[dict[str, Any]]
) -> dict[str, Any]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(url + "/index.html")
            return dict(page.evaluate(_RUN, {"batches": described}))
        finally:
            browser.close()
