"""The page ``kit serve`` shows at ``/``: its files, onnxruntime-web's, and each model's ONNX
file, so the page can run the very file the server runs."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

from ..artifact import MANIFEST, RESULTS_DIR
from ..embed.packages import WEB_FILES, web_dir
from .protocol import ProtocolError

#: the page ``kit serve`` shows at ``/`` (its HTML and script ship inside kit)
PAGE_DIR = Path(__file__).with_name("web")

__all__ = ["page_routes"]


class _WholeFile(FileResponse):
    """A file, always whole: Range headers are ignored (HTTP allows it), so a malformed or
    unsatisfiable range never becomes an error outside the protocol's JSON form."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"range"]
        await super().__call__({**scope, "headers": headers}, receive, send)


async def _page(request: Request) -> Response:
    return _WholeFile(PAGE_DIR / "index.html", media_type="text/html")


async def _script(request: Request) -> Response:
    return _WholeFile(PAGE_DIR / "page.js", media_type="text/javascript")


async def _ort_file(request: Request) -> Response:
    """onnxruntime-web's files from kit's cache (``kit doctor --install web``)."""
    name = request.path_params["file"]
    path = web_dir() / name
    if name not in WEB_FILES or not path.is_file():
        raise ProtocolError(
            f"No onnxruntime-web file {name!r} here; run `kit doctor --install web`.", 404
        )
    kind = "application/wasm" if name.endswith(".wasm") else "text/javascript"
    return _WholeFile(path, media_type=kind)


class _Reports:
    """Each model's report page, rendered one at a time and kept until its manifest or
    saved results change (or a minute passes, so its ages stay true): a client asking again
    and again costs one render (and one pass over the files) a minute, never one per
    request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pages: dict[Path, tuple[tuple[Any, ...], str]] = {}

    def page(self, directory: Path) -> str:
        """The page, or a protocol error: 503 while files change under it (a writer is
        saving a result: retry), never a 5xx of another kind nor a traceback."""
        from ..errors import KitError, first_line

        try:
            key = _state(directory)
            with self._lock:
                kept = self._pages.get(directory)
                if kept is None or kept[0] != key:
                    kept = key, _render(directory)
                    self._pages[directory] = kept
                return kept[1]
        except (OSError, KitError) as exc:
            raise ProtocolError(
                f"The report cannot be built right now ({first_line(exc)}); retry.", 503
            ) from None


def _render(directory: Path) -> str:
    """The page, every file hashed again: the folder may have changed since kit serve loaded
    it, and the page is about the folder (rendered at most once a minute per model)."""
    from ..report import build_report, render_report

    return render_report(build_report(directory))


def _state(directory: Path) -> tuple[Any, ...]:
    """What a report page depends on: the manifest, the saved results, the minute (a file
    removed while this looks is simply not there)."""
    folder = directory / RESULTS_DIR
    names = [] if folder.is_symlink() or not folder.is_dir() else sorted(os.listdir(folder))
    stats = []
    for path in [directory / MANIFEST, *(folder / n for n in names if n.endswith(".json"))]:
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        stats.append((path.name, info.st_mtime_ns, info.st_size))
    return (int(time.time() // 60), *stats)


def page_routes(model_path: Callable[[Request], Any]) -> list[Route]:
    """The page's routes; ``model_path(request)`` is the served model's ONNX file (or
    raises the protocol's 404)."""

    async def model_file(request: Request) -> Response:
        return _WholeFile(model_path(request), media_type="application/octet-stream")

    reports = _Reports()

    async def report(request: Request) -> Response:
        """The served model's ``kit report``, built from its export folder."""
        directory = Path(model_path(request)).parent
        page = await run_in_threadpool(reports.page, directory)
        from ..report import CSP

        return HTMLResponse(page, headers={"Content-Security-Policy": CSP})

    return [
        Route("/", _page),
        Route("/ui/page.js", _script),
        Route("/ui/ort/{file}", _ort_file),
        Route("/ui/models/{model}/model.onnx", model_file),
        Route("/report/{model}", report),
    ]
