"""torch.export: the forward-looking artifact (``model.pt2``) and the ONNX exporter's input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..artifact import MAX_BATCH, AxisRule, ShapeRules
from ..errors import ArtifactError, first_line
from .guards import explain_guards

__all__ = ["MAX_BATCH", "dynamic_shapes", "export_program", "save_program"]


def _dim(axis: str, rule: AxisRule) -> Any:
    """torch.export's form of one rule: a Dim, or a multiple of one (a derived Dim)."""
    if rule.multiple == 1:
        return torch.export.Dim(axis, min=rule.min, max=rule.max)
    base = torch.export.Dim(
        f"_{axis}", min=rule.min // rule.multiple, max=rule.max // rule.multiple
    )
    return rule.multiple * base


def dynamic_shapes(rules: ShapeRules | None, *, batch: bool = True) -> tuple[dict[int, Any]]:
    """The ``dynamic_shapes`` of a one-input network: the batch (``1..MAX_BATCH`` unless a
    rule says otherwise; none when ``batch`` is False, a phone's static batch of one) and
    each varying spatial axis."""
    rules = rules or ShapeRules()
    dims: dict[int, Any] = {}
    if batch:
        dims[0] = _dim("batch", rules.batch or AxisRule(1, MAX_BATCH))
    for axis, index in (("height", 2), ("width", 3)):
        if (rule := getattr(rules, axis)) is not None:
            dims[index] = _dim(axis, rule)
    return (dims,)


def export_program(
    model: nn.Module,
    example: torch.Tensor,
    *,
    name: str,
    rules: ShapeRules | None = None,
    batch: bool = True,
) -> torch.export.ExportedProgram:
    """``torch.export`` the network with a dynamic batch axis and the ``rules``' sizes.

    ``example`` should have a batch of at least 2: torch.export specialises sizes 0 and 1.

    Raises:
        ArtifactError: the network cannot be captured by torch.export, or not at the
            declared sizes (the sentence names the guard and the ``--dynamic`` that would
            export).
    """
    try:
        return torch.export.export(
            model, (example,), dynamic_shapes=dynamic_shapes(rules, batch=batch)
        )
    except Exception as exc:
        if rules is not None and (said := explain_guards(exc, model, name, rules)) is not None:
            raise ArtifactError(said) from exc
        raise ArtifactError(
            f"torch.export could not capture {name}: {first_line(exc)}; run with -v for the "
            "whole error (data-dependent control flow is the usual cause), or export with "
            "--formats torchscript."
        ) from exc


def save_program(program: torch.export.ExportedProgram, path: Path) -> None:
    """Write ``program`` to ``path``."""
    torch.export.save(program, str(path))
