"""Nothing half-written: an export is written into ``OUT/.NAME.partial-XXXX`` (same
filesystem), verified, then renamed into place.

Any exception, Ctrl-C or SIGTERM removes the staging directory; a SIGKILL leftover holds
the PID that wrote it, is ignored by every command (a dot-folder) and is removed by the
next export of that name once that process is gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from ..artifact import PARTIAL_MARK
from ..errors import ArtifactError

__all__ = ["clean_leftovers", "move_into_place", "staging_dir"]

#: the PID of the process writing a staging directory (removed before it lands)
_OWNER = ".kit-export.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def clean_leftovers(out_root: Path, name: str) -> None:
    """Remove what exports of ``name`` killed outright (SIGKILL) left in ``out_root``."""
    for leftover in out_root.glob(f".{name}{PARTIAL_MARK}*"):
        try:
            pid = int((leftover / _OWNER).read_text())
        except (OSError, ValueError):
            pid = 0
        if not pid or not _alive(pid):
            shutil.rmtree(leftover, ignore_errors=True)


class _Terminated(BaseException):
    """SIGTERM during an export: unwinds like Ctrl-C, so the staging directory goes."""


#: set by SIGTERM during an export, so the export never lands even where its exception was
#: swallowed (raised inside a ``__del__`` or a callback, Python only prints it)
_TERMINATED = threading.Event()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _TERMINATED.set()
    raise _Terminated()


@contextlib.contextmanager
def staging_dir(out_root: Path, name: str) -> Iterator[Path]:
    """A staging directory for ``name`` that is removed unless the block moved it away.

    Raises:
        ArtifactError: ``out_root`` cannot be written.
    """
    _TERMINATED.clear()
    previous = _catch_sigterm()  # before the folder exists: a SIGTERM from then on cleans it
    staging = None
    try:
        staging = _make_staging(out_root, name)
        yield staging
    except _Terminated:
        raise SystemExit(128 + signal.SIGTERM) from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _make_staging(out_root: Path, name: str) -> Path:
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        clean_leftovers(out_root, name)
        staging = Path(tempfile.mkdtemp(dir=out_root, prefix=f".{name}{PARTIAL_MARK}"))
        staging.chmod(0o755)  # mkdtemp makes it private; artifacts are meant to be shared
        (staging / _OWNER).write_text(str(os.getpid()))
    except OSError as exc:
        raise ArtifactError(
            f"Cannot write to output directory {out_root}: {exc.strerror}."
        ) from None
    return staging


def _catch_sigterm() -> signal.Handlers | None:
    """Turn SIGTERM into an exception (main thread only; elsewhere signals are not ours)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _on_sigterm)
    return previous if previous is not None else signal.SIG_DFL  # type: ignore[return-value]


def move_into_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an older ``target`` is swapped out only now.
    Never after a SIGTERM, even one whose exception was lost."""
    if _TERMINATED.is_set():
        raise _Terminated()
    (staging / _OWNER).unlink(missing_ok=True)
    backup = None
    if target.exists():
        backup = target.with_name(f".{target.name}.old-{staging.name}")
        target.rename(backup)
    staging.rename(target)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
