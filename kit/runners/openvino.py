"""OpenVINO IR (``model.xml``) on OpenVINO's CPU plugin, at the precision it is told.

Parity is judged at f32 (``INFERENCE_PRECISION_HINT=f32``). Where the CPU's default differs
(bf16 on CPUs with AVX512_BF16 or AMX), a second runner at the default says what a
deployment that keeps it gets: an advisory row, a warning with its numbers when it is
outside tolerance, never a silent pass nor a false failure.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from .._native import native_output_to_file
from ..artifact import ArtifactFile
from ..errors import ArtifactError, RuntimeMissing, first_line
from ..parity import Runner
from .registry import Backend, RunnerOptions, artifact_label, register

__all__ = ["HINT", "import_openvino", "openvino_reason"]

#: the property that sets the CPU plugin's arithmetic precision
HINT = "INFERENCE_PRECISION_HINT"


def import_openvino() -> Any:
    """``openvino``, imported without its telemetry: ``import openvino`` reports usage to
    Google Analytics from a forked process unless ``openvino_telemetry`` is absent, in which
    case OpenVINO uses its own no-op stub. Checking a model sends nothing anywhere.

    Raises:
        RuntimeMissing: OpenVINO is not installed.
    """
    if "openvino_telemetry" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]
    try:
        import openvino
    except ImportError:
        raise RuntimeMissing(
            "OpenVINO is not installed, so kit cannot write or run OpenVINO IR: pip install "
            "'kit[openvino]' (or 'kit[edge]')."
        ) from None
    return openvino


def openvino_reason(exc: BaseException) -> str:
    """OpenVINO's own words for an error: its first lines only say which of its source files
    threw (``Exception from src/inference/src/cpp/core.cpp:84:``), so they are skipped, and
    the operations it has no rule for lead when that is why."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "No conversion rule found for operations:" in line:
            ops = line.split(":", 1)[1].strip()
            return f"OpenVINO has no operator {ops}, which the model uses"
    said = [line for line in lines if not line.startswith("Exception from ")]
    return " ".join(said)[:500].rstrip(". ") or first_line(exc)


def _ready() -> None:
    import_openvino()


def _precision(compiled: Any) -> str:
    """``f32`` / ``bf16`` / ``f16`` for the plugin's ``Type`` (its name, in its own words)."""
    return {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(
        compiled.get_property(HINT).to_string(), compiled.get_property(HINT).to_string()
    )


def _run(compiled: Any) -> Any:
    outputs = list(compiled.outputs)

    def run(x: np.ndarray) -> list[np.ndarray]:
        answer = compiled([np.ascontiguousarray(x, np.float32)])
        return [np.asarray(answer[o]) for o in outputs]

    return run


def _make(path: Path, artifact: ArtifactFile, options: RunnerOptions) -> list[Runner]:
    ov = import_openvino()

    core = ov.Core()
    try:
        with native_output_to_file():  # its other frontends narrate a file they cannot read
            model = core.read_model(str(path))
        exact = core.compile_model(model, "CPU", {HINT: "f32"})
        default = core.compile_model(model, "CPU")
    except Exception as exc:  # OpenVINO raises its own types
        raise ArtifactError(f"OpenVINO cannot load {path.name}: {openvino_reason(exc)}.") from None
    name, version = artifact_label(artifact), ov.__version__.split("-")[0]
    runners = [
        Runner(
            name,
            f"openvino {version} CPU (f32)",
            _run(exact),
            precision=artifact.precision,
            key="openvino",
        )
    ]
    if (fallback := _precision(default)) != "f32":
        note = (
            f"OpenVINO's CPU plugin runs {path.name} at {fallback} by default on this CPU: its "
            f"row is advisory (a warning, not a failure); {HINT}=f32 makes a deployment exact"
        )
        runners.append(
            Runner(
                name,
                f"openvino {version} CPU ({fallback}, the CPU's default)",
                _run(default),
                precision=artifact.precision,
                note=note,
                advisory=True,
                key="openvino-default",
            )
        )
    return runners


register(Backend("openvino", "openvino", ("openvino",), _make, _ready))
