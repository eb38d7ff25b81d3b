"""Export a network to TorchScript, torch.export and ONNX, verified before it lands.

:func:`export_model` writes every artifact into a staging directory beside the target,
runs parity against the eager network, writes ``manifest.json`` and only then moves the
directory into place; then it adds the variants asked for (int8, fp16), each checked on
real data. :func:`export_network` is what ``kit export`` does, and :func:`export_trained`
what ``kit train --export`` does: a program calling them gets everything the CLI does.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from architectures import ModelSpec

from .._files import write_json_atomic
from ..artifact import (
    FAILED_SUFFIX,
    MODEL_FILE,
    ORT_OPS_FILE,
    PARITY_FILE,
    WEIGHTS_FILE,
    DataRecord,
    FileRecord,
    MobileRecord,
    ModelFacts,
    ShapeRules,
    describe_files,
    parse_dynamic,
    parse_grid,
    read_manifest,
    write_manifest,
)
from ..data import DataChoice, choose_data, parity_samples
from ..errors import ArtifactError, ParityError, UsageError
from ..models import GivenFacts, Network, load_network, resolve_spec, run_example, with_facts
from ..outputs import flatten_outputs, output_names
from ..parity import ParityRun
from ..verify.check import allowed_batches, parity_inputs, reference_sizes
from .evidence import vouch
from .formats import check_formats, check_free_space, progress_bar, step, write_formats
from .manifest import Provenance, build_manifest
from .mobile import MobileFit
from .options import Calibration, ExportOptions, ExportResult
from .readback import check_declared
from .reference import add_reference
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


def model_facts(
    spec: ModelSpec,
    outputs: Sequence[str],
    classes: int | None,
    network: Network,
    dynamic: ShapeRules | None = None,
) -> ModelFacts:
    """The facts a runtime needs, embedded in the ONNX file and the manifest.

    ``classes`` is the width of a classifier's one 2-D output (None for other networks,
    which then carry no class names); the names are ``spec``'s, which the caller gave what
    the user, the checkpoint or the network said (:func:`kit.models.with_facts`).

    Raises:
        UsageError: class names were given for another number of classes.
    """
    import kit

    names: tuple[str, ...] = ()
    given = network.facts.class_names
    if classes and given is not None and len(given) != classes and spec.class_names == given:
        raise UsageError(
            f"{len(given)} class names were given for {spec.name}, whose output has {classes} "
            "classes; give one name per class (--class-names)."
        )
    if classes:
        names = tuple(spec.labels(classes))
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
        dynamic=dynamic,
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
    out = run_example(spec, model, example, ArtifactError)
    tensors = flatten_outputs(out, network=spec.name)
    names = output_names(out, override, network=spec.name)
    classes = None
    if len(tensors) == 1 and tensors[0].ndim == 2:
        classes = int(tensors[0].shape[1])
    return _Traced(names, [tuple(t.shape[1:]) for t in tensors], classes)


def _keep_failed(staging: Path, target: Path, report: ParityRun) -> Path:
    """Move a failed export to ``target`` (replacing an older one) with its report."""
    write_json_atomic(staging / PARITY_FILE, report.to_dict())
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


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
    report: ParityRun
    planned: dict[str, int]
    static: dict[str, str]


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
    opset, ir_version = options.opset, None
    if options.target is not None:
        from ..compat import export_limits, parse_target

        highest, ir_version = export_limits(parse_target(options.target))
        opset = min(opset or highest, highest)
    bar = progress_bar(spec.name, options.formats, options.progress)
    written = write_formats(
        staging,
        network.model,
        example,
        facts,
        options.formats,
        opset=opset,
        ir_version=ir_version,
        openvino_fp16=options.openvino_fp16,
        bar=bar,
    )
    notes = check_declared(staging, written.files, facts, written.static)
    if source.weights is not None:
        _save_weights(network.model, staging / WEIGHTS_FILE)
        written.files[WEIGHTS_FILE] = "safetensors"
    with step(bar, "parity"):
        report = check_formats(
            staging, network.model, spec, options, real, source.seed, facts.outputs,
            tuple(written.static),
        )  # fmt: skip
    bar.close()
    report.notes += notes
    files = describe_files(staging, written.files)
    return _Staged(files, written.opset, written.mobile, report, written.planned, written.static)


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
    data: DataChoice | None = None,
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
        data: The data to check the whole pipeline on (images through kit's preprocessing
            into model.onnx, against eager and the labels), and to calibrate variants on.
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
    example = _example(spec, options.dynamic, source.seed)
    traced = _trace_outputs(spec, network.model, example, options.output_names)
    facts = model_facts(spec, traced.names, traced.classes, network, options.dynamic)
    with staging_dir(out_root, spec.name) as staging:
        check_free_space(
            staging, network.model, len(options.formats) + (source.weights is not None)
        )
        staged = _stage(staging, network, example, spec, facts, source, options, real)
        if data is not None and "onnx" in options.formats and not staged.report.failures:
            _check_pipeline(staging, spec, network, source, data, staged.report, training)
        _refuse_failed(staging, out_root / f"{spec.name}{FAILED_SUFFIX}", staged.report, options)
        inputs = _reference_inputs(spec, options, source.seed, real)
        reference = add_reference(
            staging, network.model, spec.name, inputs, staged.report.rule, facts.outputs
        )
        manifest = build_manifest(
            facts,
            source,
            output_shapes=traced.shapes,
            files={**staged.files, **reference.files},
            reference=reference.record,
            targets=(options.target,) if options.target else (),
            opset=staged.opset,
            parity=staged.report.to_dict(),
            mobile=_mobile_record(staged.mobile),
            training=training,
            planned=staged.planned,
            static=staged.static,
        )
        write_manifest(staging, manifest)
        move_into_place(staging, out_root / spec.name)
    target = out_root / spec.name
    vouch(target, "parity-export", staged.report.to_dict(), ["export", "--model", spec.name])
    notes = source.all_notes(spec.name)
    notes += [staged.mobile.summary()] if staged.mobile else []
    result = ExportResult(out_root / spec.name, staged.report, manifest, notes)
    if options.precisions:
        _add_variants(result, spec, network, options, data)
    return result


def _example(spec: ModelSpec, rules: ShapeRules | None, seed: int) -> torch.Tensor:
    """The capture's example batch: 2 samples (torch.export specialises 1), within a batch
    rule's range."""
    low, high = (rules or ShapeRules()).batch_range()
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(min(max(2, low), high), *spec.input_shape, generator=generator)


def _reference_inputs(
    spec: ModelSpec, options: ExportOptions, seed: int, real: tuple[str, torch.Tensor] | None
) -> list[tuple[str, Any]]:
    """What the reference data keeps: parity's random batches, three more sizes when the
    size varies, then the real samples."""
    rules, sizes = options.dynamic, options.batch_sizes
    if rules is not None and rules.batch is not None:
        sizes = allowed_batches(rules, sizes)  # every set a size the model takes
    inputs = parity_inputs(spec.input_shape, sizes, seed, None)
    inputs += reference_sizes(spec.input_shape, rules, seed)
    return inputs + parity_inputs(spec.input_shape, (), seed, real)


def _refuse_failed(staging: Path, kept: Path, report: ParityRun, options: ExportOptions) -> None:
    """Raise when parity failed, the failed files kept apart first when asked."""
    try:
        report.raise_for_failures()
    except ParityError as exc:
        if options.keep_failed:
            exc.kept = _keep_failed(staging, kept, report)
        raise


def _add_variants(
    result: ExportResult,
    spec: ModelSpec,
    network: Network,
    options: ExportOptions,
    data: DataChoice | None,
) -> None:
    """The variants ``options.precisions`` asks for, added to the landed export (calibrated
    on ``data`` unless the options name other data)."""
    from .extend import add_variants

    if data is not None and options.calibration.data is None:
        calibration = dataclasses.replace(options.calibration, data=data)
        options = dataclasses.replace(options, calibration=calibration)
    result.variants = add_variants(result.directory, spec, network, options)
    result.manifest = read_manifest(result.directory)


def _check_pipeline(
    staging: Path,
    spec: ModelSpec,
    network: Network,
    source: Provenance,
    data: DataChoice,
    report: ParityRun,
    training: dict[str, Any] | None,
) -> None:
    """The whole-pipeline check of the staged model.onnx, into ``report``."""
    from ..verify.pipeline import check_pipeline

    known = (training or {}).get("test_accuracy")
    with torch.no_grad():
        found = check_pipeline(
            staging / MODEL_FILE,
            spec,
            network.model,
            data,
            trained=source.weights is not None,
            trained_accuracy=known if isinstance(known, float) else None,
        )
    if found is not None:
        report.pipeline = found.to_dict()


def export_network(
    model_name: str,
    out_root: Path,
    *,
    weights: Path | None = None,
    num_classes: int | None = None,
    input_shape: tuple[int, ...] | None = None,
    seed: int = 0,
    given: GivenFacts | None = None,
    dataset: str | None = None,
    data_dir: Path | None = None,
    options: ExportOptions | None = None,
    dynamic: Sequence[str] = (),
    grid: Sequence[str] = (),
) -> ExportResult:
    """What ``kit export`` does: resolve ``model_name`` (registered, or a factory the caller
    names), load ``weights`` (or draw them from ``seed``), take the facts ``given`` (over
    what the checkpoint and the network say), export and verify, with parity and the
    whole-pipeline check on real test samples where there are some. ``dynamic`` and
    ``grid`` are ``--dynamic`` and ``--grid`` as given (checked against the input shape).

    Raises:
        UsageError: a rule or a grid size that is wrong, in one sentence.
    """
    spec = resolve_spec(model_name, input_shape)
    if dynamic or grid:  # --grid without --dynamic is refused by parse_grid
        rules = parse_dynamic(dynamic, spec.input_shape)
        sizes = parse_grid(grid, rules)
        options = dataclasses.replace(options or ExportOptions(), dynamic=rules, grid=sizes)
    network = load_network(spec, weights=weights, num_classes=num_classes, seed=seed)
    said = (given or GivenFacts()).over(network.facts)
    spec = with_facts(spec, said)
    network = network._replace(facts=said)
    data = choose_data(spec, dataset=dataset, data_dir=data_dir)
    notes = []
    if ":" in model_name and not said.normalisation:
        notes.append(
            f"{spec.name} will receive raw [0, 1] pixels: no --mean/--std was given, and "
            "neither the checkpoint nor the network says its normalisation; pass the values "
            "it was trained with (--mean 0 --std 1 says raw pixels are intended)"
        )
    source = Provenance(
        factory=model_name if ":" in model_name else None,
        num_classes=network.num_classes,
        seed=seed,
        weights=weights,
        weights_sha256=network.weights_sha256,
        data=DataRecord(data.dataset, str(data.data_dir.resolve()) if data.data_dir else None)
        if data.has_files
        else None,
        notes=tuple(notes),
    )
    real = parity_samples(spec, data)
    return export_model(spec, network, out_root, source, options, real=real, data=data)


def export_trained(
    cfg: Any, spec: ModelSpec, data: Any, result: Any, data_dir: Path | None, out_root: Path
) -> ExportResult:
    """``kit train --export``: the run's best checkpoint, with parity on real test samples
    and the run's training record in the manifest."""
    from ..artifact import BEST_CHECKPOINT
    from ..train import training_record

    best = cfg.out / BEST_CHECKPOINT
    classes = cfg.num_classes or data.num_classes
    network = load_network(spec, weights=best, num_classes=classes, seed=cfg.seed)
    choice = DataChoice(data.name, data_dir, "the training run")
    real = parity_samples(spec, choice)
    record = DataRecord(data.name, str(data_dir.resolve()) if data_dir else None)
    source = Provenance(
        factory=cfg.model if ":" in cfg.model else None,
        num_classes=classes,
        seed=cfg.seed,
        weights=best,
        weights_sha256=network.weights_sha256,
        data=record if choice.has_files else None,
    )
    training = training_record(cfg, data, result)
    return export_model(spec, network, out_root, source, real=real, training=training, data=choice)
