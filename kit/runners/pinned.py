"""ONNX files in a pinned onnxruntime release (``--runtime onnxruntime==1.16.3``): the
version a deployment runs, installed apart from kit's own into kit's cache on first use, and
run in a process of its own that answers every batch of a file."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .._child import ChildSession
from ..artifact import ArtifactFile
from ..cache import install_onnxruntime, pinned_label
from ..catalogue import PINNED
from ..errors import KitError
from ..parity import Runner
from .registry import Backend, RunnerOptions, artifact_label, register_family

__all__ = ["PinnedError", "PinnedSession", "backend_for"]

CHILD = Path(__file__).resolve().with_name("ort_child.py")


class PinnedError(KitError):
    """The pinned onnxruntime refused a model or an input (its own words are in it)."""


class PinnedSession(ChildSession):
    """``model`` in one process of onnxruntime ``version``: ``run`` a batch, ``close`` to end.

    Raises (from ``run``):
        RuntimeMissing: that version cannot be installed here.
        PinnedError: it cannot load the model or run an input.
    """

    def __init__(self, version: str, model: Path) -> None:
        def command(work: Path) -> list[str]:
            site = install_onnxruntime(version)
            return [
                sys.executable,
                "-S",
                "-E",
                str(CHILD),
                str(site),
                str(model.resolve()),
                str(work),
            ]

        def failure(said: str, stopped: bool) -> Exception:
            if stopped:
                return PinnedError(f"onnxruntime {version} {said}")
            error, hint = _reason(said), ""
            if "IR version" in error or "opset" in error.lower():
                hint = f"; export for it: kit export --target onnxruntime=={version}"
            return PinnedError(f"onnxruntime {version} cannot load {model.name}: {error}{hint}")

        super().__init__(command, _decode, failure)


def _decode(o: dict[str, Any]) -> np.ndarray:
    return np.fromfile(o["file"], dtype=o["dtype"]).reshape(o["shape"])


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
        session = PinnedSession(version, path)
        label, precision = pinned_label(version), artifact.precision
        name = artifact_label(artifact)
        return [Runner(name, label, session.run, precision, key=runtime, closer=session.close)]

    def ready() -> None:
        install_onnxruntime(version)

    return Backend(runtime, runtime, ("onnx",), make, ready)


register_family(PINNED, backend_for)
