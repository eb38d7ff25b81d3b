"""Export a network to TorchScript, torch.export and ONNX, verified before it lands.

:func:`export_model` writes every artifact into a staging directory beside the target,
runs parity against the eager network, writes ``manifest.json`` and only then moves the
directory into place; then it adds the variants asked for (int8, fp16), each checked on
real data. :func:`export_network` is what ``kit export`` does, and :func:`export_trained`
what ``kit train --export`` does: a program calling them gets everything the CLI does.
"""

from __future__ import annotations

import contextlib
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

from .._files import write_json_atomic
from ..artifact import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_CALIBRATION_SIZE,
    DEFAULT_FORMATS,
    FAILED_SUFFIX,
    FILE_NAMES,
    MODEL_FILE,
    ORT_OPS_FILE,
    PARITY_FILE,
    WEIGHTS_FILE,
    ArtifactFile,
    FileRecord,
    Limits,
    Manifest,
    MobileRecord,
    ModelFacts,
    VariantRecord,
    describe_files,
    read_manifest,
    write_manifest,
)
from ..errors import ArtifactError, ParityError, first_line
from ..models import Network, load_network, resolve_spec
from ..outputs import flatten_outputs, output_names
from ..parity import ParityReport
from ..rule import Tolerance
from ..verify.check import check_artifacts
from .manifest import Provenance, build_manifest
from .mobile import MobileFit
from .staging import move_into_place, staging_dir

log = logging.getLogger(__name__)

__all__ = [
    "Calibration",
    "ExportOptions",
    "ExportResult",
    "export_model",
    "export_network",
    "export_trained",
]


@dataclass(frozen=True)
class Calibration:
    """How int8 variants are calibrated and checked: ``size`` training samples of the
    network's data set (``data_dir``/``dataset``), or random inputs when ``random``."""

    size: int = DEFAULT_CALIBRATION_SIZE
    random: bool = False
    data_dir: Path | None = None
    dataset: str | None = None
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
        precisions: Variants to add beside ``model.onnx`` once it lands (int8, fp16).
        calibration: How those variants are calibrated and checked.
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


@dataclass
class ExportResult:
    """Where the artifacts landed, how parity went, and the variants added."""

    directory: Path
    report: ParityReport
    manifest: Manifest
    #: what the export found worth saying besides parity (random weights, model.ort's fit)
    notes: list[str] = field(default_factory=list)
    variants: dict[str, VariantRecord] = field(default_factory=dict)


def model_facts(
    spec: ModelSpec, outputs: Sequence[str], classes: int | None, network: Network
) -> ModelFacts:
    """The facts a runtime needs, embedded in the ONNX file and the manifest.

    ``classes`` is the width of a classifier's one 2-D output (None for other networks,
    which then carry no class names); the names are the checkpoint's (from its data) when it
    has them, else the network's.
    """
    import kit

    names: tuple[str, ...] = ()
    if classes:
        names = (
            network.class_names
            if len(network.class_names) == classes
            else tuple(spec.labels(classes))
        )
    return ModelFacts(
        name=spec.name,
        input_shape=tuple(spec.input_shape),
        mean=tuple(spec.mean),
        std=tuple(spec.std),
        outputs=tuple(outputs),
        num_classes=classes or 0,
        class_names=names,
        atol=spec.atol,
        rtol=spec.rtol,
        weights_sha256=network.weights_sha256,
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


def _write_artifacts(
    staging: Path,
    model: nn.Module,
    example: torch.Tensor,
    facts: ModelFacts,
    options: ExportOptions,
    bar: Any,
) -> tuple[int | None, MobileFit | None]:
    """Write each format into ``staging`` (ONNX before the ORT file made from it); returns
    the ONNX opset and the ORT file's operator fit."""
    from .mobile import export_ort
    from .onnx import export_onnx
    from .program import export_program, save_program
    from .torchscript import export_torchscript

    program, opset, mobile = None, None, None
    if {"onnx", "pt2"} & set(options.formats):
        with _step(bar, "torch.export"):
            program = export_program(model, example, name=facts.name)
    for fmt in options.formats:
        path = staging / FILE_NAMES[fmt]
        with _step(bar, fmt):
            if fmt == "onnx":
                assert program is not None
                opset = export_onnx(program, example, path, opset=options.opset, facts=facts)
            elif fmt == "pt2":
                assert program is not None
                save_program(program, path)
            elif fmt == "ort":
                mobile = export_ort(staging / MODEL_FILE, path, staging / ORT_OPS_FILE)
            else:
                export_torchscript(model, example, path, name=facts.name)
    return opset, mobile


def _keep_failed(staging: Path, target: Path, report: ParityReport) -> Path:
    """Move a failed export to ``target`` (replacing an older one) with its report."""
    write_json_atomic(staging / PARITY_FILE, report.to_dict())
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


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


def _mobile_record(fit: MobileFit | None) -> MobileRecord | None:
    if fit is None:
        return None
    return MobileRecord(fit.ops, fit.outside_default, ORT_OPS_FILE)


@dataclass
class _Staged:
    """What writing and checking the formats produced in the staging directory."""

    files: dict[str, FileRecord]
    opset: int | None
    mobile: MobileFit | None
    report: ParityReport


def _stage(
    staging: Path,
    network: Network,
    example: torch.Tensor,
    spec: ModelSpec,
    facts: ModelFacts,
    source: Provenance,
    options: ExportOptions,
    real: tuple[str, torch.Tensor] | None,
) -> _Staged:
    """Write every artifact into ``staging`` and check them against eager."""
    from tqdm.auto import tqdm

    formats, model = options.formats, network.model
    steps = bool({"onnx", "pt2"} & set(formats)) + len(formats) + 1
    show = options.progress or None
    bar = tqdm(total=steps, desc=f"export {spec.name}", unit="step", disable=not show, leave=False)
    opset, mobile = _write_artifacts(staging, model, example, facts, options, bar)
    file_formats = {FILE_NAMES[f]: f for f in formats}
    if mobile is not None:
        file_formats[ORT_OPS_FILE] = "ort-operators"
    if source.weights is not None:
        _save_weights(model, staging / WEIGHTS_FILE)
        file_formats[WEIGHTS_FILE] = "safetensors"
    rule = Tolerance(
        spec.atol if options.atol is None else options.atol,
        spec.rtol if options.rtol is None else options.rtol,
    )
    with _step(bar, "parity"):
        report = check_artifacts(
            model,
            staging,
            [ArtifactFile(FILE_NAMES[f], f) for f in formats],
            name=spec.name,
            input_shape=spec.input_shape,
            rule=rule,
            batch_sizes=options.batch_sizes,
            real=real,
            seed=source.seed,
            output_names=facts.outputs,
        )
    bar.close()
    return _Staged(describe_files(staging, file_formats), opset, mobile, report)


def _save_weights(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    path.chmod(0o644)  # safetensors writes it private


def export_model(
    spec: ModelSpec,
    network: Network | nn.Module,
    out_root: Path,
    source: Provenance | None = None,
    options: ExportOptions | None = None,
    *,
    real: tuple[str, torch.Tensor] | None = None,
    training: dict[str, Any] | None = None,
) -> ExportResult:
    """Export ``network`` to ``out_root/spec.name``, verify every artifact, then add the
    variants ``options.precisions`` asks for.

    Args:
        spec: The network's facts.
        network: The eager network with its final weights (a :class:`~kit.models.Network`
            also carries its checkpoint's class names).
        out_root: Parent of the artifact directory (``exported/``).
        source: How the network was built (recorded so parity can rebuild it; default:
            a registered network with random weights from seed 0).
        options: Formats, tolerances, batch sizes, output names, variants.
        real: Real samples ``(label, batch)`` for parity.
        training: The training record of the checkpoint exported (:func:`kit.train.training_record`).

    Returns:
        The landed directory, the parity report, the manifest and the variants.

    Raises:
        ArtifactError: an exporter failed or the output cannot be written.
        ParityError: an artifact disagrees with eager (nothing lands in ``NAME/``).
        KitError: a variant misses its limits (the export itself has landed).
    """
    source = source or Provenance()
    options = options or ExportOptions()
    if isinstance(network, nn.Module):
        network = Network(network, source.num_classes, source.weights_sha256)
    network.model.eval()
    example = torch.randn(
        2, *spec.input_shape, generator=torch.Generator().manual_seed(source.seed)
    )
    traced = _trace_outputs(spec, network.model, example, options.output_names)
    facts = model_facts(spec, traced.names, traced.classes, network)
    with staging_dir(out_root, spec.name) as staging:
        _check_free_space(
            staging, network.model, len(options.formats) + (source.weights is not None)
        )
        staged = _stage(staging, network, example, spec, facts, source, options, real)
        try:
            staged.report.raise_for_failures()
        except ParityError as exc:
            if options.keep_failed:
                exc.kept = _keep_failed(
                    staging, out_root / f"{spec.name}{FAILED_SUFFIX}", staged.report
                )
            raise
        manifest = build_manifest(
            facts,
            source,
            output_shapes=traced.shapes,
            files=staged.files,
            opset=staged.opset,
            parity=staged.report.to_dict(),
            mobile=_mobile_record(staged.mobile),
            training=training,
        )
        write_manifest(staging, manifest)
        move_into_place(staging, out_root / spec.name)
    notes = [n for n in (source.random_weights_note(spec.name),) if n]
    notes += [staged.mobile.summary()] if staged.mobile else []
    result = ExportResult(out_root / spec.name, staged.report, manifest, notes)
    for precision in options.precisions:
        result.variants[precision] = add_variant_from_data(
            result.directory, spec, precision, options.calibration
        )
    if result.variants:
        result.manifest = read_manifest(result.directory)
    return result


def add_variant_from_data(
    directory: Path,
    spec: ModelSpec,
    precision: str,
    calibration: Calibration,
    max_fp32: int | None = None,
) -> VariantRecord:
    """The ``precision`` variant of an export, calibrated on the network's own training
    data and checked on its test split (``kit quantize``)."""
    from ..data import calibration_sets
    from ..variants import add_variant

    samples, held_out = calibration_sets(
        spec,
        dataset=calibration.dataset,
        data_dir=calibration.data_dir,
        size=calibration.size,
        random=calibration.random,
    )
    return add_variant(
        directory,
        precision,
        samples,
        held_out,
        limits=calibration.limits,
        verified=not calibration.random,
        max_fp32=max_fp32,
    )


def export_network(
    model_name: str,
    out_root: Path,
    *,
    weights: Path | None = None,
    num_classes: int | None = None,
    input_shape: tuple[int, ...] | None = None,
    seed: int = 0,
    data_dir: Path | None = None,
    options: ExportOptions | None = None,
) -> ExportResult:
    """What ``kit export`` does: resolve ``model_name`` (registered, or a factory the caller
    names), load ``weights`` (or draw them from ``seed``), export and verify, with parity on
    real test samples where the network has them."""
    from ..data import parity_samples

    spec = resolve_spec(model_name, input_shape)
    network = load_network(spec, weights=weights, num_classes=num_classes, seed=seed)
    source = Provenance(
        factory=model_name if ":" in model_name else None,
        num_classes=network.num_classes,
        seed=seed,
        weights=weights,
        weights_sha256=network.weights_sha256,
    )
    real = parity_samples(spec, data_dir)
    return export_model(spec, network, out_root, source, options, real=real)


def export_trained(
    cfg: Any, spec: ModelSpec, data: Any, result: Any, data_dir: Path | None, out_root: Path
) -> ExportResult:
    """``kit train --export``: the run's best checkpoint, with parity on real test samples
    and the run's training record in the manifest."""
    from ..artifact import BEST_CHECKPOINT
    from ..data import real_samples
    from ..train import training_record

    best = cfg.out / BEST_CHECKPOINT
    classes = cfg.num_classes or data.num_classes
    network = load_network(spec, weights=best, num_classes=classes, seed=cfg.seed)
    real = real_samples(spec, data_dir, dataset=data.name) if data.name != "fake" else None
    source = Provenance(
        num_classes=classes, seed=cfg.seed, weights=best, weights_sha256=network.weights_sha256
    )
    record = training_record(cfg, data, result)
    return export_model(spec, network, out_root, source, real=real, training=record)
