"""A runtime in a child process, with a life cycle: the child starts on the first batch,
loads the model once, answers each batch as it comes, and ends when the session closes.

The protocol is one JSON line per batch on the child's stdin, ``{"file", "shape"}`` (a raw
little-endian float32 file), and one JSON line per answer on its stdout: ``{"outputs":
[...]}`` (each output a raw file the session decodes) or ``{"error": MESSAGE}``. Tensors
never travel as JSON numbers. Node.js (``runner.mjs``) and a pinned onnxruntime
(``ort_child.py``) speak it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = ["ChildSession"]


class ChildSession:
    """One child process answering batches for one model.

    Args:
        command: The child's command line, given the session's working folder.
        decode: One output's description (from the child's answer) -> its array.
        failure: The child's own words, and whether it stopped instead of answering ->
            the exception to raise.
    """

    def __init__(
        self,
        command: Callable[[Path], list[str]],
        decode: Callable[[dict[str, Any]], np.ndarray],
        failure: Callable[[str, bool], Exception],
    ) -> None:
        self._command, self._decode, self._failure = command, decode, failure
        self._work: Path | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None
        self._lock = threading.Lock()
        self._count = 0

    def _start(self) -> subprocess.Popen[str]:
        self._work = Path(tempfile.mkdtemp(prefix="kit-child-"))
        self._stderr = (self._work / "stderr.txt").open("w+")
        self._proc = subprocess.Popen(
            self._command(self._work),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        return self._proc

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Every output for the float32 batch ``x``."""
        with self._lock:
            proc = self._proc or self._start()
            assert self._work is not None and proc.stdin is not None and proc.stdout is not None
            self._count += 1
            path = self._work / f"in-{self._count}.bin"
            np.ascontiguousarray(x, dtype="<f4").tofile(path)
            try:
                request = {"file": str(path), "shape": list(x.shape), "id": self._count}
                proc.stdin.write(json.dumps(request) + "\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
            except OSError:  # the child is gone (a broken pipe)
                line = ""
            path.unlink(missing_ok=True)
            if not line:
                raise self._failure(f"stopped before answering: {self._last_words(proc)}", True)
            answer = json.loads(line)
            if "error" in answer:
                raise self._failure(str(answer["error"]), False)
            outputs = [self._decode(o) for o in answer["outputs"]]
            for o in answer["outputs"]:
                Path(o["file"]).unlink(missing_ok=True)
            return outputs

    def _last_words(self, proc: subprocess.Popen[str]) -> str:
        code = proc.wait(10)
        assert self._stderr is not None
        self._stderr.seek(0)
        tail = self._stderr.read().strip().splitlines()[-3:]
        return " | ".join(tail) or f"exit {code}"

    def close(self) -> None:
        """End the child (its stdin closed; killed if it does not go) and its files."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                if proc.stdin is not None:
                    proc.stdin.close()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                if proc.stdout is not None:
                    proc.stdout.close()
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None
            if self._work is not None:
                shutil.rmtree(self._work, ignore_errors=True)
                self._work = None

    def __enter__(self) -> ChildSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (None before the first batch, after close)."""
        return None if self._proc is None else self._proc.pid
