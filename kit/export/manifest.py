"""``manifest.json``: what an export wrote, with which versions, and how it verified.

The manifest also says how to rebuild the eager reference (model name or factory,
``num_classes``, and the weights file with its sha256 or the seed), so ``kit parity
exported/NAME`` can re-verify saved artifacts on another machine.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from .._files import MANIFEST, sha256_file
from ..errors import ArtifactError

__all__ = ["MANIFEST", "describe_files", "library_versions", "read_manifest"]

FORMAT_VERSION = 1


def library_versions() -> dict[str, str]:
    """Versions of the libraries that made (and check) the artifacts."""
    import onnx
    import onnxruntime
    import torch

    import kit

    versions = {
        "kit": kit.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    try:
        import onnxscript

        versions["onnxscript"] = onnxscript.__version__
    except ImportError:
        pass
    return versions


def describe_files(root: Path, names: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``{file: {"format", "size", "sha256"}}`` for files in ``root`` (``names``: file -> format)."""
    return {
        name: {
            "format": fmt,
            "size": (root / name).stat().st_size,
            "sha256": sha256_file(root / name),
        }
        for name, fmt in names.items()
    }


def read_manifest(artifact_dir: Path) -> dict[str, Any]:
    """Read ``artifact_dir/manifest.json``.

    Raises:
        ArtifactError: the directory or manifest is missing or not valid JSON.
    """
    path = artifact_dir / MANIFEST
    if not artifact_dir.is_dir():
        raise ArtifactError(f"{artifact_dir} is not a directory; pass an exported/NAME directory.")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(
            f"{artifact_dir} has no {MANIFEST}; was it written by kit export?"
        ) from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"Cannot read {path}: {exc}.") from None
    if not isinstance(manifest, dict) or "files" not in manifest or "model" not in manifest:
        raise ArtifactError(f"{path} is not a kit manifest (no 'files' or 'model').")
    return manifest
