"""The model repository ``kit serve`` reads: a directory of exports, or one export.

Only complete, verified exports are served. What an interrupted export leaves
(``.NAME.partial-XXXX``), what ``--keep-failed`` keeps (``NAME.parity-failed``), a folder
without a readable manifest, or one whose files do not match it, is skipped with one log
line saying why.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..artifact import FAILED_SUFFIX, MANIFEST, served_name
from ..errors import ArtifactError
from ..runtime.session import Model, load, open_export, precision_file

__all__ = ["discover_models", "load_models"]

log = logging.getLogger("kit.server")


def _skip_reason(folder: Path) -> str | None:
    """Why ``folder`` is not an export to serve (None when it may be one)."""
    if folder.name.startswith("."):
        return "a hidden folder (an export being written, or left by one that was killed)"
    if folder.name.endswith(FAILED_SUFFIX):
        return "artifacts that failed parity (kept by --keep-failed)"
    if not (folder / MANIFEST).is_file():
        return f"no {MANIFEST} file"
    return None


def discover_models(directory: Path) -> list[Path]:
    """The export folders of ``directory``: itself when it is one, else its children.

    Raises:
        ArtifactError: the directory does not exist or holds no export.
    """
    if not directory.is_dir():
        raise ArtifactError(f"{directory} is not a directory of exported models.")
    if (directory / MANIFEST).exists():
        return [directory]
    found = []
    for child in sorted(p for p in directory.iterdir() if p.is_dir()):
        if reason := _skip_reason(child):
            log.info("skipped", extra={"event": "skipped", "folder": str(child), "why": reason})
        else:
            found.append(child)
    if not found:
        raise ArtifactError(
            f"No exported model (NAME/{MANIFEST}) found in {directory}; run kit export first."
        )
    return found


def load_models(
    directory: Path,
    *,
    providers: list[Any] | None = None,
    threads: int | None = None,
    warmup_batches: tuple[int, ...] = (1,),
) -> dict[str, Model]:
    """Load and warm every verified model under ``directory``; each variant ``kit
    quantize`` added is served beside its model as ``NAME_int8``, as Triton users name them.

    Raises:
        ArtifactError: nothing under ``directory`` can be served.
        ProviderError: a provider asked for by name cannot run here.
    """
    models: dict[str, Model] = {}
    folders = discover_models(directory)
    for folder in folders:
        try:
            models |= _load_export(folder, providers, threads, warmup_batches)
        except ArtifactError as exc:  # a bad folder among good ones: skipped, said once
            if len(folders) == 1:
                raise
            log.warning(
                "skipped", extra={"event": "skipped", "folder": str(folder), "why": str(exc)}
            )
    if not models:
        raise ArtifactError(f"No export in {directory} can be served; see the log for why.")
    return models


def _load_export(
    folder: Path, providers: list[Any] | None, threads: int | None, warmup: tuple[int, ...]
) -> dict[str, Model]:
    manifest = open_export(folder)  # every sha256 once, for every precision
    loaded = {}
    for precision in ["fp32", *manifest.onnx_variants]:
        path = precision_file(folder, manifest, precision)
        model = load(path, providers=providers, threads=threads, warmup=False)
        model.precision = precision
        model.warmup(warmup)
        loaded[served_name(manifest.name, precision)] = model
    return loaded
