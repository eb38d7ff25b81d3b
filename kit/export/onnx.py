"""ONNX export through the torch.onnx dynamo exporter, checked with ``onnx.checker``."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import torch

from ..artifact import AXES, FACTS_KEY, INPUT_NAME, ModelFacts
from ..errors import ArtifactError, first_line

__all__ = ["check_onnx", "export_onnx"]


def export_onnx(
    program: torch.export.ExportedProgram,
    example: torch.Tensor,
    path: Path,
    *,
    opset: int | None,
    facts: ModelFacts,
    ir_version: int | None = None,
) -> int | None:
    """Write ``program`` to ``path`` as ONNX with a dynamic ``batch`` axis (and ``height``
    and ``width`` where the program lets them vary).

    The input is named ``input``, the outputs ``facts.outputs`` (one per tensor the
    network returns, each with the same dynamic batch axis); ``facts`` (input shape, mean/std,
    class names, weights' sha256, kit version) go into ``metadata_props`` so a runtime
    needs nothing else. ``ir_version`` caps the file's IR version for an older runtime. The
    file is checked with the full ONNX checker (which runs strict shape inference) before
    this returns.

    Returns:
        The ONNX opset the file uses.

    Raises:
        ArtifactError: the exporter or the checker failed.
    """
    try:
        # The exporter narrates its steps on stdout; kit reports results, not steps.
        with contextlib.redirect_stdout(io.StringIO()):
            onnx_program = torch.onnx.export(
                program,
                (example,),
                input_names=[INPUT_NAME],
                output_names=list(facts.outputs),
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
    except Exception as exc:
        raise ArtifactError(
            f"torch.onnx could not export {facts.name}: {first_line(exc)}; run with -v "
            "for the exporter's whole report, or leave onnx out of --formats."
        ) from exc
    assert onnx_program is not None
    _name_axes(onnx_program)
    if ir_version is not None and onnx_program.model.ir_version > ir_version:
        onnx_program.model.ir_version = ir_version  # an older runtime's (kit export --target)
    onnx_program.model.metadata_props[FACTS_KEY] = facts.to_json()
    onnx_program.model.producer_name = "kit"
    onnx_program.save(path, external_data=False)
    check_onnx(path)
    return onnx_program.model.opset_imports.get("")


def check_onnx(path: Path) -> None:
    """Run the full ONNX checker on ``path``.

    Raises:
        ArtifactError: the file is not a valid ONNX model.
    """
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # checker raises ValidationError, decode errors, OSError
        raise ArtifactError(f"{path.name} is not a valid ONNX model: {exc}".strip()) from None


def _name_axes(onnx_program: Any) -> None:
    """The input's varying axes by name (``batch``, ``height``, ``width``) wherever their
    sizes appear in the graph, instead of the exporter's symbols (``s77``, ``32*s9``)."""
    shape = onnx_program.model.graph.inputs[0].shape
    if shape is None:
        return
    names = {}
    for axis, index in AXES.items():
        if index < len(shape) and not isinstance(dim := shape[index], int):
            names[dim] = axis
    if names:
        onnx_program.rename_axes(names)
