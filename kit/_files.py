"""Small file helpers shared across kit (torch-free)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import ArtifactError

__all__ = [
    "read_regular",
    "sha256_file",
    "write_inside",
    "write_json_atomic",
    "write_text_atomic",
]


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to a temporary name, then move it into place."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary name beside ``path``, then move it into place.

    Raises:
        OSError: the directory cannot be created or written (nothing is left behind).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


@contextlib.contextmanager
def _walk_down(root: Path, parts: tuple[str, ...]) -> Iterator[int]:
    """A descriptor of ``root/parts...``, each folder below ``root`` opened without following
    a link (made when missing). ``root`` itself is the caller's: a path the user gave."""
    fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))]
    try:
        for part in parts:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fds[-1])
            try:
                fds.append(os.open(part, _DIR_FLAGS, dir_fd=fds[-1]))
            except OSError as exc:
                raise ArtifactError(
                    f"Refusing to write into {root / Path(*parts)}: {part} is a link or not a "
                    "folder, and kit writes only inside the export's own folders."
                ) from exc
        yield fds[-1]
    finally:
        for fd in fds:
            os.close(fd)


def write_inside(root: Path, relative: str, text: str) -> Path:
    """Write ``text`` to ``root/relative`` atomically, refusing any link on the way.

    No folder below ``root`` nor the file itself may be a symbolic link: a folder someone
    downloaded could point ``results/`` or ``report.html`` anywhere. Missing folders are made.

    Raises:
        ArtifactError: a link (or something other than a folder or a regular file) is on
            the path; nothing is written.
        OSError: the folder cannot be written (nothing is left behind).
    """
    *folders, name = Path(relative).parts
    if not name or ".." in Path(relative).parts or Path(relative).is_absolute():
        raise ValueError(f"not a path inside a folder: {relative!r}")
    target = root / relative
    with _walk_down(root, tuple(folders)) as fd:
        with contextlib.suppress(FileNotFoundError):
            mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
            if not stat.S_ISREG(mode):
                raise ArtifactError(
                    f"Refusing to write {target}: it is a link or not a regular file, and kit "
                    "replaces only its own files."
                )
        tmp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        out = os.open(tmp, flags, 0o644, dir_fd=fd)
        try:
            with os.fdopen(out, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=fd)
            raise
    return target


def read_regular(path: Path, size: int, limit: int) -> bytes:
    """The bytes of ``path``, a regular file of exactly ``size`` bytes (at most ``limit``).

    Opened without following a link and without blocking (a FIFO or a device never hangs
    or floods the reader); the size is checked before a byte is read.

    Raises:
        ArtifactError: not a regular file, a link, a size other than ``size``, or larger
            than ``limit``; the sentence names the file.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ArtifactError(
            f"Cannot open {path}: {exc.strerror or exc} (links are not followed)."
        ) from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ArtifactError(f"{path} is not a regular file; kit reads only regular files.")
        if info.st_size != size or size > limit:
            raise ArtifactError(
                f"{path} is {info.st_size} bytes; its manifest says {size}"
                + (f" and kit reads at most {limit}" if size > limit else "")
                + "."
            )
        data = f.read(size + 1)
    if len(data) != size:
        raise ArtifactError(f"{path} changed while it was read.")
    return data
