"""TorchScript export (deprecated upstream; kept while users still deploy it).

torch 2.14 marks ``torch.jit`` deprecated with a FutureWarning on every call and 2.15 is
expected to make it an error, which is why kit pins torch below 2.15 and also writes a
``torch.export`` program. The warnings are silenced here on purpose, once, with a log line.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from ..errors import ArtifactError, first_line
from ..runners.torch import quiet_jit

__all__ = ["export_torchscript"]

log = logging.getLogger(__name__)


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
