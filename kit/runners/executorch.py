"""``.pte`` files in ExecuTorch's runtime (its Python bindings; XNNPACK kernels), at the
static batch the program was lowered with; larger batches run in chunks of it.

ExecuTorch aborts the whole process (SIGABRT) on some malformed programs instead of raising,
so each file is first loaded and run once in a child process: a file that kills the child is
one sentence naming it, and kit goes on.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
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
        import executorch.runtime  # noqa: F401
    except ImportError:
        raise RuntimeMissing(
            "ExecuTorch is not installed, so kit cannot run .pte files: pip install "
            "'kit[executorch]' (or 'kit[edge]')."
        ) from None


def _version() -> str:
    from importlib.metadata import version

    return version("executorch")


#: what the child does with a .pte: load it and run its forward once on zeros
_PROBE = """
import sys, torch
from executorch.runtime import Runtime
method = Runtime.get().load_program(sys.argv[1]).load_method("forward")
sizes = list(method.metadata.input_tensor_meta(0).sizes())
method.execute([torch.zeros(sizes)])
"""
#: seconds a child may take to load and run one program
PROBE_TIMEOUT = 300


def _probed_marker(path: Path) -> Path:
    """Where kit notes that these exact bytes loaded and ran in this ExecuTorch release (a
    file in the user's own cache, named by the program's sha256: never the folder's say-so)."""
    from .._files import sha256_file
    from ..cache import cache_dir

    return cache_dir() / "pte-probed" / _version() / sha256_file(path)


def probe(path: Path) -> None:
    """Load and run ``path`` once in a child process, unless these very bytes did already
    in this ExecuTorch release (importing ExecuTorch alone takes seconds).

    Raises:
        ArtifactError: the child failed, aborted or hung; the sentence names the file, the
            runtime and what happened.
    """
    marker = _probed_marker(path)
    if marker.is_file():
        return
    _probe_in_child(path)
    with contextlib.suppress(OSError):  # a cache that cannot be written only costs time
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()


def _probe_in_child(path: Path) -> None:
    command = [sys.executable, "-c", _PROBE, str(path)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise ArtifactError(
            f"ExecuTorch did not load and run {path.name} within {PROBE_TIMEOUT} s."
        ) from None
    if done.returncode == 0:
        return
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    said = lines[-1][:300] if lines else ""
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        why = f"the runtime aborted the process that loaded it ({name})"
        why += f"; its last words: {said}" if said else ""
    else:
        why = said or f"exit {done.returncode}"
    raise ArtifactError(f"ExecuTorch cannot load {path.name}: {why}.")


def _make(path: Path, artifact: ArtifactFile, options: RunnerOptions) -> list[Runner]:
    import torch
    from executorch.runtime import Runtime

    if not options.isolated:  # a file that aborts ExecuTorch takes down a child, not kit
        probe(path)
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
            key="executorch",
        )
    ]


register(Backend("executorch", "executorch", ("pte",), _make, _ready))
