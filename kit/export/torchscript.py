"""TorchScript export (deprecated upstream; kept while users still deploy it).

torch 2.14 marks ``torch.jit`` deprecated with a FutureWarning on every call and 2.15 is
expected to make it an error, which is why kit pins torch below 2.15 and also writes a
``torch.export`` program. The warnings are silenced here on purpose, once, with a log line.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ..errors import ArtifactError, first_line

__all__ = ["export_torchscript", "load_torchscript", "quiet_jit"]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def quiet_jit() -> Iterator[None]:
    """Silence torch.jit's deprecation and tracer warnings inside the block."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def export_torchscript(model: nn.Module, example: torch.Tensor, path: Path, *, name: str) -> None:
    """Trace ``model`` with ``example`` and save it to ``path``.

    Tracing records the ops run for one input; the seed networks have no data-dependent
    control flow, and parity re-checks the result at batch sizes the trace never saw.
    """
    log.info("writing TorchScript (deprecated in torch 2.14; prefer model.pt2)")
    try:
        with quiet_jit(), torch.no_grad():
            # strict=False lets a network return a dict (a segmenter's {"out": ...})
            traced = torch.jit.trace(model, example, check_trace=False, strict=False)
            torch.jit.save(traced, str(path))
    except Exception as exc:  # tracing fails in many ways on code it cannot follow
        raise ArtifactError(
            f"TorchScript could not trace {name}: {first_line(exc)}; run with -v for the whole "
            "error, or leave torchscript out of --formats."
        ) from exc


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    """Load a TorchScript file on the CPU."""
    with quiet_jit():
        return torch.jit.load(str(path), map_location="cpu")
