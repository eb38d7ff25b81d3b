"""The errors kit raises. Each message is a sentence a user can act on.

This module imports nothing heavy: the torch-free runtime uses it too.
"""

from __future__ import annotations

from typing import Any


class KitError(Exception):
    """Base of every error kit reports to a user (the CLI prints it without a traceback)."""


class UsageError(KitError):
    """An option or argument is wrong (the CLI exits 2)."""


class ProviderError(UsageError):
    """An execution provider asked for by name cannot run on this machine (the CLI exits 2)."""


class DataError(KitError):
    """A data set is missing, corrupt or of the wrong kind."""


class WeightsError(KitError):
    """A weights file is missing, unreadable or does not fit the network."""


class ArtifactError(KitError):
    """An exported artifact is missing, corrupt, or does not match its manifest."""


class InputError(KitError):
    """An input array does not fit the model (every problem is listed in the message)."""


class ParityError(KitError):
    """An artifact does not compute what the eager network computes.

    ``report`` is the whole parity report (a ``kit.parity.ParityRun``) when there is
    one; ``kept`` is where ``--keep-failed`` left the failed artifacts.
    """

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report
        self.kept: Any = None


class ShapeMismatch(ParityError):
    """An artifact's output has a different shape than the eager output."""


class ToleranceExceeded(ParityError):
    """An artifact's output differs from eager beyond the tolerances."""


class TrainingError(KitError):
    """Training cannot go on (for example the loss became NaN)."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type when empty), without a full stop."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:limit].rstrip(".")


class RuntimeMissing(UsageError):
    """A second runtime (Node.js, npm, a browser) is not installed (the CLI exits 2)."""
