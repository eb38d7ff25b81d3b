"""``.tflite`` files in LiteRT's interpreter (TensorFlow Lite; XNNPACK delegate), at their
static batch; larger batches run in chunks of it."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .._native import native_output_to_file
from ..artifact import ArtifactFile
from ..errors import ArtifactError, RuntimeMissing, first_line
from ..parity import Runner
from .registry import Backend, RunnerOptions, artifact_label, in_chunks, register

__all__: list[str] = []


def _ready() -> None:
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        raise RuntimeMissing(
            "LiteRT is not installed, so kit cannot run .tflite files: pip install "
            "'kit[litert]' (or 'kit[edge]')."
        ) from None


def _make(path: Path, artifact: ArtifactFile, options: RunnerOptions) -> list[Runner]:
    from importlib.metadata import version

    from ai_edge_litert.interpreter import Interpreter

    try:
        with native_output_to_file():  # "INFO: Created TensorFlow Lite XNNPACK delegate"
            interpreter = Interpreter(model_path=str(path))
            interpreter.allocate_tensors()
    except Exception as exc:  # the interpreter raises ValueError/RuntimeError
        raise ArtifactError(f"LiteRT cannot load {path.name}: {first_line(exc)}.") from None
    source = interpreter.get_input_details()[0]
    outputs = interpreter.get_output_details()
    batch = int(source["shape"][0])
    lock = threading.Lock()  # one interpreter holds one set of tensors
    shape = [tuple(source["shape"])]

    def run(x: np.ndarray) -> list[np.ndarray]:
        with lock:
            if x.shape != shape[0]:  # a size the file lets vary (its shape_signature's -1)
                interpreter.resize_tensor_input(source["index"], list(x.shape))
                interpreter.allocate_tensors()
                shape[0] = x.shape
            interpreter.set_tensor(source["index"], np.ascontiguousarray(x, np.float32))
            interpreter.invoke()
            return [interpreter.get_tensor(o["index"]).copy() for o in outputs]

    note = f"{path.name} has a static batch of {batch}: every input ran in batches of {batch} in LiteRT"
    label = f"litert {version('ai-edge-litert')} (xnnpack)"
    return [
        Runner(
            artifact_label(artifact),
            label,
            in_chunks(run, batch),
            precision=artifact.precision,
            batch_sizes=(batch,),
            note=note,
            key="litert",
        )
    ]


register(Backend("litert", "litert", ("tflite",), _make, _ready))
