"""ONNX and ORT files run by onnxruntime-node, the runtime Node.js services embed.

Each call starts one Node.js process (kit's ``runner.mjs``) that loads the file once and
runs every batch given; tensors travel as raw little-endian files, never as JSON numbers.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..datatypes import JS_DTYPES
from ..errors import KitError
from ._explain import explain
from .packages import ORT_JS_VERSION, install_node_package, node_version

__all__ = ["NODE_RUNTIME", "NodeError", "run_in_node"]

RUNNER = Path(__file__).with_name("runner.mjs")
#: how reports name this runtime
NODE_RUNTIME = f"onnxruntime-node {ORT_JS_VERSION} (cpu)"


class NodeError(KitError):
    """onnxruntime-node could not load or run a model (its own words are in the message)."""


def run_in_node(
    model: Path, batches: Sequence[np.ndarray], *, input_name: str = "input"
) -> list[list[np.ndarray]]:
    """Every output of ``model`` for each float32 batch, computed by onnxruntime-node.

    Raises:
        RuntimeMissing: Node.js or npm is missing (from :func:`install_node_package`).
        NodeError: onnxruntime-node refused the model or an input.
    """
    modules = install_node_package()
    with tempfile.TemporaryDirectory(prefix="kit-node-") as tmp:
        work = Path(tmp)
        job = {"model": str(model.resolve()), "input": input_name, "out_dir": tmp, "batches": []}
        for i, x in enumerate(batches):
            path = work / f"in-{i}.bin"
            np.ascontiguousarray(x, dtype="<f4").tofile(path)
            job["batches"].append({"file": str(path), "shape": list(x.shape)})  # type: ignore[attr-defined]
        (work / "job.json").write_text(json.dumps(job))
        done = subprocess.run(
            ["node", str(RUNNER), str(modules), str(work / "job.json")],
            capture_output=True,
            text=True,
            check=False,
        )
        return _read_result(work / "result.json", model, done)


def _read_result(
    path: Path, model: Path, done: subprocess.CompletedProcess[str]
) -> list[list[np.ndarray]]:
    if not path.is_file():
        tail = " | ".join(done.stderr.strip().splitlines()[-3:]) or f"exit {done.returncode}"
        raise NodeError(f"Node.js ({node_version()}) failed before answering: {tail}")
    result = json.loads(path.read_text())
    if "error" in result:
        raise NodeError(explain(NODE_RUNTIME, result["error"], model))
    return [
        [np.fromfile(o["file"], dtype=JS_DTYPES[o["type"]]).reshape(o["dims"]) for o in outputs]
        for outputs in result["batches"]
    ]
