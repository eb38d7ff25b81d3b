"""ONNX and ORT files on onnxruntime's Python API: the CPU provider, and CUDA when present
or asked for (with and without IOBinding for bench). Runs through :class:`kit.runtime.Model`,
exactly as apps embedding kit.runtime run them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import ArtifactFile
from ..errors import ArtifactError, ProviderError, first_line
from ..parity import Runner
from ..runtime.providers import (
    CPU,
    check_providers,
    create_session,
    cuda_available,
    cuda_providers,
    provider_name,
)
from ..runtime.session import Model
from .registry import Backend, RunnerOptions, artifact_label, register

__all__ = ["graph_runner", "provider_requests"]


def provider_requests(provider: str) -> list[list[Any]]:
    """The provider lists to run on: the CPU always, CUDA when asked or (auto) present.

    Raises:
        ProviderError: ``cuda`` asked for on a machine where it cannot run.
    """
    cpu: list[Any] = [CPU]
    if provider == "cpu":
        return [cpu]
    if provider == "cuda":
        cuda = cuda_providers(tf32=False)
        check_providers(cuda)
        return [cpu, cuda]
    return [cpu, cuda_providers(tf32=False)] if cuda_available() else [cpu]


def _label(session: Any, providers: Sequence[Any]) -> str:
    """The provider that really runs, marked when it is not the one asked for."""
    actual, asked = session.get_providers()[0], provider_name(providers[0])
    return actual if actual == asked else f"{actual} (asked {asked})"


def _runner(model: Model, artifact: str, label: str, precision: str) -> Runner:
    def run(x: np.ndarray) -> list[np.ndarray]:
        return list(model.predict(np.ascontiguousarray(x, np.float32), validate=False).values())

    key = "onnxruntime-cpu" if model.provider == CPU else "onnxruntime-cuda"
    return Runner(artifact, label, run, precision=precision, key=key)


def _make(path: Path, artifact: ArtifactFile, options: RunnerOptions) -> list[Runner]:
    # an ORT file was optimised for the CPU provider when it was converted
    requests = provider_requests("cpu" if artifact.format == "ort" else options.provider)
    runners = []
    for providers in requests:
        strict = options.provider == "cuda"
        try:
            session = create_session(path, providers, strict=strict)
        except ProviderError:
            raise
        except Exception as exc:  # onnxruntime's own types for a file it cannot load
            raise ArtifactError(
                f"onnxruntime cannot load {path.name}: {first_line(exc)}."
            ) from None
        label = _label(session, providers)
        name = artifact_label(artifact)
        runners.append(_runner(Model(session, path), name, label, artifact.precision))
        if options.io_binding and session.get_providers()[0] != CPU:
            bound = Model(session, path, io_binding=True)
            runners.append(_runner(bound, name, f"{label} + iobinding", artifact.precision))
    return runners


def graph_runner(model: bytes, outputs: Sequence[str]) -> Any:
    """A CPU run of an in-memory graph returning ``outputs`` (``--explain``'s marked copy)."""
    session = create_session(model, [CPU])
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(v) for v in session.run(list(outputs), {name: x})]

    return run


register(Backend("onnxruntime", "python", ("onnx", "ort"), _make))
