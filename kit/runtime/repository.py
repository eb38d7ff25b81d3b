"""The model repository ``kit serve`` reads: a directory of exports, or one export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifact import MODEL_FILE, VARIANT_FILES
from ..errors import ArtifactError
from .session import Model, load

__all__ = ["discover_models", "load_models"]


def discover_models(directory: Path) -> dict[str, Path]:
    """``{name: dir}`` for ``directory`` itself (if it holds a model) or each child that does.

    Raises:
        ArtifactError: the directory does not exist or holds no model.
    """
    if not directory.is_dir():
        raise ArtifactError(f"{directory} is not a directory of exported models.")
    if (directory / MODEL_FILE).is_file():
        return {directory.name: directory}
    found = {
        d.name: d for d in sorted(directory.iterdir()) if d.is_dir() and (d / MODEL_FILE).is_file()
    }
    if not found:
        raise ArtifactError(
            f"No exported model (NAME/{MODEL_FILE}) found in {directory}; run kit export first."
        )
    return found


def load_models(
    directory: Path,
    *,
    providers: list[Any] | None = None,
    threads: int | None = None,
    warmup_batches: tuple[int, ...] = (1,),
) -> dict[str, Model]:
    """Load and warm every model under ``directory`` (sha256 verified against manifests).

    Each variant ``kit quantize`` added is served beside its model under its own name,
    ``NAME_int8``, as Triton users name them.
    """
    models = {}
    for name, path in discover_models(directory).items():
        for precision, served_as in _precisions(name, path):
            model = load(
                path, providers=providers, threads=threads, warmup=False, precision=precision
            )
            model.warmup(warmup_batches)
            models[served_as] = model
    return models


def _precisions(name: str, path: Path) -> list[tuple[str, str]]:
    """``(precision, served name)`` for the model in ``path`` and each of its variants."""
    found = [("fp32", name)]
    if path.is_dir():
        found += [(p, f"{name}_{p}") for p, f in VARIANT_FILES.items() if (path / f).is_file()]
    return found
