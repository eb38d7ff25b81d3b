"""torch.export: the forward-looking artifact (``model.pt2``) and the ONNX exporter's input."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import ArtifactError, first_line

__all__ = ["MAX_BATCH", "export_program", "save_program"]

#: Upper bound of the dynamic batch axis (torch.export needs one to reason about shapes).
MAX_BATCH = 65536


def export_program(
    model: nn.Module, example: torch.Tensor, *, name: str
) -> torch.export.ExportedProgram:
    """``torch.export`` the network with a dynamic batch axis.

    ``example`` should have a batch of at least 2: torch.export specialises sizes 0 and 1.

    Raises:
        ArtifactError: the network cannot be captured by torch.export.
    """
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    try:
        return torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    except Exception as exc:
        raise ArtifactError(
            f"torch.export could not capture {name}: {first_line(exc)}; run with -v for the "
            "whole error (data-dependent control flow is the usual cause), or export with "
            "--formats torchscript."
        ) from exc


def save_program(program: torch.export.ExportedProgram, path: Path) -> None:
    """Write ``program`` to ``path``."""
    torch.export.save(program, str(path))
