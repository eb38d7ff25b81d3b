"""Eager PyTorch, TorchScript (``model.ts``) and torch.export (``model.pt2``) on the CPU."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..artifact import ArtifactFile
from ..outputs import flatten_outputs
from ..parity import Runner
from .registry import Backend, RunnerOptions, artifact_label, register

__all__ = [
    "eager_run",
    "eager_runner",
    "load_program",
    "load_torchscript",
    "module_run",
    "quiet_jit",
]

#: how reports name where each format runs
_LABELS = {"torchscript": "torch.jit (cpu)", "pt2": "torch.export (cpu)"}


def module_run(module: Any, network: str) -> Any:
    """A torch module (eager, TorchScript or torch.export) as a runner's run function."""

    def run(x: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            out = module(torch.from_numpy(x))
        return [t.numpy() for t in flatten_outputs(out, network=network)]

    return run


def eager_run(model: torch.nn.Module, network: str) -> Any:
    """The eager network, the reference every artifact is compared with."""
    return module_run(model.eval(), network)


def eager_runner(model: torch.nn.Module, network: str) -> Runner:
    return Runner("eager", "torch (cpu)", eager_run(model, network), key="torch")


@contextlib.contextmanager
def quiet_jit() -> Iterator[None]:
    """Silence torch.jit's deprecation and tracer warnings inside the block (torch 2.14
    warns on every call; kit pins torch below 2.15, where it becomes an error)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    """Load a TorchScript file on the CPU. TorchScript files are code: kit loads one only
    after its sha256 matched the manifest."""
    with quiet_jit():
        return torch.jit.load(str(path), map_location="cpu")


def load_program(path: Path) -> torch.nn.Module:
    """Load a ``.pt2`` file as a callable module."""
    return torch.export.load(str(path)).module()  # type: ignore[return-value]


def _load(path: Path, fmt: str) -> Any:
    return load_torchscript(path) if fmt == "torchscript" else load_program(path)


def _make(path: Path, artifact: ArtifactFile, options: RunnerOptions) -> list[Runner]:
    module = _load(path, artifact.format)
    run = module_run(module, path.name)
    return [Runner(artifact_label(artifact), _LABELS[artifact.format], run, key="torch")]


register(Backend("torch", "python", ("torchscript", "pt2"), _make))
