"""The ``kit`` command line: one thin command per verb (parse, call, print).

Heavy libraries (torch, onnx, onnxruntime) are imported inside the commands, so
``kit --help`` answers at once.
"""

from __future__ import annotations

# The commands register themselves on ``cli`` when their modules are imported.
from . import artifacts, batch, check, deploy, doctor, report, serving, training  # noqa: F401
from ._common import cli

__all__ = ["cli", "main"]


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="kit")


if __name__ == "__main__":
    main()
