"""Export a network to TorchScript, torch.export and ONNX, verified before it lands.

:func:`export_model` writes every artifact into a temporary directory beside the target,
runs parity against the eager network, writes ``manifest.json`` and only then moves the
directory into place: an interrupted or failed export leaves nothing half-written.
:func:`kit.export.verify.verify_saved` reruns the same checks on a saved directory.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from architectures import ModelSpec

from .._files import write_json_atomic
from ..artifact import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_FORMATS,
    FAILED_SUFFIX,
    FILE_NAMES,
    FORMATS,
    MODEL_FILE,
    ORT_OPS_FILE,
    PARITY_FILE,
    WEIGHTS_FILE,
    ModelFacts,
    describe_files,
    write_manifest,
)
from ..errors import ArtifactError, ParityError, UsageError, first_line
from ..outputs import flatten_outputs, output_names
from ..parity import ParityReport
from .manifest import Provenance, build_manifest
from .mobile import MobileFit
from .verify import check_artifacts

log = logging.getLogger(__name__)

__all__ = ["ExportOptions", "ExportResult", "Provenance", "export_model", "parse_formats"]


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
    """

    formats: Sequence[str] = DEFAULT_FORMATS
    opset: int | None = None
    atol: float | None = None
    rtol: float | None = None
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES
    output_names: Sequence[str] | None = None
    keep_failed: bool = False
    progress: bool = True


@dataclass
class ExportResult:
    """Where the artifacts landed and how parity went."""

    directory: Path
    report: ParityReport
    manifest: dict[str, Any]
    #: what the export found worth saying besides parity (``model.ort``'s operators)
    notes: list[str] = field(default_factory=list)


def parse_formats(text: str) -> list[str]:
    """``"onnx,pt2"`` -> ``["onnx", "pt2"]``.

    Raises:
        UsageError: an unknown or empty format list.
    """
    formats = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise UsageError(
            f"Unknown format {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}."
        )
    if "ort" in formats and "onnx" not in formats:
        raise UsageError("ort is converted from the ONNX file; add onnx to the formats.")
    return sorted(dict.fromkeys(formats), key=FORMATS.index)  # onnx before the ort made from it


def model_facts(
    spec: ModelSpec, outputs: Sequence[str], classes: int | None, weights_sha256: str | None
) -> ModelFacts:
    """The facts a runtime needs, embedded in the ONNX file and the manifest.

    ``classes`` is the width of a classifier's one 2-D output (None for other networks,
    which then carry no class names).
    """
    import kit

    return ModelFacts(
        name=spec.name,
        input_shape=tuple(spec.input_shape),
        mean=tuple(spec.mean),
        std=tuple(spec.std),
        outputs=tuple(outputs),
        num_classes=classes or 0,
        class_names=tuple(spec.labels(classes)) if classes else (),
        atol=spec.atol,
        rtol=spec.rtol,
        weights_sha256=weights_sha256,
        kit_version=kit.__version__,
    )


@dataclass
class _Traced:
    """One eager run on the example input: output names, shapes and the class count."""

    names: list[str]
    shapes: list[tuple[int, ...]]
    classes: int | None


def _trace_outputs(
    spec: ModelSpec, model: nn.Module, example: torch.Tensor, override: Sequence[str] | None
) -> _Traced:
    try:
        with torch.no_grad():
            out = model(example)
    except Exception as exc:  # a user's network can fail in any way
        raise ArtifactError(
            f"{spec.name} fails on an input of shape {tuple(example.shape)}: "
            f"{first_line(exc)}; check --input-shape."
        ) from exc
    tensors = flatten_outputs(out, network=spec.name)
    names = output_names(out, override, network=spec.name)
    classes = None
    if len(tensors) == 1 and tensors[0].ndim == 2:
        classes = int(tensors[0].shape[1])
    return _Traced(names, [tuple(t.shape[1:]) for t in tensors], classes)


@contextlib.contextmanager
def _step(bar: Any, name: str) -> Iterator[None]:
    """One step of an export: shown on the progress bar, its duration logged."""
    bar.set_postfix_str(name)
    started = time.perf_counter()
    yield
    log.info("export step %s took %.2f s", name, time.perf_counter() - started)
    bar.update()


def _make_staging_dir(out_root: Path, name: str) -> Path:
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out_root, prefix=f".{name}.partial-"))
        staging.chmod(0o755)  # mkdtemp makes it private; artifacts are meant to be shared
        return staging
    except OSError as exc:
        raise ArtifactError(
            f"Cannot write to output directory {out_root}: {exc.strerror}."
        ) from None


def _move_into_place(staging: Path, target: Path) -> None:
    backup = None
    if target.exists():
        backup = target.with_name(f".{target.name}.old-{staging.name}")
        target.rename(backup)
    staging.rename(target)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


@dataclass
class _Written:
    """What writing the formats produced beyond the files: the ONNX opset, the ORT fit."""

    opset: int | None = None
    mobile: MobileFit | None = None


def _write_artifacts(
    staging: Path,
    model: nn.Module,
    example: torch.Tensor,
    spec: ModelSpec,
    formats: Sequence[str],
    opset: int | None,
    facts: ModelFacts,
    bar: Any,
) -> _Written:
    """Write each format into ``staging`` (ONNX before the ORT file made from it)."""
    from .mobile import export_ort
    from .onnx import export_onnx
    from .program import export_program, save_program
    from .torchscript import export_torchscript

    program = None
    if {"onnx", "pt2"} & set(formats):
        with _step(bar, "torch.export"):
            program = export_program(model, example, name=spec.name)
    written = _Written()
    for fmt in formats:
        path = staging / FILE_NAMES[fmt]
        with _step(bar, fmt):
            if fmt == "onnx":
                assert program is not None
                written.opset = export_onnx(program, example, path, opset=opset, facts=facts)
            elif fmt == "pt2":
                assert program is not None
                save_program(program, path)
            elif fmt == "ort":
                written.mobile = export_ort(staging / MODEL_FILE, path, staging / ORT_OPS_FILE)
            else:
                export_torchscript(model, example, path, name=spec.name)
    return written


def _keep_failed(staging: Path, target: Path, report: ParityReport) -> Path:
    """Move a failed export to ``target`` (replacing an older one) with its report."""
    write_json_atomic(staging / PARITY_FILE, report.to_dict())
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


def export_model(
    spec: ModelSpec,
    model: nn.Module,
    out_root: Path,
    source: Provenance | None = None,
    options: ExportOptions | None = None,
    *,
    real: tuple[str, torch.Tensor] | None = None,
    extra: dict[str, Any] | None = None,
) -> ExportResult:
    """Export ``model`` to ``out_root/spec.name`` and verify every artifact.

    Args:
        spec: The network's facts.
        model: The eager network with its final weights.
        out_root: Parent of the artifact directory (``exported/``).
        source: How the network was built (recorded so parity can rebuild it; default:
            a registered network with random weights from seed 0).
        options: Formats, tolerances, batch sizes, output names (default: all formats).
        real: Real samples ``(label, batch)`` for parity.
        extra: More manifest entries (training metrics, say).

    Returns:
        The landed directory, the parity report and the manifest.

    Raises:
        ArtifactError: an exporter failed or the output cannot be written.
        ParityError: an artifact disagrees with eager (nothing lands in ``NAME/``).
    """
    source = source or Provenance()
    options = options or ExportOptions()
    model = model.eval()
    example = torch.randn(
        2, *spec.input_shape, generator=torch.Generator().manual_seed(source.seed)
    )
    traced = _trace_outputs(spec, model, example, options.output_names)
    facts = model_facts(spec, traced.names, traced.classes, source.weights_sha256)
    staging = _make_staging_dir(out_root, spec.name)
    try:
        _check_free_space(staging, model, len(options.formats) + (source.weights is not None))
        files, written, report = _stage(staging, model, example, spec, facts, source, options, real)
        try:
            report.raise_for_failures()
        except ParityError as exc:
            if options.keep_failed:
                exc.kept = _keep_failed(staging, out_root / f"{spec.name}{FAILED_SUFFIX}", report)
            raise
        manifest = build_manifest(
            facts,
            source,
            output_shapes=traced.shapes,
            files=files,
            opset=written.opset,
            parity=report.to_dict(),
            extra=_mobile_record(written.mobile) | (extra or {}),
        )
        write_manifest(staging, manifest)
        target = out_root / spec.name
        _move_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    notes = [n for n in (source.random_weights_note(spec.name),) if n]
    notes += [written.mobile.summary()] if written.mobile else []
    return ExportResult(directory=target, report=report, manifest=manifest, notes=notes)


def _mobile_record(fit: MobileFit | None) -> dict[str, Any]:
    """The manifest's ``mobile`` entry: the ORT file's operators and its fit."""
    if fit is None:
        return {}
    return {
        "mobile": {
            "operators": list(fit.ops),
            "outside_default_set": list(fit.outside_default),
            "operators_file": ORT_OPS_FILE,
        }
    }


def _check_free_space(staging: Path, model: nn.Module, copies: int) -> None:
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


def _stage(
    staging: Path,
    model: nn.Module,
    example: torch.Tensor,
    spec: ModelSpec,
    facts: ModelFacts,
    source: Provenance,
    options: ExportOptions,
    real: tuple[str, torch.Tensor] | None,
) -> tuple[dict[str, dict[str, Any]], _Written, ParityReport]:
    """Write every artifact into ``staging`` and check them: (files, written, report)."""
    from tqdm.auto import tqdm

    formats = options.formats
    steps = bool({"onnx", "pt2"} & set(formats)) + len(formats) + 1
    bar = tqdm(
        total=steps,
        desc=f"export {spec.name}",
        unit="step",
        disable=not options.progress or None,
        leave=False,
    )
    written = _write_artifacts(staging, model, example, spec, formats, options.opset, facts, bar)
    file_formats = {FILE_NAMES[f]: f for f in formats}
    if written.mobile is not None:
        file_formats[ORT_OPS_FILE] = "ort-operators"
    if source.weights is not None:
        _save_weights(model, staging / WEIGHTS_FILE)
        file_formats[WEIGHTS_FILE] = "safetensors"
    with _step(bar, "parity"):
        report = check_artifacts(
            model,
            {f: staging / FILE_NAMES[f] for f in formats},
            name=spec.name,
            input_shape=spec.input_shape,
            atol=spec.atol if options.atol is None else options.atol,
            rtol=spec.rtol if options.rtol is None else options.rtol,
            batch_sizes=options.batch_sizes,
            real=real,
            seed=source.seed,
            output_names=facts.outputs,
        )
    bar.close()
    return describe_files(staging, file_formats), written, report


def _save_weights(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    path.chmod(0o644)  # safetensors writes it private
