"""The results kit's checks save beside an export (``exported/NAME/results/``), for
``kit report``: what ran, when, with which command, about which files.

A result is evidence about an export's files, never part of them: the manifest does not
list it, and a re-export drops it. Each one records the sha256 of every file it was about,
so a report can tell a result that still describes the files from a stale one. A folder
someone downloaded can carry results nobody ran here: they are read as bounded, typed JSON
(never trusted to be well formed) and the report says where each came from.
"""

from __future__ import annotations

import re
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from . import __version__
from ._files import write_text_atomic
from .artifact import RESULTS_DIR, read_manifest

__all__ = ["MAX_RESULT_BYTES", "Saved", "load_results", "save_result", "seconds_since"]

#: A result file larger than this is not read (kit's own stay far below it).
MAX_RESULT_BYTES = 4 << 20
#: At most this many result files are read from one export.
MAX_RESULTS = 64
#: ``parity-python``, ``parity-onnxruntime==1.16.3+node``, ``bench``, ``quantize-int8``
_KIND = re.compile(r"^[a-z][a-z0-9.=+_-]{0,100}$")


class Saved(msgspec.Struct, frozen=True):
    """One saved result.

    Attributes:
        kind: What made it: ``parity-RUNTIMES``, ``bench``, ``eval``, ``quantize-int8``,
            ``check``.
        command: The kit command that reproduces it.
        created: When it was saved (ISO 8601, UTC).
        kit_version: The kit that saved it.
        files: sha256 of each of the export's files when it was saved.
        data: The command's own JSON (a parity report, bench rows, ...).
    """

    kind: str
    command: str
    created: str
    kit_version: str
    files: dict[str, str]
    data: dict[str, Any]

    def age_s(self, now: datetime | None = None) -> float | None:
        """Seconds since it was saved (None when ``created`` is not a time)."""
        return seconds_since(self.created, now)

    def stale_files(self, files: dict[str, str]) -> list[str]:
        """The files (name -> sha256 now) that changed or appeared since it was saved."""
        return sorted(n for n, digest in files.items() if self.files.get(n) != digest)


def seconds_since(created: str, now: datetime | None = None) -> float | None:
    """Seconds from the ISO 8601 time ``created`` (UTC when it names no zone) to ``now``;
    None when ``created`` is not a time."""
    try:
        then = datetime.fromisoformat(created)
    except ValueError:
        return None
    then = then if then.tzinfo else then.replace(tzinfo=UTC)
    return ((now or datetime.now(UTC)) - then).total_seconds()


def save_result(directory: Path, kind: str, data: dict[str, Any], command: str) -> Path:
    """Write ``data`` as the ``kind`` result of the export in ``directory`` (atomically).

    Raises:
        ArtifactError: ``directory`` is not an export.
        OSError: the folder cannot be written (nothing is left behind).
    """
    if not _KIND.match(kind):
        raise ValueError(f"not a result kind: {kind!r}")
    manifest = read_manifest(directory)
    saved = Saved(
        kind=kind,
        command=command,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        kit_version=__version__,
        files={name: record.sha256 for name, record in manifest.files.items()},
        data=data,
    )
    path = directory / RESULTS_DIR / f"{kind}.json"
    write_text_atomic(path, msgspec.json.format(msgspec.json.encode(saved)).decode() + "\n")
    return path


def load_results(directory: Path) -> tuple[dict[str, Saved], list[str]]:
    """Every result saved in the export at ``directory``, by kind, and one sentence for each
    file that could not be read as one (too large, not kit's JSON, not a regular file)."""
    folder = directory / RESULTS_DIR
    if not folder.is_dir() or folder.is_symlink():
        return {}, []
    found: dict[str, Saved] = {}
    problems: list[str] = []
    paths = sorted(folder.glob("*.json"))
    if len(paths) > MAX_RESULTS:
        problems.append(f"{folder} holds {len(paths)} results; read the first {MAX_RESULTS}")
    for path in paths[:MAX_RESULTS]:
        saved, problem = _read(path)
        if saved is not None:
            found[saved.kind] = saved
        elif problem:
            problems.append(problem)
    return found, problems


def _read(path: Path) -> tuple[Saved | None, str | None]:
    where = f"{RESULTS_DIR}/{path.name}"
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode):
        return None, f"{where} is not a regular file; not read"
    if info.st_size > MAX_RESULT_BYTES:
        return None, f"{where} is {info.st_size} bytes, more than a result kit writes; not read"
    try:
        saved = msgspec.json.decode(path.read_bytes(), type=Saved)
    except (msgspec.DecodeError, msgspec.ValidationError, OSError, RecursionError) as exc:
        return None, f"{where} is not a result kit saved ({exc}); not read"
    if f"{saved.kind}.json" != path.name or not _KIND.match(saved.kind):
        return None, f"{where} says it is a {saved.kind!r} result; not read"
    return saved, None
