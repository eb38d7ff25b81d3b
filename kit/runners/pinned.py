"""ONNX files in a pinned onnxruntime release (``--runtime onnxruntime==1.16.3``): the
version a deployment runs, installed apart from kit's own into kit's cache on first use, and
run in a process of its own that answers every batch of a file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..artifact import ArtifactFile
from ..catalogue import PINNED
from ..embed.packages import install_onnxruntime, pinned_label
from ..errors import KitError
from ..parity import Runner
from .registry import Backend, RunnerOptions, artifact_label, register_family

__all__ = ["PINNED", "PinnedError", "backend_for", "run_pinned"]

CHILD = Path(__file__).resolve().parent.parent / "embed" / "ort_child.py"


class PinnedError(KitError):
    """The pinned onnxruntime refused a model or an input (its own words are in it)."""


def run_pinned(version: str, model: Path, batches: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
    """Every output of ``model`` for each float32 batch, in onnxruntime ``version``.

    Raises:
        RuntimeMissing: that version cannot be installed here.
        PinnedError: it cannot load the model or run an input.
    """
    site = install_onnxruntime(version)
    with tempfile.TemporaryDirectory(prefix="kit-ort-") as tmp:
        work = Path(tmp)
        described = []
        for i, x in enumerate(batches):
            np.ascontiguousarray(x, dtype="<f4").tofile(work / f"in-{i}.bin")
            described.append({"file": str(work / f"in-{i}.bin"), "shape": list(x.shape)})
        job = {"model": str(model.resolve()), "batches": described, "out_dir": tmp}
        (work / "job.json").write_text(json.dumps(job))
        command = [sys.executable, "-S", "-E", str(CHILD), str(site), str(work / "job.json")]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if not (work / "result.json").is_file():
            tail = " | ".join(done.stderr.strip().splitlines()[-2:]) or f"exit {done.returncode}"
            raise PinnedError(f"onnxruntime {version} failed before answering: {tail}")
        return _answers(json.loads((work / "result.json").read_text()), version, model)


def _answers(result: dict, version: str, model: Path) -> list[list[np.ndarray]]:  # type: ignore[type-arg]
    if "error" in result:
        error, hint = _reason(result["error"]), ""
        if "IR version" in error or "opset" in error.lower():
            hint = f"; export for it: kit export --target onnxruntime=={version}"
        raise PinnedError(f"onnxruntime {version} cannot load {model.name}: {error}{hint}")
    return [
        [np.fromfile(o["file"], dtype=o["dtype"]).reshape(o["shape"]) for o in outputs]
        for outputs in result["batches"]
    ]


#: onnxruntime's words for what it cannot read, without the source location before them
_REASON = re.compile(r"(Unsupported model IR version[^\n]*|[^:\n]*[Oo]pset[^\n]*)")


def _reason(error: str) -> str:
    found = _REASON.search(error)
    return found[1].strip() if found else error


def backend_for(runtime: str) -> Backend | None:
    """The backend of a ``onnxruntime==X.Y.Z`` runtime (registered on first use)."""
    found = PINNED.fullmatch(runtime)
    if found is None:
        return None
    version = found[1]

    def make(path: Path, artifact: ArtifactFile, options: RunnerOptions) -> list[Runner]:
        from .js import prefetched

        run = prefetched(lambda p, b: run_pinned(version, p, b), PinnedError, path, options.inputs)
        label, precision = pinned_label(version), artifact.precision
        return [Runner(artifact_label(artifact), label, run, precision=precision, key=runtime)]

    def ready() -> None:
        install_onnxruntime(version)

    return Backend(runtime, runtime, ("onnx",), make, ready)


register_family(PINNED, backend_for)
