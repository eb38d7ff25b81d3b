"""Export a network to TorchScript, torch.export and ONNX, verified before it lands.

:func:`export_model` writes every artifact into a temporary directory beside the target,
runs parity against the eager network, writes ``manifest.json`` and only then moves the
directory into place: an interrupted or failed export leaves nothing half-written.
:func:`verify_artifacts` reruns the same checks on a saved directory.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from architectures import ModelSpec

from .._files import write_json_atomic
from ..errors import ArtifactError, ParityError, UsageError, first_line
from ..outputs import flatten_outputs, output_names
from ..parity import DEFAULT_BATCH_SIZES, ParityReport, run_parity
from .manifest import FORMAT_VERSION, MANIFEST, describe_files, library_versions

log = logging.getLogger(__name__)

__all__ = [
    "FAILED_SUFFIX",
    "FILE_NAMES",
    "FORMATS",
    "ExportResult",
    "export_model",
    "parse_formats",
]

FORMATS = ("onnx", "torchscript", "pt2")
FILE_NAMES = {"onnx": "model.onnx", "torchscript": "model.ts", "pt2": "model.pt2"}
WEIGHTS_FILE = "weights.safetensors"
#: ``--keep-failed`` leaves an export that failed parity in ``OUT/NAME.parity-failed/``.
FAILED_SUFFIX = ".parity-failed"


@dataclass
class ExportResult:
    """Where the artifacts landed and how parity went."""

    directory: Path
    report: ParityReport
    manifest: dict[str, Any]


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
    return list(dict.fromkeys(formats))


def model_facts(
    spec: ModelSpec, outputs: list[str], classes: int | None, weights_sha256: str | None
) -> dict[str, Any]:
    """The facts a runtime needs, embedded in the ONNX file and the manifest.

    ``classes`` is the width of a classifier's one 2-D output (None for other networks,
    which then carry no class names).
    """
    import kit

    return {
        "name": spec.name,
        "input_shape": list(spec.input_shape),
        "mean": list(spec.mean),
        "std": list(spec.std),
        "outputs": list(outputs),
        "num_classes": classes or 0,
        "class_names": spec.labels(classes) if classes else [],
        "atol": spec.atol,
        "rtol": spec.rtol,
        "weights_sha256": weights_sha256,
        "kit_version": kit.__version__,
    }


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


def _write_artifacts(
    staging: Path,
    model: nn.Module,
    example: torch.Tensor,
    *,
    spec: ModelSpec,
    formats: Sequence[str],
    opset: int | None,
    facts: dict[str, Any],
    bar: Any,
) -> int | None:
    """Write each format into ``staging``; returns the ONNX opset (None without ONNX)."""
    from .onnx import export_onnx
    from .program import export_program, save_program
    from .torchscript import export_torchscript

    program = None
    if {"onnx", "pt2"} & set(formats):
        with _step(bar, "torch.export"):
            program = export_program(model, example, name=spec.name)
    opset_used = None
    for fmt in formats:
        path = staging / FILE_NAMES[fmt]
        with _step(bar, fmt):
            if fmt == "onnx":
                assert program is not None
                opset_used = export_onnx(
                    program, example, path, opset=opset, facts=facts, output_names=facts["outputs"]
                )
            elif fmt == "pt2":
                assert program is not None
                save_program(program, path)
            else:
                export_torchscript(model, example, path, name=spec.name)
    return opset_used


def _keep_failed(staging: Path, target: Path, report: ParityReport) -> Path:
    """Move a failed export to ``target`` (replacing an older one) with its report."""
    write_json_atomic(staging / "parity.json", report.to_dict())
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


def export_model(
    spec: ModelSpec,
    model: nn.Module,
    out_root: Path,
    *,
    formats: Sequence[str] = FORMATS,
    opset: int | None = None,
    num_classes: int | None,
    seed: int,
    weights: Path | None = None,
    weights_sha256: str | None = None,
    factory: str | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    real: tuple[str, torch.Tensor] | None = None,
    output_names: Sequence[str] | None = None,
    keep_failed: bool = False,
    extra: dict[str, Any] | None = None,
    progress: bool = True,
) -> ExportResult:
    """Export ``model`` to ``out_root/spec.name`` and verify every artifact.

    Args:
        spec: The network's facts.
        model: The eager network with its final weights.
        out_root: Parent of the artifact directory (``exported/``).
        formats: Subset of ``FORMATS``.
        opset: ONNX opset (the exporter's default when None).
        num_classes: The class count the network was built with (None: a user's factory
            called without one); recorded so parity can rebuild it.
        seed: Seed the weights were drawn from when ``weights`` is None.
        weights: The state_dict file the weights came from, copied as safetensors.
        weights_sha256: sha256 of ``weights``.
        factory: ``module:factory`` for a user's network, recorded to rebuild it.
        atol: Absolute tolerance (the spec's when None).
        rtol: Relative tolerance (the spec's when None).
        batch_sizes: Random batch sizes for parity.
        real: Real samples ``(label, batch)`` for parity.
        output_names: Names of the ONNX outputs (default: ``logits``, a dict's keys, or
            ``output_0..`` for a tuple).
        keep_failed: On a parity failure, keep the artifacts in
            ``out_root/NAME.parity-failed/`` instead of deleting them.
        extra: More manifest entries (training metrics, say).
        progress: Show a progress bar on a terminal.

    Returns:
        The landed directory, the parity report and the manifest.

    Raises:
        ArtifactError: an exporter failed or the output cannot be written.
        ParityError: an artifact disagrees with eager (nothing lands in ``NAME/``).
    """
    from tqdm.auto import tqdm

    atol = spec.atol if atol is None else atol
    rtol = spec.rtol if rtol is None else rtol
    model = model.eval()
    example = torch.randn(2, *spec.input_shape, generator=torch.Generator().manual_seed(seed))
    traced = _trace_outputs(spec, model, example, output_names)
    facts = model_facts(spec, traced.names, traced.classes, weights_sha256)
    staging = _make_staging_dir(out_root, spec.name)
    try:
        steps = bool({"onnx", "pt2"} & set(formats)) + len(formats) + 1
        bar = tqdm(
            total=steps,
            desc=f"export {spec.name}",
            unit="step",
            disable=not progress or None,
            leave=False,
        )
        opset_used = _write_artifacts(
            staging, model, example, spec=spec, formats=formats, opset=opset, facts=facts, bar=bar
        )
        file_formats = {FILE_NAMES[f]: f for f in formats}
        if weights is not None:
            _save_weights(model, staging / WEIGHTS_FILE)
            file_formats[WEIGHTS_FILE] = "safetensors"
        with _step(bar, "parity"):
            report = run_parity(
                model,
                {f: staging / FILE_NAMES[f] for f in formats},
                name=spec.name,
                input_shape=spec.input_shape,
                atol=atol,
                rtol=rtol,
                batch_sizes=batch_sizes,
                real=real,
                seed=seed,
                output_names=traced.names,
            )
        bar.close()
        try:
            report.raise_for_failures()
        except ParityError as exc:
            if keep_failed:
                exc.kept = _keep_failed(staging, out_root / f"{spec.name}{FAILED_SUFFIX}", report)
            raise
        files = describe_files(staging, file_formats)
        manifest = {
            "format_version": FORMAT_VERSION,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "model": {
                "name": spec.name,
                "factory": factory,
                "num_classes": num_classes,
                "input_shape": list(spec.input_shape),
                "seed": seed,
                "weights": None
                if weights is None
                else {
                    "file": WEIGHTS_FILE,
                    "sha256": files[WEIGHTS_FILE]["sha256"],
                    "source": str(weights),
                    "source_sha256": weights_sha256,
                },
            },
            "facts": facts,
            "inputs": [
                {"name": "input", "shape": ["batch", *spec.input_shape], "dtype": "float32"}
            ],
            "outputs": [
                {"name": n, "shape": ["batch", *shape], "dtype": "float32"}
                for n, shape in zip(traced.names, traced.shapes, strict=True)
            ],
            "opset": opset_used,
            "files": files,
            "versions": library_versions(),
            "parity": report.to_dict(),
            **(extra or {}),
        }
        write_json_atomic(staging / MANIFEST, manifest)
        target = out_root / spec.name
        _move_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(directory=target, report=report, manifest=manifest)


def _save_weights(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    path.chmod(0o644)  # safetensors writes it private
