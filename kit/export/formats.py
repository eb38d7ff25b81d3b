"""Writing each format into a staging directory, the ONNX file before those made from it
(the ORT file, OpenVINO IR); the torch.export capture is shared by ONNX and ``model.pt2``."""

from __future__ import annotations

import contextlib
import importlib
import logging
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from architectures import ModelSpec

from .._text import inert
from ..artifact import (
    FILE_NAMES,
    MODEL_FILE,
    OPENVINO_WEIGHTS,
    ORT_OPS_FILE,
    ArtifactFile,
    ModelFacts,
)
from ..catalogue import FORMATS as CATALOGUE
from ..errors import ArtifactError
from ..parity import ParityRun
from ..rule import Tolerance
from ..runners import home_select
from ..verify.check import check_artifacts
from .mobile import MobileFit
from .options import ExportOptions

log = logging.getLogger("kit.export")

__all__ = ["Written", "check_formats", "check_free_space", "progress_bar", "step", "write_formats"]

#: formats written from another file, which must come first
_MADE_FROM_ONNX = ("ort", "openvino")


@dataclass
class Written:
    """What writing the formats produced: each file's format, the ONNX opset, the ORT fit."""

    files: dict[str, str] = field(default_factory=dict)
    opset: int | None = None
    mobile: MobileFit | None = None
    #: the memory a file plans for its largest input, by file (ExecuTorch's)
    planned: dict[str, int] = field(default_factory=dict)
    #: files written at the example's size only, though the rules let it vary: why
    static: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def step(bar: Any, name: str) -> Iterator[None]:
    """One step of an export: shown on the progress bar, its duration logged."""
    bar.set_postfix_str(name)
    started = time.perf_counter()
    yield
    log.info("export step %s took %.2f s", name, time.perf_counter() - started)
    bar.update()


def write_formats(
    staging: Path,
    model: nn.Module,
    example: torch.Tensor,
    facts: ModelFacts,
    formats: Sequence[str],
    *,
    opset: int | None = None,
    ir_version: int | None = None,
    onnx_source: Path | None = None,
    openvino_fp16: bool = False,
    bar: Any,
) -> Written:
    """Write each of ``formats`` into ``staging``. ``onnx_source`` is the ONNX file the ORT
    and OpenVINO files are made from when ``onnx`` is not among ``formats``."""
    from .edge import export_openvino
    from .mobile import export_ort
    from .onnx import export_onnx
    from .program import export_program, save_program
    from .torchscript import export_torchscript

    written, program = Written(), None
    source = staging / MODEL_FILE if "onnx" in formats else onnx_source
    if {"onnx", "pt2"} & set(formats):
        with step(bar, "torch.export"):
            program = export_program(model, example, name=facts.name, rules=facts.dynamic)
    for fmt in sorted(formats, key=lambda f: f in _MADE_FROM_ONNX or _added(f) is not None):
        path = staging / FILE_NAMES[fmt]
        with step(bar, fmt):
            if fmt == "onnx":
                assert program is not None
                args = (program, example, path)
                written.opset = export_onnx(*args, opset=opset, facts=facts, ir_version=ir_version)
            elif fmt == "pt2":
                save_program(program, path)  # type: ignore[arg-type]
            elif fmt == "torchscript":
                export_torchscript(model, example, path, name=facts.name)
            elif (write := _added(fmt)) is not None:
                write(model, example, path, source)
            elif fmt in ("pte", "tflite"):
                _write_phone(fmt, model, example[:1], path, facts, written)
            elif source is None:
                raise ArtifactError(f"{fmt} is made from model.onnx; add onnx to the formats.")
            elif fmt == "ort":
                written.mobile = export_ort(source, path, staging / ORT_OPS_FILE)
                written.files[ORT_OPS_FILE] = "ort-operators"
            else:
                export_openvino(source, path, facts, fp16_weights=openvino_fp16)
                written.files[OPENVINO_WEIGHTS] = "openvino-weights"
        written.files[FILE_NAMES[fmt]] = fmt
    return written


def _write_phone(
    fmt: str,
    model: nn.Module,
    example: torch.Tensor,
    path: Path,
    facts: ModelFacts,
    written: Written,
) -> None:
    """``.pte`` or ``.tflite`` at a phone's static batch of one, height and width varying as
    the rules say; when the converter cannot do that, static at the example's size, the
    reason recorded (the manifest, the parity table and the report say so for the file)."""
    from .edge import export_pte, export_tflite

    write = export_pte if fmt == "pte" else export_tflite
    try:
        planned = write(model, example, path, name=facts.name, rules=facts.dynamic)
    except ArtifactError as exc:
        if facts.dynamic is None or not facts.dynamic.spatial:
            raise
        path.unlink(missing_ok=True)
        planned = write(model, example, path, name=facts.name, rules=None)
        shape = "x".join(map(str, facts.input_shape))
        written.static[path.name] = f"static at {shape}: varying sizes failed ({exc})"
    if planned is not None:
        written.planned[path.name] = planned


def _added(fmt: str) -> Any:
    """The writer of a format added to the catalogue with its own (None for kit's own)."""
    named = CATALOGUE[fmt].write
    if named is None:
        return None
    module, _, function = named.partition(":")
    return getattr(importlib.import_module(module), function)


def check_free_space(staging: Path, model: nn.Module, copies: int) -> None:
    """Refuse before writing when the disk cannot hold ``copies`` files of the weights.

    Every format stores the weights once; a write that runs out of space part-way can abort
    the whole process (torch's TorchScript writer does) rather than raise.
    """
    need = copies * sum(t.numel() * t.element_size() for t in model.state_dict().values())
    free = shutil.disk_usage(staging).free
    if need > free:
        raise ArtifactError(
            f"{staging.parent} has {free / 2**20:.0f} MiB free, and this export writes about "
            f"{need / 2**20:.0f} MiB ({copies} files that each hold the weights); free some "
            "space, pass --out on another disk, or export fewer --formats."
        )


def progress_bar(name: str, formats: Sequence[str], progress: bool) -> Any:
    from tqdm.auto import tqdm

    steps = bool({"onnx", "pt2"} & set(formats)) + len(formats) + 1
    show = progress or None
    desc = f"export {inert(name)}"  # a name from a manifest is file data
    return tqdm(total=steps, desc=desc, unit="step", disable=not show, leave=False)


def check_formats(
    staging: Path,
    model: nn.Module,
    spec: ModelSpec,
    options: ExportOptions,
    real: tuple[str, torch.Tensor] | None,
    seed: int,
    outputs: Sequence[str],
    static: Sequence[str] = (),
) -> ParityRun:
    """Parity of the ``options.formats`` files in ``staging`` against eager, each format in
    the runtime it is made for."""
    rule = Tolerance(
        spec.atol if options.atol is None else options.atol,
        spec.rtol if options.rtol is None else options.rtol,
    )
    return check_artifacts(
        model,
        staging,
        [ArtifactFile(FILE_NAMES[f], f) for f in options.formats],
        name=spec.name,
        input_shape=spec.input_shape,
        rules=options.dynamic,
        grid=options.grid,
        static=static,
        rule=rule,
        batch_sizes=options.batch_sizes,
        real=real,
        seed=seed,
        output_names=outputs,
        runtimes=sorted({home_select(f) for f in options.formats}),
    )
