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
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..datatypes import JS_DTYPES
from ..errors import KitError, RuntimeMissing
from ._explain import explain
from .packages import ORT_JS_VERSION, WEB_FILES, find_browser, install_web_files

__all__ = ["BROWSER_RUNTIME", "BrowserError", "BrowserSession", "browser_ready", "run_in_browser"]

#: how reports name this runtime
BROWSER_RUNTIME = f"onnxruntime-web {ORT_JS_VERSION} (wasm, chromium)"


#: runs one batch in the page (the session made on the first); outputs come back as base64
_RUN = """async ({file, shape}) => {
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
  if (!window.kitSession) {
    try {
      window.kitSession = await ort.InferenceSession.create('/model');
    } catch (err) {
      return { error: `cannot load the model: ${err.message || err}` };
    }
  }
  const session = window.kitSession;
  const data = new Float32Array(await (await fetch(file)).arrayBuffer());
  const input = new ort.Tensor('float32', data, shape);
  const outputs = await session.run({ [session.inputNames[0]]: input });
  return { outputs: session.outputNames.map((name) => {
    const t = outputs[name];
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    return { name, type: t.type, dims: t.dims, data: base64(bytes) };
  }) };
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


def _site(root: Path, model: Path) -> None:
    """Lay out the origin's files in ``root``: onnxruntime-web's, the model, a page."""
    (root / "ort").mkdir()
    for name in WEB_FILES:
        (root / "ort" / name).symlink_to(install_web_files(quiet=True) / name)
    (root / "model").symlink_to(model.resolve())
    (root / "index.html").write_text("<!doctype html><title>kit</title>")
    (root / "favicon.ico").write_bytes(b"")


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


class BrowserSession:
    """``model`` in one page of a headless system Chromium: ``run`` a batch as it comes,
    ``close`` to end the browser, its origin and their files.

    playwright's sync API belongs to the thread that started it (and refuses one with an
    event loop running), so one worker thread of the session's own does all of it.

    Raises (from ``run``):
        RuntimeMissing: no system Chromium, or playwright is not installed.
        BrowserError: onnxruntime-web refused the model or an input.
    """

    def __init__(self, model: Path) -> None:
        self.model = model
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kit-browser")
        self._stack = ExitStack()
        self._page: Any = None
        self._root: Path | None = None
        self._count = 0

    def _open(self) -> Any:
        from playwright.sync_api import sync_playwright

        executable = browser_ready()
        self._root = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="kit-web-")))
        _site(self._root, self.model)
        url = self._stack.enter_context(_origin(self._root))
        playwright = self._stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        self._stack.callback(browser.close)
        self._page = browser.new_page()
        self._page.goto(url + "/index.html")
        return self._page

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        page = self._page or self._open()
        assert self._root is not None
        self._count += 1
        name = f"in-{self._count}"
        np.ascontiguousarray(x, dtype="<f4").tofile(self._root / name)
        try:
            result = dict(page.evaluate(_RUN, {"file": f"/{name}", "shape": list(x.shape)}))
        finally:
            (self._root / name).unlink(missing_ok=True)
        if "error" in result:
            raise BrowserError(explain(BROWSER_RUNTIME, result["error"], self.model))
        return [
            np.frombuffer(base64.b64decode(o["data"]), JS_DTYPES[o["type"]]).reshape(o["dims"])
            for o in result["outputs"]
        ]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Every output for the float32 batch ``x``."""
        return self._thread.submit(self._run, x).result()

    def close(self) -> None:
        """End the browser, the origin and their files (and the session's thread)."""
        self._thread.submit(self._stack.close).result()
        self._page = None
        self._thread.shutdown()

    def __enter__(self) -> BrowserSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_in_browser(model: Path, batches: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
    """Every output of ``model`` for each float32 batch, in one onnxruntime-web page."""
    with BrowserSession(model) as session:
        return [session.run(x) for x in batches]
