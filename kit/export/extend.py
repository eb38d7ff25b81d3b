"""Adding to an export that has landed: more formats (``kit export exported/NAME --formats
pte,tflite``) and cheaper variants, each checked against eager before the manifest lists it.

New files are written into a staging directory inside the export, checked, then moved in;
the manifest is written last, so an interrupted addition leaves the export as it was.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import torch

from architectures import ModelSpec

from ..artifact import (
    FILE_NAMES,
    MODEL_FILE,
    OTHER_VARIANT_FILES,
    ArtifactFile,
    Manifest,
    MobileRecord,
    VariantRecord,
    describe_files,
    open_export,
    read_manifest,
    variant_key,
    write_manifest,
)
from ..data import DataChoice, choose_data, parity_samples
from ..errors import KitError
from ..models import Network
from ..parity import ParityRun
from ..rule import Tolerance
from ..variants import VariantCheck, refuse_at_chance
from .evidence import vouch
from .formats import Written, check_formats, progress_bar, step, write_formats
from .options import Calibration, ExportOptions, ExportResult
from .readback import check_declared

__all__ = ["add_formats", "add_variant_from_data", "add_variants"]


@dataclass
class _Export:
    """A landed, verified export and the eager network its manifest records."""

    directory: Path
    manifest: Manifest
    spec: ModelSpec
    network: Network

    @classmethod
    def open(cls, directory: Path, factory: str | None) -> _Export:
        from ..verify import rebuild_reference

        manifest = open_export(directory, "add to")
        spec, model = rebuild_reference(directory, manifest, factory)
        network = Network(model, manifest.model.num_classes, manifest.facts.weights_sha256)
        return cls(directory, manifest, spec, network)


def add_formats(
    directory: Path,
    options: ExportOptions,
    *,
    factory: str | None = None,
    dataset: str | None = None,
    data_dir: Path | None = None,
) -> ExportResult:
    """Write the ``options.formats`` that ``directory`` lacks, check them against the eager
    network its manifest records, list them; then add ``options.precisions``.

    Raises:
        ArtifactError: the export is tampered with, or a new file cannot be written.
        ParityError: a new file disagrees with eager (the export is left as it was).
    """
    export = _Export.open(directory, factory)
    recorded = export.manifest.model.data
    data = choose_data(export.spec, dataset=dataset, data_dir=data_dir, recorded=recorded)
    new = [f for f in options.formats if FILE_NAMES[f] not in export.manifest.files]
    rule = Tolerance(export.manifest.facts.atol, export.manifest.facts.rtol)
    report = ParityRun(export.spec.name, rule)
    if new:
        report = _add_files(export, new, options, data)
    if read_manifest(directory).reference is None or "pte" in new:
        _add_reference(_Export.open(directory, factory), options, data)
    result = ExportResult(directory, report, read_manifest(directory))
    if options.calibration.data is None:
        calibration = dataclasses.replace(options.calibration, data=data)
        options = dataclasses.replace(options, calibration=calibration)
    if options.precisions:
        result.variants = add_variants(directory, export.spec, export.network, options)
        result.manifest = read_manifest(directory)
    return result


def _add_files(
    export: _Export, formats: list[str], options: ExportOptions, data: DataChoice
) -> ParityRun:
    """Write, check, move in and list ``formats``; the report of their check."""
    manifest, spec = export.manifest, export.spec
    staging = Path(tempfile.mkdtemp(dir=export.directory, prefix=".add-"))
    try:
        bar = progress_bar(spec.name, formats, options.progress)
        written = write_formats(
            staging,
            export.network.model,
            torch.randn(2, *spec.input_shape, generator=torch.Generator().manual_seed(0)),
            manifest.facts,
            formats,
            onnx_source=export.directory / MODEL_FILE if MODEL_FILE in manifest.files else None,
            openvino_fp16=options.openvino_fp16,
            bar=bar,
        )
        notes = check_declared(staging, written.files, manifest.facts, written.static)
        with step(bar, "parity"):
            rules = manifest.facts.dynamic
            only = dataclasses.replace(options, formats=tuple(formats), dynamic=rules)
            real = parity_samples(spec, data)
            args = (real, manifest.model.seed, manifest.output_names)
            static = (*manifest.static, *written.static)
            report = check_formats(staging, export.network.model, spec, only, *args, static)
        bar.close()
        report.notes += notes
        report.raise_for_failures()
        files = describe_files(staging, written.files)
        for name in files:
            os.replace(staging / name, export.directory / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_manifest(export.directory, _listed(manifest, files, written))
    kind = "parity-export-" + "+".join(formats)
    vouch(
        export.directory,
        kind,
        report.to_dict(),
        ["export", str(export.directory), "--formats", ",".join(formats)],
    )
    return report


def _add_reference(export: _Export, options: ExportOptions, data: DataChoice) -> None:
    """Reference data (and a bundled .pte) for an export that lacks them, written beside
    its files; the manifest lists them last."""
    from ..verify.check import parity_inputs
    from .reference import add_reference

    manifest, spec = export.manifest, export.spec
    real = parity_samples(spec, data)
    inputs = parity_inputs(spec.input_shape, options.batch_sizes, manifest.model.seed, real)
    rule = Tolerance(manifest.facts.atol, manifest.facts.rtol)
    staging = Path(tempfile.mkdtemp(dir=export.directory, prefix=".add-"))
    try:
        pte = FILE_NAMES["pte"]
        if pte in manifest.files:
            os.link(export.directory / pte, staging / pte)  # bundled with the samples
        added = add_reference(
            staging, export.network.model, spec.name, inputs, rule, manifest.output_names
        )
        for name in added.files:
            target = export.directory / name
            target.parent.mkdir(exist_ok=True)
            os.replace(staging / name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    updated = manifest.with_files(added.files)
    write_manifest(export.directory, msgspec.structs.replace(updated, reference=added.record))


def _listed(manifest: Manifest, files: dict[str, Any], written: Written) -> Manifest:
    updated = manifest.with_files(files)
    if written.planned or written.static:
        planned = {**updated.planned, **written.planned}
        updated = msgspec.structs.replace(
            updated, planned=planned, static={**updated.static, **written.static}
        )
    if written.mobile is None:
        return updated
    ops_file = next(n for n, f in written.files.items() if f == "ort-operators")
    mobile = MobileRecord(written.mobile.ops, written.mobile.outside_default, ops_file)
    return msgspec.structs.replace(updated, mobile=mobile)


def add_variants(
    directory: Path, spec: ModelSpec, network: Network, options: ExportOptions
) -> dict[str, VariantRecord]:
    """Each of ``options.precisions`` of ``model.onnx`` and, for int8, of ``model.pte``
    too, that the export lacks, by the manifest's key (``int8``, ``int8-pte``)."""
    manifest = read_manifest(directory)
    made = {}
    for precision in options.precisions:
        onnx, pte = variant_key(precision), variant_key(precision, "pte")
        if MODEL_FILE in manifest.files and onnx not in manifest.variants:
            made[onnx] = add_variant_from_data(directory, spec, precision, options.calibration)
        pte_int8 = precision == "int8" and FILE_NAMES["pte"] in manifest.files
        if pte_int8 and pte not in manifest.variants:
            made[pte] = add_pte_int8(directory, spec, network, options.calibration)
    return made


def _calibration_sets(
    spec: ModelSpec, calibration: Calibration, directory: Path
) -> tuple[Any, Any]:
    """The training samples ``calibration`` names (by default, the data the export's
    manifest records), and the held-out split to judge on."""
    from ..data import calibration_sets

    choice = calibration.data or choose_data(spec, recorded=read_manifest(directory).model.data)
    return calibration_sets(spec, choice=choice, size=calibration.size, random=calibration.random)


def add_variant_from_data(
    directory: Path,
    spec: ModelSpec,
    precision: str,
    calibration: Calibration,
    max_fp32: int | None = None,
) -> VariantRecord:
    """The ``precision`` variant of ``model.onnx``, calibrated on the network's own training
    data and checked on its test split (``kit quantize``)."""
    from ..variants import add_variant

    samples, held_out = _calibration_sets(spec, calibration, directory)
    record = add_variant(
        directory,
        precision,
        samples,
        held_out,
        limits=calibration.limits,
        verified=not calibration.random,
        max_fp32=max_fp32,
    )
    args = ["quantize", str(directory), "--precision", precision]
    vouch(directory, f"quantize-{variant_key(precision)}", msgspec.to_builtins(record), args)
    return record


def add_pte_int8(
    directory: Path, spec: ModelSpec, network: Network, calibration: Calibration
) -> VariantRecord:
    """``model.int8.pte``: PT2E int8 with ExecuTorch's XNNPACK quantizer, calibrated on the
    same training samples as the ONNX int8, judged by the same limits on the whole test set
    against eager, in ExecuTorch itself.

    Raises:
        KitError: it misses the limits (nothing is written).
    """
    from .edge import quantize_pte

    samples, held_out = _calibration_sets(spec, calibration, directory)
    name = OTHER_VARIANT_FILES[("int8", "pte")]
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    staged = Path(tmp)
    try:
        example = torch.from_numpy(samples[1][:1])
        quantize_pte(network.model, example, samples[1], staged, name=spec.name)
        check = _pte_check(staged, network.model, held_out)
        if missed := check.problems(calibration.limits):
            raise KitError(
                f"The int8 .pte of {directory.name} misses its limits on {held_out[0]}: "
                f"{'; '.join(missed)}. Nothing was written; ship model.pte in fp32, or relax "
                "--max-accuracy-drop / --min-agreement only if that cost is acceptable."
            )
        refuse_at_chance(check, read_manifest(directory), f"The int8 .pte of {directory.name}")
        os.replace(staged, directory / name)
    finally:
        staged.unlink(missing_ok=True)
    record = VariantRecord(
        file=name,
        precision="int8",
        format="pte",
        method="PT2E with ExecuTorch's XNNPACKQuantizer, per-channel symmetric int8, lowered to XNNPACK",
        calibration=samples[0],
        verified=not calibration.random,
        held_out=held_out[0],
        limits=calibration.limits,
        samples=check.samples,
        agreement=check.agreement,
        accuracy_fp32=check.accuracy_fp32,
        accuracy=check.accuracy,
    )
    manifest = read_manifest(directory)
    file = describe_files(directory, {name: "pte-int8"})[name]
    write_manifest(directory, manifest.with_variant(record, file))
    args = ["export", str(directory), "--formats", "pte", "--precision", "int8"]
    vouch(directory, f"quantize-{variant_key('int8', 'pte')}", msgspec.to_builtins(record), args)
    return record


def _pte_check(
    path: Path, model: torch.nn.Module, held_out: tuple[str, np.ndarray, np.ndarray | None]
) -> VariantCheck:
    """The int8 ``.pte`` at ``path`` against eager ``model`` on the held-out samples."""
    from ..runners import make_runners

    _, x, labels = held_out
    (runner,) = make_runners(path.parent, [ArtifactFile(path.name, "pte", "int8")], ["executorch"])
    chunks = range(0, len(x), 500)
    ours = np.concatenate([runner.run(x[i : i + 500])[0].argmax(1) for i in chunks])
    with torch.no_grad():
        eager = np.concatenate(
            [model(torch.from_numpy(x[i : i + 500])).argmax(1).numpy() for i in chunks]
        )
    accuracy_fp32 = accuracy = None
    if labels is not None:
        accuracy_fp32, accuracy = float((eager == labels).mean()), float((ours == labels).mean())
    return VariantCheck(len(x), float((ours == eager).mean()), accuracy_fp32, accuracy)
