"""The runner registry: every artifact file in every runtime is made into a runner here.

Which runtimes exist, which formats each runs and which modules implement it is
:mod:`kit.catalogue`'s; a :class:`Backend` is the code: it registers itself when its module
is imported (the registry imports a runtime's modules on first use). Parity, bench,
evaluate, explain and the CLI ask :func:`make_runners` for runners and never build their
own. Each :class:`~kit.parity.Runner` carries its runtime's catalogue key, a label for
people, what it accepts (batch sizes) and the precision it really runs at.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifact import ArtifactFile
from ..catalogue import RUNTIMES, home_runtime, selected_by
from ..errors import UsageError
from ..parity import Runner

__all__ = [
    "Backend",
    "Runner",
    "RunnerOptions",
    "artifact_label",
    "backend",
    "covered_formats",
    "home_select",
    "in_chunks",
    "make_runners",
    "register",
    "register_family",
    "runtimes",
]


@dataclass(frozen=True)
class RunnerOptions:
    """What a caller may ask of runners.

    Attributes:
        provider: onnxruntime's providers: ``auto`` (CUDA too when a GPU is present),
            ``cpu`` or ``cuda`` (CUDA or a :class:`~kit.errors.ProviderError`).
        io_binding: Also make CUDA runners that bind inputs and outputs (for bench).
        isolated: This process is a throwaway child already (no child of its own needed).
    """

    provider: str = "auto"
    io_binding: bool = False
    #: this process is already a throwaway child (cold start): a runtime that would load an
    #: untrusted file in a child first loads it here directly
    isolated: bool = False


#: a backend's factory: (file, what the manifest says of it, options) -> its runners
Make = Callable[[Path, ArtifactFile, RunnerOptions], list[Runner]]


def _ready() -> None:
    return None


@dataclass(frozen=True)
class Backend:
    """One runtime's way of running some file formats.

    Attributes:
        name: Its name (``onnxruntime``, ``torch``, ``node``).
        runtime: The ``--runtime`` that selects it (``python``, ``node``, ``browser``).
        formats: The file formats it runs (``onnx``, ``ort``, ``pt2``).
        make: Runners for one file.
        ready: Raises :class:`~kit.errors.RuntimeMissing` (exit 2) saying how to get
            the runtime, when it cannot run here.
    """

    name: str
    runtime: str
    formats: tuple[str, ...]
    make: Make
    ready: Callable[[], None] = _ready


_BACKENDS: dict[str, Backend] = {}
#: backends made on demand for a family of runtimes (``onnxruntime==X.Y.Z``), by pattern
_FAMILIES: list[tuple[re.Pattern[str], Callable[[str], Backend | None]]] = []


def home_select(fmt: str) -> str:
    """The ``--runtime`` a format is checked in when an export is made."""
    return home_runtime(fmt).select


def register_family(pattern: re.Pattern[str], make: Callable[[str], Backend | None]) -> None:
    """Backends for every ``--runtime`` matching ``pattern``, made by ``make`` on first use."""
    _FAMILIES.append((pattern, make))


def register(backend: Backend) -> Backend:
    """Add ``backend`` to the registry (a second one of the same name replaces it)."""
    _BACKENDS[backend.name] = backend
    return backend


def runtimes() -> list[str]:
    """Every ``--runtime`` name runners can be made for (and ``onnxruntime==X.Y.Z``)."""
    named = {r.select for r in RUNTIMES.values() if r.select}
    return sorted(named | {b.runtime for b in _BACKENDS.values()})


def _import(runtime: str, formats: Sequence[str] | None) -> None:
    """Import the modules of the runtimes ``runtime`` selects (those running one of
    ``formats``, when given); each registers its backends."""
    for record in selected_by(runtime):
        if formats is None or set(record.formats) & set(formats):
            for module in record.modules:
                importlib.import_module(module)


def _selected(runtime: str, formats: Sequence[str] | None = None) -> list[Backend]:
    """The backends of ``runtime`` (those running one of ``formats``, when given), their
    modules imported on first use."""
    _import(runtime, formats)
    if runtime not in runtimes():
        _import(runtime, None)  # a family's module registers it (a pinned onnxruntime)
        for pattern, make in _FAMILIES:
            if pattern.fullmatch(runtime) and (made := make(runtime)) is not None:
                register(made)
    if runtime not in runtimes():
        known = ", ".join([*runtimes(), "onnxruntime==X.Y.Z"])
        raise UsageError(f"Unknown runtime {runtime!r}; choose from {known}.")
    found = [b for b in _BACKENDS.values() if b.runtime == runtime]
    return [b for b in found if formats is None or set(b.formats) & set(formats)]


def covered_formats(runtimes: Sequence[str]) -> set[str]:
    """The file formats some runtime of ``runtimes`` runs (no backend imported for it)."""
    covered = set()
    for runtime in runtimes:
        _selected(runtime, ())  # validates the name, registers a pinned onnxruntime
        covered |= {f for r in selected_by(runtime) for f in r.formats}
        covered |= {f for b in _BACKENDS.values() if b.runtime == runtime for f in b.formats}
    return covered


def backend(name: str) -> Backend:
    """The registered backend ``name`` (its runtime's modules imported first)."""
    for record in RUNTIMES.values():
        if name not in _BACKENDS and record.select:
            _import(record.select, None)
    return _BACKENDS[name]


def artifact_label(artifact: ArtifactFile) -> str:
    """How reports name an artifact: its format, with the precision of a variant."""
    return artifact.label


def make_runners(
    directory: Path,
    artifacts: Sequence[ArtifactFile],
    runtimes: Sequence[str] = ("python",),
    options: RunnerOptions | None = None,
) -> list[Runner]:
    """Runners for every artifact in every runtime asked for that can run its format.

    Raises:
        RuntimeMissing: a runtime asked for cannot run here (how to get it is in the text).
        ProviderError: ``options.provider`` names a provider that cannot run here.
        UsageError: an unknown runtime.
    """
    options = options or RunnerOptions()
    made: list[Runner] = []
    for runtime in dict.fromkeys(runtimes):
        for b in _selected(runtime, [a.format for a in artifacts]):
            wanted = [a for a in artifacts if a.format in b.formats]
            if wanted:
                b.ready()
            for artifact in wanted:
                made += b.make(directory / artifact.name, artifact, options)
    return made


def in_chunks(
    run: Callable[[np.ndarray], list[np.ndarray]], size: int
) -> Callable[[np.ndarray], list[np.ndarray]]:
    """``run`` for a static-batch artifact: any batch, run ``size`` rows at a time."""

    def chunked(x: np.ndarray) -> list[np.ndarray]:
        if len(x) == size:
            return run(x)
        if len(x) % size:
            raise UsageError(f"a batch of {len(x)} does not split into batches of {size}")
        parts = [run(x[i : i + size]) for i in range(0, len(x), size)]
        return [np.concatenate(column) for column in zip(*parts, strict=True)]

    return chunked
