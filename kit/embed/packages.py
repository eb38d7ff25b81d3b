"""The pinned onnxruntime JavaScript packages, installed once into a per-user cache.

onnxruntime-node comes through npm (it has native binaries and dependencies: npm's job).
The browser needs only three files of onnxruntime-web, so they are fetched from the npm
registry by Python alone, checked against the registry's pinned sha512, and unpacked;
a machine with Python and no npm can serve the browser page.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

from ..cache import cache_dir, fill_atomically
from ..errors import KitError, RuntimeMissing

__all__ = [
    "ORT_JS_VERSION",
    "WEB_FILES",
    "find_browser",
    "install_node_package",
    "install_web_files",
    "node_modules",
    "node_version",
    "web_dir",
]

#: onnxruntime-node and onnxruntime-web, pinned together
ORT_JS_VERSION = "1.30.0"
#: the registry's integrity of onnxruntime-web's tarball (``npm view onnxruntime-web dist``)
_WEB_INTEGRITY = "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ=="
#: what the page loads: the wasm-only ES module, its loader and the single SIMD wasm binary
WEB_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
_REGISTRY = "https://registry.npmjs.org"


def node_version() -> str | None:
    """``node --version`` (``v20.…``), or None when Node.js is not on PATH."""
    node = shutil.which("node")
    if node is None:
        return None
    done = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or None


def node_modules() -> Path:
    """The cached ``node_modules`` holding onnxruntime-node (it may not exist yet)."""
    return cache_dir() / f"onnxruntime-node-{ORT_JS_VERSION}" / "node_modules"


def install_node_package(*, quiet: bool = False) -> Path:
    """onnxruntime-node's ``node_modules``, installed with npm on first use.

    Raises:
        RuntimeMissing: Node.js or npm is not installed.
        KitError: npm failed (its last lines are in the message).
    """
    if node_version() is None:
        raise RuntimeMissing(
            "Node.js is not installed; install Node.js 18 or newer (https://nodejs.org, or "
            "`apt-get install nodejs npm`) and run the command again."
        )
    target = node_modules()
    if (target / "onnxruntime-node" / "package.json").is_file():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeMissing(
            "npm is not installed; install it beside Node.js (apt-get install npm)."
        )
    prefix = target.parent
    if not quiet:
        print(
            f"kit: installing onnxruntime-node {ORT_JS_VERSION} into {prefix} (first use, "
            "about 300 MB) ...",
            file=sys.stderr,
        )
    fill_atomically(
        prefix, lambda into: _npm_install(npm, into, f"onnxruntime-node@{ORT_JS_VERSION}")
    )
    return target


def _npm_install(npm: str, prefix: Path, package: str) -> None:
    # the CPU binaries are inside the package; its install script would fetch CUDA's
    env = {
        **os.environ,
        "ONNXRUNTIME_NODE_INSTALL_CUDA": "skip",
        "ONNXRUNTIME_NODE_INSTALL": "skip",
    }
    done = subprocess.run(
        [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", package],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise KitError(f"npm could not install {package}: {tail}")


def web_dir() -> Path:
    """The cached onnxruntime-web files (it may not exist yet)."""
    return cache_dir() / f"onnxruntime-web-{ORT_JS_VERSION}"


def install_web_files(*, registry: str | None = None, quiet: bool = False) -> Path:
    """onnxruntime-web's :data:`WEB_FILES`, fetched from the npm registry on first use.

    The tarball must match the pinned sha512 before anything is unpacked.

    Raises:
        KitError: the registry cannot be reached or the tarball is not the pinned one.
    """
    target = web_dir()
    if all((target / name).is_file() for name in WEB_FILES):
        return target
    base = registry or os.environ.get("KIT_NPM_REGISTRY", _REGISTRY)
    url = f"{base.rstrip('/')}/onnxruntime-web/-/onnxruntime-web-{ORT_JS_VERSION}.tgz"
    if not quiet:
        print(f"kit: fetching onnxruntime-web {ORT_JS_VERSION} from {url} ...", file=sys.stderr)
    data = _download(url)
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != _WEB_INTEGRITY:
        raise KitError(f"{url} is not onnxruntime-web {ORT_JS_VERSION} (its sha512 differs).")
    fill_atomically(target, lambda into: _unpack(data, into))
    return target


def _download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            return bytes(response.read())
    except OSError as exc:
        raise KitError(
            f"Cannot fetch {url} ({exc}); run `kit doctor --install web` where the npm "
            "registry is reachable, or set $KIT_NPM_REGISTRY to a mirror."
        ) from None


def _unpack(tarball: bytes, into: Path) -> None:
    """Write :data:`WEB_FILES` and package.json (version, MIT licence) from the package's tarball into ``into``."""
    wanted = {f"package/dist/{name}": name for name in WEB_FILES} | {
        "package/package.json": "package.json"
    }
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        for member in tar.getmembers():
            name = wanted.pop(member.name, None)
            source = tar.extractfile(member) if name else None
            if source is not None:
                (into / name).write_bytes(source.read())  # type: ignore[operator]
    if wanted:
        raise KitError(f"onnxruntime-web's tarball lacks {sorted(wanted)}.")
    for path in into.iterdir():
        path.chmod(0o644)


#: the Chromium builds kit's browser checks drive, by the names distributions give them
_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    """The path of a system Chromium (``$KIT_CHROMIUM`` first), or None."""
    if explicit := os.environ.get("KIT_CHROMIUM"):
        return explicit if Path(explicit).is_file() else None
    return next((path for name in _BROWSERS if (path := shutil.which(name))), None)
