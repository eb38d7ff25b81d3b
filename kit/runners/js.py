"""ONNX and ORT files in the JavaScript runtimes apps embed: onnxruntime-node in Node.js and
onnxruntime-web's wasm in a headless system Chromium.

Each runner holds one session (a Node.js process, a browser page) that loads the file once
and answers batches as they come; closing the runner ends it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..artifact import ArtifactFile
from ..embed.browser import BROWSER_RUNTIME, BrowserSession, browser_ready
from ..embed.node import NODE_RUNTIME, NodeSession
from ..embed.packages import install_node_package
from ..parity import Runner
from .registry import Backend, RunnerOptions, artifact_label, register

__all__: list[str] = []


def _maker(key: str, label: str, session: Callable[[Path], Any]) -> Any:
    def make(path: Path, artifact: ArtifactFile, options: RunnerOptions) -> list[Runner]:
        opened = session(path)
        name, precision = artifact_label(artifact), artifact.precision
        return [Runner(name, label, opened.run, precision, key=key, closer=opened.close)]

    return make


def _node_ready() -> None:
    install_node_package()


def _browser_ready() -> None:
    browser_ready()


register(Backend("node", "node", ("onnx", "ort"), _maker("node", NODE_RUNTIME, NodeSession),
                 _node_ready))  # fmt: skip
register(
    Backend(
        "browser",
        "browser",
        ("onnx", "ort"),
        _maker("browser", BROWSER_RUNTIME, BrowserSession),
        _browser_ready,
    )
)
