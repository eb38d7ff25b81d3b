"""``.pte`` files in ExecuTorch's runtime (its Python bindings; XNNPACK kernels), at the
static batch the program was lowered with; larger batches run in chunks of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._native import native_output_to_file
from ..artifact import ArtifactFile
from ..embed.packages import RuntimeMissing
from ..errors import ArtifactError, first_line
from ..parity import Runner
from . import Backend, RunnerOptions, artifact_label, in_chunks, register

__all__: list[str] = []


def _ready() -> None:
    try:
        import executorch.runtime  # noqa: F401
    except ImportError:
        raise RuntimeMissing(
            "ExecuTorch is not installed, so kit cannot run .pte files: pip install "
            "'kit[executorch]' (or 'kit[edge]')."
        ) from None


def _version() -> str:
    from importlib.metadata import version

    return version("executorch")


def _make(path: Path, artifact: ArtifactFile, options: RunnerOptions) -> list[Runner]:
    import torch
    from executorch.runtime import Runtime

    try:
        with native_output_to_file():  # its CPU probe prints to stderr on every load
            method = Runtime.get().load_program(str(path)).load_method("forward")
    except Exception as exc:  # the runtime raises RuntimeError with its own codes
        raise ArtifactError(f"ExecuTorch cannot load {path.name}: {first_line(exc)}.") from None
    batch = int(method.metadata.input_tensor_meta(0).sizes()[0])

    def run(x: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(o) for o in method.execute([torch.from_numpy(np.ascontiguousarray(x))])]

    note = f"{path.name} has a static batch of {batch}: every input ran in batches of {batch} in ExecuTorch"
    return [
        Runner(
            artifact_label(artifact),
            f"executorch {_version()} (xnnpack)",
            in_chunks(run, batch),
            precision=artifact.precision,
            batch_sizes=(batch,),
            note=note,
        )
    ]


register(Backend("executorch", "executorch", ("pte",), _make, _ready))
