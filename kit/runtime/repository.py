"""The model repository ``kit serve`` reads: a directory of exports, or one export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifact import MODEL_FILE
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
    """Load and warm every model under ``directory`` (sha256 verified against manifests)."""
    models = {}
    for name, path in discover_models(directory).items():
        model = load(path, providers=providers, threads=threads, warmup=False)
        model.warmup(warmup_batches)
        models[name] = model
    return models
