"""ONNX and ORT files run by onnxruntime-node, the runtime Node.js services embed.

A :class:`NodeSession` is one Node.js process (kit's ``runner.mjs``) that loads the file once
and answers batches as they come until it closes; tensors travel as raw little-endian
files, never as JSON numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._child import ChildSession
from ..datatypes import JS_DTYPES
from ..errors import KitError
from ._explain import explain
from .packages import ORT_JS_VERSION, install_node_package, node_version

__all__ = ["NODE_RUNTIME", "NodeError", "NodeSession", "run_in_node"]

RUNNER = Path(__file__).with_name("runner.mjs")
#: how reports name this runtime
NODE_RUNTIME = f"onnxruntime-node {ORT_JS_VERSION} (cpu)"


class NodeError(KitError):
    """onnxruntime-node could not load or run a model (its own words are in the message)."""


def _decode(o: dict[str, Any]) -> np.ndarray:
    return np.fromfile(o["file"], dtype=JS_DTYPES[o["type"]]).reshape(o["dims"])


class NodeSession(ChildSession):
    """``model`` in one onnxruntime-node process: ``run`` a batch, ``close`` to end it.

    Raises (from ``run``):
        RuntimeMissing: Node.js or npm is missing (from :func:`install_node_package`).
        NodeError: onnxruntime-node refused the model or an input.
    """

    def __init__(self, model: Path, *, input_name: str = "input") -> None:
        def command(work: Path) -> list[str]:
            modules = install_node_package()
            return ["node", str(RUNNER), str(modules), str(model.resolve()), input_name, str(work)]

        def failure(said: str, stopped: bool) -> Exception:
            if stopped:
                return NodeError(f"Node.js ({node_version()}) {said}")
            return NodeError(explain(NODE_RUNTIME, said, model))

        super().__init__(command, _decode, failure)


def run_in_node(
    model: Path, batches: Sequence[np.ndarray], *, input_name: str = "input"
) -> list[list[np.ndarray]]:
    """Every output of ``model`` for each float32 batch, in one onnxruntime-node process."""
    with NodeSession(model, input_name=input_name) as session:
        return [session.run(x) for x in batches]
