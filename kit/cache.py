"""kit's per-user cache, and what kit installs into it on its own (a pinned onnxruntime for
``--runtime onnxruntime==X.Y.Z``): apart from kit's own packages, and atomically."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import RuntimeMissing

__all__ = ["cache_dir", "fill_atomically", "install_onnxruntime", "onnxruntime_dir", "pinned_label"]


def cache_dir() -> Path:
    """Where kit keeps what it installs: ``$KIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/kit``,
    else ``~/.cache/kit``."""
    if explicit := os.environ.get("KIT_CACHE_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kit"


def fill_atomically(target: Path, fill: Callable[[Path], None]) -> None:
    """``fill`` a staging directory beside ``target``, then rename it into place: an
    interrupted install leaves nothing that looks installed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        fill(staging)
        staging.chmod(0o755)  # mkdtemp makes it private
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def pinned_label(version: str) -> str:
    """How reports name ``onnxruntime==version`` run from kit's cache."""
    return f"onnxruntime {version} (cpu, kit's cache)"


def onnxruntime_dir(version: str) -> Path:
    """Where ``onnxruntime==version`` lives in kit's cache, for this Python."""
    py = f"{sys.version_info.major}{sys.version_info.minor}"
    return cache_dir() / f"onnxruntime-{version}-py{py}"


def install_onnxruntime(version: str, *, quiet: bool = False) -> Path:
    """A pinned onnxruntime (and a numpy it was built for) installed apart from kit's own,
    with pip, into kit's cache on first use: what ``--runtime onnxruntime==X`` runs in.

    Raises:
        RuntimeMissing: pip cannot reach the package index, or the version has no wheel for
            this Python and platform.
    """
    target = onnxruntime_dir(version)
    if (target / "onnxruntime").is_dir():
        return target
    if not quiet:
        print(
            f"kit: installing onnxruntime {version} into {target} (first use) ...", file=sys.stderr
        )
    major_minor = tuple(int(v) for v in version.split(".")[:2])
    numpy = "numpy<2" if major_minor < (1, 19) else "numpy"  # built against numpy 1 until 1.19
    fill_atomically(
        target, lambda into: _pip_install(into, [f"onnxruntime=={version}", numpy], version)
    )
    return target


def _pip_install(into: Path, packages: list[str], version: str) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    command += ["--no-input", "--only-binary=:all:", "--target", str(into), *packages]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return
    text = done.stderr or done.stdout
    python = f"Python {sys.version_info.major}.{sys.version_info.minor}"
    if "No matching distribution" in text or "Could not find a version" in text:
        raise RuntimeMissing(
            f"onnxruntime {version} has no wheel for {python} on this platform (or no such "
            "release); pick a version pip can install here."
        )
    tail = " | ".join(text.strip().splitlines()[-2:])
    raise RuntimeMissing(
        f"Cannot install onnxruntime {version} with pip (is the package index reachable?): {tail}"
    )
