"""Never claimed, always checked: what each written file really accepts, read back from the
file (the ONNX graph's input dims, the program's range constraints, OpenVINO's partial
shape, the ``.tflite`` input signature, the ``.pte`` program's planned input), compared with
the sizes the export declared. An axis a file fixes against the declaration fails the export.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .._native import native_output_to_file
from ..artifact import AXES, AxisRule, ModelFacts
from ..errors import ArtifactError, first_line

__all__ = ["Accepts", "check_declared"]


@dataclass(frozen=True)
class Accepts:
    """What a file accepts on one axis: one ``size``, or sizes from ``low`` to ``high``
    (None where the file sets no bound)."""

    size: int | None = None
    low: int | None = None
    high: int | None = None

    @property
    def fixed(self) -> bool:
        return self.size is not None


def _onnx(path: Path) -> list[Accepts]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    return [Accepts(d.dim_value) if d.HasField("dim_value") else Accepts() for d in dims]


def _ort(path: Path) -> list[Accepts]:
    import onnxruntime as ort

    shape = (
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()[0].shape
    )
    return [Accepts(d) if isinstance(d, int) else Accepts() for d in shape]


def _pt2(path: Path) -> list[Accepts]:
    import torch

    program = torch.export.load(str(path))
    user = program.graph_signature.user_inputs[0]
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == user)
    found = []
    for dim in node.meta["val"].shape:
        if isinstance(dim, int):
            found.append(Accepts(dim))
            continue
        bounds = program.range_constraints.get(dim.node.expr)
        low = int(bounds.lower) if bounds is not None else None
        high = int(bounds.upper) if bounds is not None else None
        found.append(Accepts(low=low, high=high))
    return found


def _openvino(path: Path) -> list[Accepts]:
    from ..runners.openvino import import_openvino

    ov = import_openvino()
    shape = ov.Core().read_model(str(path)).input(0).get_partial_shape()
    found = []
    for d in shape:
        if d.is_static:
            found.append(Accepts(d.get_length()))
        else:
            high = d.get_max_length()
            found.append(Accepts(low=d.get_min_length(), high=None if high < 0 else high))
    return found


def _tflite(path: Path) -> list[Accepts]:
    from ai_edge_litert.interpreter import Interpreter

    with native_output_to_file():
        detail = Interpreter(model_path=str(path)).get_input_details()[0]
    return [Accepts(int(s)) if s >= 0 else Accepts() for s in detail["shape_signature"]]


def _pte(path: Path) -> list[Accepts]:
    """ExecuTorch plans memory at each dim's upper bound and records only that: a varying
    axis shows as its largest size (compared with the rule's maximum)."""
    from executorch.runtime import Runtime

    with native_output_to_file():
        meta = Runtime.get().load_program(str(path)).metadata("forward")
    return [Accepts(low=None, high=int(s)) for s in meta.input_tensor_meta(0).sizes()]


_READERS: dict[str, Callable[[Path], list[Accepts]]] = {
    "onnx": _onnx,
    "ort": _ort,
    "pt2": _pt2,
    "openvino": _openvino,
    "tflite": _tflite,
    "pte": _pte,
}


def check_declared(
    staging: Path, files: dict[str, str], facts: ModelFacts, static: dict[str, str] | None = None
) -> list[str]:
    """Compare what each file accepts with ``facts``' rules; notes on what could not be read
    back (TorchScript keeps no input shape: the grid is its proof) and on the ``static``
    files (written at the example's size only, by name: why).

    Raises:
        ArtifactError: a file fixes an axis the rules let vary, or bounds it elsewhere
            (naming the file, the axis and the size).
    """
    rules = facts.dynamic
    if rules is None:
        return []
    notes = [f"{name} is {why}" for name, why in (static or {}).items()]
    for name, fmt in files.items():
        if name in (static or {}):
            continue
        reader = _READERS.get(fmt)
        if reader is None:
            if fmt == "torchscript":
                notes.append(f"{name} keeps no input shape to read back; the size grid proves it")
            continue
        try:
            accepts = reader(staging / name)
        except Exception as exc:  # each runtime's reader raises its own types
            raise ArtifactError(
                f"kit could not read back what {name} accepts: {first_line(exc)}."
            ) from exc
        for axis, rule in rules.named():
            if (problem := _against(fmt, accepts, axis, rule)) is not None:
                raise ArtifactError(
                    f"{name} {problem}, against --dynamic {rule.flag(axis)}; nothing was written."
                )
    return notes


def _against(fmt: str, accepts: list[Accepts], axis: str, rule: AxisRule) -> str | None:
    index = AXES[axis]
    if index >= len(accepts):
        return f"has no {axis} axis"
    found = accepts[index]
    if axis == "batch" and fmt in ("pte", "tflite"):
        return None  # a phone's static batch of one, by design (the parity table says so)
    if fmt == "pte":
        return (
            None
            if found.high == rule.max
            else f"plans {axis} at {found.high}, not up to {rule.max}"
        )
    if found.fixed:
        return f"fixes {axis} at {found.size}"
    for bound, want, what in ((found.low, rule.min, "from"), (found.high, rule.max, "up to")):
        if bound is not None and bound != want:
            return f"takes {axis} {what} {bound}, not {want}"
    return None
