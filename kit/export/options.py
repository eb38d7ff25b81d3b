"""What an export is asked to do, and what it produced."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..artifact import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_CALIBRATION_SIZE,
    DEFAULT_FORMATS,
    Limits,
    Manifest,
    ShapeRules,
    VariantRecord,
)
from ..data import DataChoice
from ..errors import UsageError
from ..parity import ParityRun

__all__ = ["Calibration", "ExportOptions", "ExportResult", "check_request"]


@dataclass(frozen=True)
class Calibration:
    """How int8 variants are calibrated and checked: ``size`` training samples of the data
    ``data`` names (None: what the export's manifest records, else the network's recipe),
    or random inputs when ``random``."""

    size: int = DEFAULT_CALIBRATION_SIZE
    random: bool = False
    data: DataChoice | None = None
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class ExportOptions:
    """How to export and check (``kit export`` options).

    Attributes:
        formats: Subset of ``FORMATS`` (``ort`` needs ``onnx``, which it is converted from).
        opset: ONNX opset (the exporter's default when None).
        atol: Absolute tolerance (the network's when None).
        rtol: Relative tolerance (the network's when None).
        batch_sizes: Random batch sizes for parity.
        output_names: Names of the ONNX outputs (default: ``logits``, a dict's keys, or
            ``output_0..`` for a tuple).
        keep_failed: On a parity failure, keep the artifacts in ``OUT/NAME.parity-failed/``.
        progress: Show a progress bar on a terminal.
        precisions: Variants to add once the export lands: int8 (``model.int8.onnx``, and
            ``model.int8.pte`` when pte is among the formats) and fp16.
        calibration: How those variants are calibrated and checked.
        openvino_fp16: Compress OpenVINO IR weights to fp16 (kept fp32 by default).
        target: A runtime the ONNX file must load in (``onnxruntime==1.16.3``,
            ``triton==24.01``): its opset and IR version are chosen for it.
        dynamic: The sizes the input may take (``--dynamic``); every file is read back
            against them and proven on their grid.
        grid: (height, width) sizes parity adds to the rules' grid (``--grid``).
    """

    formats: Sequence[str] = DEFAULT_FORMATS
    opset: int | None = None
    atol: float | None = None
    rtol: float | None = None
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES
    output_names: Sequence[str] | None = None
    keep_failed: bool = False
    progress: bool = True
    precisions: Sequence[str] = ()
    calibration: Calibration = field(default_factory=Calibration)
    openvino_fp16: bool = False
    target: str | None = None
    dynamic: ShapeRules | None = None
    grid: Sequence[tuple[int, int]] = ()


@dataclass
class ExportResult:
    """Where the artifacts landed, how parity went, and the variants added."""

    directory: Path
    report: ParityRun
    manifest: Manifest
    #: what the export found worth saying besides parity (random weights, model.ort's fit)
    notes: list[str] = field(default_factory=list)
    variants: dict[str, VariantRecord] = field(default_factory=dict)


def check_request(
    *,
    adding: bool,
    formats: Sequence[str],
    precisions: Sequence[str],
    target: str | None,
    new_facts: bool,
) -> None:
    """The rules of one export request, checked before anything is written: which
    precisions need which formats, what only a new export can set.

    Args:
        adding: Formats are added to an existing export (not a new one).
        new_facts: --mean, --std or --class-names were given.

    Raises:
        UsageError: the request breaks one (the sentence names the flags).
    """
    pte_int8 = list(precisions) == ["int8"] and "pte" in formats
    if not adding and precisions and "onnx" not in formats and not pte_int8:
        raise UsageError(
            "--precision int8 and fp16 variants need onnx in --formats (int8 also comes as "
            "model.int8.pte with pte)."
        )
    if target is not None and adding:
        raise UsageError("--target sets how model.onnx is written; export again with --model.")
    if target is not None:
        from ..compat import export_limits, parse_target

        export_limits(parse_target(target))  # refuse before exporting anything
    if adding and new_facts:
        raise UsageError(
            "--mean, --std and --class-names say how a new export is made; export again with "
            "--model (an export's facts are fixed once its files are proven)."
        )
