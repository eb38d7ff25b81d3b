"""The formats of the runtimes PyTorch models ship to on devices: ExecuTorch (``model.pte``,
lowered to XNNPACK), LiteRT (``model.tflite``, via litert-torch) and OpenVINO (IR
``model.xml`` + ``model.bin``, converted from ``model.onnx``).

``.pte`` and ``.tflite`` have a static batch of one, as apps on phones run them; each is
checked at the batch it accepts. OpenVINO's IR keeps fp32 weights unless asked
(``openvino.save_model`` compresses them to fp16 by default) and carries the model's facts in
its ``rt_info``. Each writer needs its runtime's extra (``pip install 'kit[edge]'``).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._native import native_output_to_file
from ..artifact import FACTS_KEY, ModelFacts, ShapeRules
from ..catalogue import FORMATS, home_runtime
from ..errors import ArtifactError, RuntimeMissing, first_line
from ..runners.openvino import openvino_reason

__all__ = ["export_openvino", "export_pte", "export_tflite", "quantize_pte", "require"]


def require(fmt: str) -> Any:
    """The module ``fmt`` is written with.

    Raises:
        RuntimeMissing: it is not installed (the sentence names the extra).
    """
    record = FORMATS[fmt]
    module, extra, name = record.writes_with, home_runtime(fmt).extra, record.writer
    if fmt == "openvino":
        from ..runners.openvino import import_openvino

        return import_openvino()
    try:
        return importlib.import_module(str(module))
    except ImportError:
        raise RuntimeMissing(
            f"{name} is not installed, so kit cannot write or run {fmt} files: "
            f"pip install 'kit[{extra}]' (or 'kit[edge]' for all three)."
        ) from None


def _lower(program: Any, path: Path) -> int:
    """Lower ``program`` to XNNPACK into ``path``; the bytes its memory plan holds (sized
    for the largest input the program takes)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    done = lowered.to_executorch()
    path.write_bytes(done.buffer)
    plan = done.executorch_program.execution_plan[0]
    return int(sum(plan.non_const_buffer_sizes))


def _capture(model: nn.Module, example: torch.Tensor, rules: ShapeRules | None) -> Any:
    """torch.export at the static batch of one, height and width varying as ``rules`` say."""
    if rules is None or not rules.spatial:
        return torch.export.export(model, (example,))
    from .program import export_program

    return export_program(model, example, name="", rules=rules, batch=False)


def export_pte(
    model: nn.Module,
    example: torch.Tensor,
    path: Path,
    *,
    name: str,
    rules: ShapeRules | None = None,
) -> int | None:
    """``model`` captured at ``example``'s static shape (height and width varying as
    ``rules`` say) and lowered to XNNPACK as ``path``.

    Returns:
        The memory its plan holds for the largest input, when height or width varies.

    Raises:
        RuntimeMissing: ExecuTorch is not installed.
        ArtifactError: the network cannot be lowered.
    """
    require("pte")
    try:
        with native_output_to_file():
            planned = _lower(_capture(model, example, rules), path)
    except Exception as exc:  # the exporter and the lowering raise many types
        raise ArtifactError(
            f"ExecuTorch could not lower {name} to XNNPACK: {first_line(exc)}; leave pte out "
            "of --formats."
        ) from exc
    path.chmod(0o644)
    return planned if rules is not None and rules.spatial else None


def quantize_pte(
    model: nn.Module, example: torch.Tensor, calibration: np.ndarray, path: Path, *, name: str
) -> None:
    """``model`` quantized to int8 with PT2E and ExecuTorch's XNNPACK quantizer (per-channel
    symmetric weights), calibrated one sample at a time on ``calibration``, lowered as
    ``path``.

    Raises:
        RuntimeMissing: ExecuTorch is not installed.
        ArtifactError: quantization or lowering failed.
    """
    require("pte")
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    try:
        with native_output_to_file(), torch.no_grad():
            graph = torch.export.export(model, (example,)).module()
            quantizer = XNNPACKQuantizer().set_global(
                get_symmetric_quantization_config(is_per_channel=True)
            )
            prepared = prepare_pt2e(graph, quantizer)
            for i in range(len(calibration)):
                prepared(torch.from_numpy(calibration[i : i + 1]))
            quantized = convert_pt2e(prepared)
            _lower(torch.export.export(quantized, (example,)), path)
    except Exception as exc:  # torchao and the lowering raise many types
        raise ArtifactError(
            f"ExecuTorch could not quantize {name} to int8: {first_line(exc)}."
        ) from exc
    path.chmod(0o644)


def export_tflite(
    model: nn.Module,
    example: torch.Tensor,
    path: Path,
    *,
    name: str,
    rules: ShapeRules | None = None,
) -> None:
    """``model`` converted by litert-torch at ``example``'s static shape (height and width
    varying as ``rules`` say; LiteRT keeps no bounds, kit's rules are the bounds), as
    ``path``.

    Raises:
        RuntimeMissing: litert-torch is not installed.
        ArtifactError: the network cannot be converted.
    """
    litert_torch = require("tflite")
    try:
        with native_output_to_file():
            dims = None
            if rules is not None and rules.spatial:
                from .program import dynamic_shapes

                dims = dynamic_shapes(rules, batch=False)
            litert_torch.convert(model, (example,), dynamic_shapes=dims).export(str(path))
    except Exception as exc:  # the converter raises many types
        raise ArtifactError(
            f"litert-torch could not convert {name}: {first_line(exc)}; leave tflite out of --formats."
        ) from exc
    path.chmod(0o644)


def export_openvino(
    onnx_path: Path, xml: Path, facts: ModelFacts, *, fp16_weights: bool = False
) -> Sequence[Path]:
    """``onnx_path`` as OpenVINO IR (``xml`` and its ``.bin``), the facts in its rt_info,
    weights kept fp32 unless ``fp16_weights``.

    Raises:
        RuntimeMissing: OpenVINO is not installed.
        ArtifactError: the model cannot be converted.
    """
    ov = require("openvino")
    try:
        model = ov.Core().read_model(str(onnx_path))  # the ONNX frontend; no telemetry
        if facts.dynamic is not None:
            model.reshape({0: _bounded_shape(ov, facts)})
        model.set_rt_info(facts.to_json(), ["kit", FACTS_KEY])
        ov.save_model(model, str(xml), compress_to_fp16=fp16_weights)
    except Exception as exc:  # OpenVINO raises its own types
        raise ArtifactError(
            f"OpenVINO could not convert {onnx_path.name}: {openvino_reason(exc)}; leave "
            "openvino out of --formats."
        ) from exc
    written = [xml, xml.with_suffix(".bin")]
    for path in written:
        path.chmod(0o644)
    return written


def _bounded_shape(ov: Any, facts: ModelFacts) -> Any:
    """OpenVINO's form of the rules: each varying axis a bounded Dimension."""
    rules = facts.dynamic
    assert rules is not None
    dims = [ov.Dimension(*rules.batch_range())]
    for axis, size in zip(("channels", "height", "width"), facts.input_shape, strict=False):
        rule = getattr(rules, axis, None)
        dims.append(ov.Dimension(rule.min, rule.max) if rule is not None else ov.Dimension(size))
    return ov.PartialShape(dims)


def bundle_pte(pte: Path, out: Path, directory: Path, record: Any, cases: int = 8) -> None:
    """``pte`` with up to ``cases`` reference samples (one each, its static batch) and eager's
    outputs inside, as an ExecuTorch ``BundledProgram`` (checked on the device by ExecuTorch's
    own bundled-program runner).

    Raises:
        ArtifactError: ExecuTorch could not bundle them.
    """
    require("pte")
    from executorch.devtools.bundled_program.config import MethodTestCase, MethodTestSuite
    from executorch.devtools.bundled_program.core import BundledProgram
    from executorch.devtools.bundled_program.serialize import (
        serialize_from_bundled_program_to_flatbuffer,
    )

    from ..runtime.reference import read_tensor

    tests: list[Any] = []
    for s in record.sets:
        folder = directory / s.directory
        x = read_tensor(folder / "input_0.pb")
        ys = [read_tensor(p) for p in sorted(folder.glob("output_*.pb"))]
        for i in range(min(len(x), cases - len(tests))):
            sample = [torch.from_numpy(x[i : i + 1])]
            tests.append(
                MethodTestCase(
                    inputs=sample, expected_outputs=[torch.from_numpy(y[i : i + 1]) for y in ys]
                )
            )
    try:
        with native_output_to_file():
            bundled = BundledProgram(
                None, [MethodTestSuite("forward", tests)], pte_file_path=str(pte)
            )
            out.write_bytes(serialize_from_bundled_program_to_flatbuffer(bundled))
    except Exception as exc:  # the bundler raises many types
        raise ArtifactError(
            f"ExecuTorch could not bundle the reference samples: {first_line(exc)}."
        ) from exc
    out.chmod(0o644)
