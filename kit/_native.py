"""Fast paths that lean on dependencies' private or platform interfaces, all in one place.

Each function works without the private interface (it reports that it could not use it),
and ``tests/test_native.py`` fails loudly when a dependency changes underneath: glibc's
``mallopt`` through ctypes, and onnxruntime's compiled ``InferenceSession._sess.run``.
Measured effects are in docs/BENCHMARKS.md. Torch-free.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["compiled_run", "keep_freed_memory", "native_output_to_file"]

#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it at once.

    Every training step frees and reallocates the same activation and gradient buffers;
    by default glibc hands a freed block at the top of its heap back to the kernel and the
    next step faults the pages in again. Blocks up to 32 MiB are served from the heap and
    the heap is trimmed only above 1 GiB free. Returns whether the settings took (glibc
    only; elsewhere nothing changes).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, TypeError):  # not glibc (macOS, musl, Windows)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))


def compiled_run(session: Any) -> Any:
    """onnxruntime's compiled ``run(names, feed, run_options)``, or None when it is gone.

    ``InferenceSession.run`` is a Python wrapper that re-checks the feed's names and
    ownership before calling the compiled session; a caller that has validated its feed
    as strictly (``kit.runtime.Model.predict``) may skip it on the CPU provider.
    """
    native = getattr(session, "_sess", None)
    run = getattr(native, "run", None)
    return run if callable(run) else None


@contextlib.contextmanager
def native_output_to_file() -> Iterator[Path]:
    """What libraries print inside the block (converter progress, CPU probes), on file
    descriptors 1 and 2 and on ``sys.stdout``/``sys.stderr`` alike, goes to a file instead,
    whose path is yielded so an error can quote it."""
    with tempfile.NamedTemporaryFile("w+", prefix="kit-native-", suffix=".log") as log:
        saved = [os.dup(1), os.dup(2)]
        try:
            for fd in (1, 2):
                os.dup2(log.fileno(), fd)
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield Path(log.name)
        finally:
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
