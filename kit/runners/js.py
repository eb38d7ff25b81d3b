"""ONNX and ORT files in the JavaScript runtimes apps embed: onnxruntime-node in Node.js and
onnxruntime-web's wasm in a headless system Chromium.

One process (or page) per file answers every input the caller announced
(``RunnerOptions.inputs``) at the first call; later calls look theirs up, because starting
one per batch would cost more than the batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import ArtifactFile
from ..embed.browser import BROWSER_RUNTIME, BrowserError, browser_ready, run_in_browser
from ..embed.node import NODE_RUNTIME, NodeError, run_in_node
from ..embed.packages import install_node_package
from ..parity import Runner
from .registry import Backend, RunnerOptions, artifact_label, register

__all__ = ["prefetched"]

RunAll = Callable[[Path, Sequence[np.ndarray]], list[list[np.ndarray]]]


def prefetched(
    run_all: RunAll, failure: type[Exception], path: Path, inputs: Sequence[np.ndarray]
) -> Callable[[np.ndarray], list[np.ndarray]]:
    answers: dict[int, list[np.ndarray]] = {}
    failed: list[Exception] = []

    def run(x: np.ndarray) -> list[np.ndarray]:
        if not answers and not failed and inputs:
            try:
                answers.update(zip(map(id, inputs), run_all(path, inputs), strict=True))
            except failure as exc:
                failed.append(exc)
        if failed:
            raise failed[0]
        return answers.get(id(x)) or run_all(path, [x])[0]

    return run


def _maker(key: str, label: str, run_all: RunAll, failure: type[Exception]) -> Any:
    def make(path: Path, artifact: ArtifactFile, options: RunnerOptions) -> list[Runner]:
        run = prefetched(run_all, failure, path, options.inputs)
        precision = artifact.precision
        return [Runner(artifact_label(artifact), label, run, precision=precision, key=key)]

    return make


def _node_ready() -> None:
    install_node_package()


def _browser_ready() -> None:
    browser_ready()


register(
    Backend(
        "node",
        "node",
        ("onnx", "ort"),
        _maker("node", NODE_RUNTIME, run_in_node, NodeError),
        _node_ready,
    )
)
register(
    Backend(
        "browser",
        "browser",
        ("onnx", "ort"),
        _maker("browser", BROWSER_RUNTIME, run_in_browser, BrowserError),
        _browser_ready,
    )
)
