"""The parity matrix's columns: one per runtime record of :mod:`kit.catalogue`, whether it
can run on this machine, and the command that fills it."""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass

from ..cache import onnxruntime_dir
from ..catalogue import RUNTIMES, Runtime, pinned
from ..embed.packages import find_browser

__all__ = ["Column", "columns_for", "missing", "parity_kind"]


@dataclass(frozen=True)
class Column:
    """One runtime of the matrix: its catalogue record."""

    record: Runtime

    @property
    def key(self) -> str:
        return self.record.key

    @property
    def title(self) -> str:
        return self.record.title

    @property
    def formats(self) -> tuple[str, ...]:
        return self.record.formats

    def missing(self) -> str | None:
        """Why it cannot run here (None: it can)."""
        return missing(self.record)

    def command(self, directory: str) -> list[str]:
        """The ``kit`` arguments that fill this column for the export in ``directory``."""
        args = ["parity", directory]
        if self.record.select != "python":
            args += ["--runtime", self.record.select]
        provider = self.record.provider
        return args + (["--provider", provider] if provider != "auto" else [])


def parity_kind(runtimes: tuple[str, ...], provider: str = "auto", reference: bool = False) -> str:
    """The result name of a ``kit parity`` run: ``parity-node+python``, ``parity-python-cuda``."""
    kind = "parity-" + "+".join(sorted(set(runtimes)))
    if provider != "auto":
        kind += f"-{provider}"
    return kind + ("-reference" if reference else "")


def _lacking(need: str, record: Runtime) -> str | None:
    """Why ``need`` (a catalogue requirement) is not met here, or None."""
    kind, _, name = need.partition(":")
    if kind == "module" and importlib.util.find_spec(name) is None:
        extra = f" (pip install 'kit[{record.extra}]')" if record.extra else ""
        return f"{name} is not installed here{extra}"
    if kind == "program" and shutil.which(name) is None:
        return f"{name} is not installed here (not on PATH)"
    if kind == "chromium" and not find_browser():
        return "no system Chromium here (apt-get install chromium)"
    if kind == "gpu":
        from ..runtime.providers import cuda_available

        return None if cuda_available() else "no GPU on this machine"
    if kind == "pinned" and not onnxruntime_dir(name).is_dir():
        return f"onnxruntime {name} is not in kit's cache yet (the command installs it)"
    return None


def missing(record: Runtime) -> str | None:
    """Why ``record``'s runtime cannot run on this machine (None: it can)."""
    return next((why for need in record.needs if (why := _lacking(need, record))), None)


def columns_for(keys: set[str], pinned_versions: list[str]) -> list[Column]:
    """A column per runtime record shown always, those shown with rows when ``keys`` (the
    runtime keys results hold) have theirs, and one per pinned onnxruntime version."""
    found = [
        Column(r)
        for r in RUNTIMES.values()
        if r.shown == "always" or (r.shown == "with-rows" and r.key in keys)
    ]
    return found + [Column(pinned(v)) for v in sorted(set(pinned_versions))]
