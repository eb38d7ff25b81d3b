"""Verifying artifacts against eager PyTorch: parity (:mod:`.check`) and, when it fails or
is asked for, where the ONNX file parts from eager, layer by layer (:mod:`.explain`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import read_manifest
from ..parity import ParityRun, random_inputs
from .check import (
    EndpointCheck,
    Real,
    check_artifacts,
    rebuild_reference,
    saved_spec,
    verify_reference,
    verify_saved,
)

__all__ = [
    "EndpointCheck",
    "check_artifacts",
    "explain_saved",
    "rebuild_reference",
    "saved_spec",
    "verify_reference",
    "verify_saved",
]


def explain_saved(
    directory: Path,
    report: ParityRun,
    real: Real,
    *,
    asked: bool,
    factory: str | None = None,
) -> list[Any]:
    """Layer-by-layer localisation (:class:`~kit.verify.explain.Localisation`): of
    ``model.onnx`` and every variant when ``asked``, of ``model.onnx`` by itself whenever
    an ONNX comparison in ``report`` diverged; nothing when files failed their sha256."""
    diverged = any(
        c.artifact == "onnx" and c.kind in ("tolerance", "nonfinite") for c in report.failures
    )
    if not (asked or diverged) or report.problems:
        return []
    from .explain import explain_export

    manifest = read_manifest(directory)
    spec, model = rebuild_reference(directory, manifest, factory)
    x = real[1][:32].numpy() if real is not None else random_inputs(spec.input_shape, (2,))[0][1]
    batch = np.ascontiguousarray(x, np.float32)
    return explain_export(directory, manifest, model, batch, rule=report.rule, variants=asked)
