"""Small file helpers shared across kit (torch-free)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["MANIFEST", "sha256_file", "verify_files", "write_json_atomic"]

MANIFEST = "manifest.json"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to a temporary name, then move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def verify_files(directory: Path, files: dict[str, Any]) -> list[str]:
    """Check each ``{name: {"sha256": ...}}`` entry of a manifest; one sentence per problem."""
    problems = []
    for name, info in files.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif sha256_file(path) != info["sha256"]:
            problems.append(f"{name} does not match the sha256 in {MANIFEST} (modified or corrupt)")
    return problems
