"""int8 variants of an exported ONNX model, with their accuracy cost measured on real data.

onnxruntime's static quantization in QDQ format after its pre-processing step: per-channel
int8 weights, uint8 activations, MinMax ranges calibrated on samples of the network's
training data. The variant is then run beside ``model.onnx`` on held-out test data (accuracy
when labels exist, top-1 agreement always) and lands only when it stays within the limits.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import (
    INPUT_NAME,
    MODEL_FILE,
    VARIANT_FILES,
    Limits,
    Manifest,
    VariantRecord,
    describe_files,
    open_export,
    write_manifest,
)
from ..errors import ArtifactError, KitError, first_line
from ..rule import at_chance

__all__ = [
    "VariantCheck",
    "add_variant",
    "check_variant",
    "convert_fp16",
    "predictions",
    "quantize_int8",
    "refuse_at_chance",
]

_BATCH = 32
#: the layers the accuracy-aware search may keep in fp32
_CANDIDATE_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Mul", "Add"}
#: held-out samples each candidate is scored on (the final check uses them all)
_SCORING_SAMPLES = 1000


@dataclass(frozen=True)
class VariantCheck:
    """A variant against ``model.onnx`` on the same held-out samples."""

    samples: int
    agreement: float
    accuracy_fp32: float | None
    accuracy: float | None

    def problems(self, limits: Limits) -> list[str]:
        found = []
        if self.agreement < limits.min_agreement:
            found.append(
                f"top-1 agreement {self.agreement:.2%} is under {limits.min_agreement:.2%}"
            )
        if self.accuracy is not None and self.accuracy_fp32 is not None:
            drop = self.accuracy_fp32 - self.accuracy
            if drop > limits.max_accuracy_drop:
                found.append(
                    f"accuracy fell {drop:.2%} ({self.accuracy_fp32:.2%} -> {self.accuracy:.2%}), "
                    f"more than {limits.max_accuracy_drop:.2%}"
                )
        return found


def _batches(x: np.ndarray) -> Iterator[np.ndarray]:
    for i in range(0, len(x), _BATCH):
        yield np.ascontiguousarray(x[i : i + _BATCH], dtype=np.float32)


def prepare(source: Path, target: Path) -> None:
    """onnxruntime's pre-processing before quantization (shape inference, graph clean-up)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(source), str(target))
    except Exception as exc:  # the pre-processor raises many types
        raise ArtifactError(
            f"onnxruntime could not prepare {source.name}: {first_line(exc)}."
        ) from exc


def quantize_int8(
    prepared: Path,
    target: Path,
    calibration: np.ndarray,
    input_name: str,
    exclude: Sequence[str] = (),
) -> None:
    """Write the int8 QDQ quantization of the ``prepared`` model to ``target``, calibrated
    on ``calibration``, with the nodes in ``exclude`` kept in fp32.

    Raises:
        ArtifactError: onnxruntime's quantizer failed.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.batches = _batches(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    try:
        quantize_static(
            prepared,
            target,
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=list(exclude),
        )
    except Exception as exc:  # the quantizer raises many types
        raise ArtifactError(
            f"onnxruntime could not quantize {prepared.name}: {first_line(exc)}."
        ) from exc


@dataclass
class _Search:
    """The accuracy-aware search: what was kept in fp32 at each try, and what it measured."""

    kept_fp32: list[str]
    tries: list[dict[str, Any]]


def quantize_within_limits(
    source: Path,
    target: Path,
    calibration: np.ndarray,
    input_name: str,
    held_out: tuple[str, np.ndarray, np.ndarray | None],
    limits: Limits,
    max_fp32: int | None = None,
) -> tuple[VariantCheck, _Search]:
    """int8 of ``source`` into ``target``; while it misses ``limits`` on ``held_out``, keep in
    fp32 the layer whose exclusion helps most (each candidate scored on the same data), at
    most ``max_fp32`` layers (default: half of them; more would hardly be an int8 model).

    Returns the final check (which may still miss the limits) and the search's record.
    """
    import onnx

    _, x, labels = held_out
    reference = predictions(source, x)  # once: every attempt is judged against it
    with tempfile.TemporaryDirectory() as tmp:
        prepared, trial = Path(tmp) / "prepared.onnx", Path(tmp) / "trial.onnx"
        prepare(source, prepared)

        def attempt(kept: list[str], path: Path, n: int | None = None) -> VariantCheck:
            quantize_int8(prepared, path, calibration, input_name, kept)
            subset = None if labels is None else labels[:n]
            return check_variant(reference[:n], path, x[:n], subset)

        search = _Search([], [])
        check = attempt([], target)
        search.tries.append({"kept_fp32": [], **asdict(check)})
        graph = onnx.load(str(prepared), load_external_data=False).graph
        candidates = [n.name for n in graph.node if n.op_type in _CANDIDATE_OPS]
        most = (len(candidates) + 1) // 2 if max_fp32 is None else max_fp32
        while check.problems(limits) and len(search.kept_fp32) < min(len(candidates), most):
            left = [c for c in candidates if c not in search.kept_fp32]
            scored = {c: attempt([*search.kept_fp32, c], trial, _SCORING_SAMPLES) for c in left}
            best = max(scored, key=lambda c: (scored[c].agreement, scored[c].accuracy or 0.0))
            search.kept_fp32.append(best)
            check = attempt(search.kept_fp32, target)
            search.tries.append({"kept_fp32": list(search.kept_fp32), **asdict(check)})
    return check, search


def predictions(path: Path, x: np.ndarray) -> np.ndarray:
    """Top-1 class of every sample of ``x`` through the ONNX file at ``path`` (CPU)."""
    return predictions_each(path, [x])[0]


def predictions_each(path: Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """:func:`predictions` for each of ``inputs`` (of several sizes), one session for all."""
    from ..runtime.providers import CPU, create_session

    session = create_session(path, [CPU])
    name = session.get_inputs()[0].name
    return [
        np.concatenate([session.run(None, {name: b})[0].argmax(1) for b in _batches(x)])
        for x in inputs
    ]


#: held-out samples a variant is compared with model.onnx on at each other grid size
GRID_SAMPLES = 128


def grid_agreement(
    source: Path, variant: Path, manifest: Manifest, x: np.ndarray
) -> dict[str, float]:
    """Top-1 agreement of ``variant`` with ``source`` at each size of the rules' grid but
    the example's, on up to ``GRID_SAMPLES`` of ``x`` resized to it (bilinear, which
    commutes with the per-channel normalisation); empty for a model of one size."""
    from ..runtime.preprocess import resize

    facts = manifest.facts
    if facts.dynamic is None or not facts.dynamic.spatial:
        return {}
    example = facts.input_shape
    sizes = [(h, w) for h, w in facts.dynamic.grid(example) if (h, w) != tuple(example[1:])]
    inputs = [
        np.stack(
            [resize(s.transpose(1, 2, 0), h, w).transpose(2, 0, 1) for s in x[:GRID_SAMPLES]]
        ).astype(np.float32)
        for h, w in sizes
    ]
    ours, theirs = predictions_each(source, inputs), predictions_each(variant, inputs)
    return {
        f"{h}x{w}": float((a == b).mean()) for (h, w), a, b in zip(sizes, ours, theirs, strict=True)
    }


def check_variant(
    reference: np.ndarray, variant: Path, x: np.ndarray, labels: np.ndarray | None
) -> VariantCheck:
    """``variant`` on ``x`` against ``reference``, model.onnx's top-1 classes for ``x``."""
    ours, theirs = reference, predictions(variant, x)
    accuracy_fp32 = accuracy = None
    if labels is not None:
        accuracy_fp32 = float((ours == labels).mean())
        accuracy = float((theirs == labels).mean())
    return VariantCheck(len(x), float((ours == theirs).mean()), accuracy_fp32, accuracy)


_METHODS = {
    "int8": "onnxruntime quantize_static, QDQ, per-channel int8 weights, uint8 activations, "
    "MinMax calibration",
    "fp16": "onnxruntime float16 conversion, fp32 inputs and outputs kept",
}


def convert_fp16(source: Path, target: Path) -> None:
    """Write ``source`` with fp16 weights and arithmetic, fp32 inputs and outputs kept (apps
    keep feeding float32).

    Raises:
        ArtifactError: the converter failed.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
        onnx.save(model, str(target))
    except Exception as exc:  # the converter raises many types
        raise ArtifactError(f"Cannot convert {source.name} to fp16: {first_line(exc)}.") from exc


def add_variant(
    artifact_dir: Path,
    precision: str,
    calibration: tuple[str, np.ndarray],
    held_out: tuple[str, np.ndarray, np.ndarray | None],
    *,
    limits: Limits | None = None,
    verified: bool = True,
    max_fp32: int | None = None,
) -> VariantRecord:
    """Make the ``precision`` variant of ``artifact_dir/model.onnx`` and list it in the manifest.

    Args:
        artifact_dir: A directory written by ``kit export``.
        precision: ``int8`` (static quantization) or ``fp16``.
        calibration: ``(description, samples)`` the activation ranges are calibrated on.
        held_out: ``(description, samples, labels or None)`` the variant is checked on.
        limits: The accuracy drop and top-1 agreement the variant must keep (defaults:
            :class:`kit.artifact.Limits`).
        verified: False when the calibration samples are random (the manifest says so).
        max_fp32: Most layers an int8 variant may keep in fp32 to meet the limits
            (default: half of its quantizable layers; 0 turns the search off).

    Returns:
        The variant's manifest record.

    Raises:
        ArtifactError: the export is missing or tampered with, or quantization failed.
        KitError: the variant misses the limits (nothing is written).
    """
    limits = limits or Limits()
    manifest = _verified(artifact_dir)
    name = VARIANT_FILES[precision]
    fd, tmp = tempfile.mkstemp(dir=artifact_dir, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    staged = Path(tmp)
    try:
        source = artifact_dir / MODEL_FILE
        check, search = _make(
            precision, source, staged, manifest, calibration, held_out, limits, max_fp32
        )
        grid = grid_agreement(source, staged, manifest, held_out[1])
        missed = check.problems(limits) + [
            f"top-1 agreement {a:.2%} at {size} is under {limits.min_agreement:.2%}"
            for size, a in grid.items()
            if a < limits.min_agreement
        ]
        if missed:
            raise KitError(
                f"The {precision} variant of {artifact_dir.name} misses its limits on {held_out[0]}: "
                f"{'; '.join(missed)}{_tried(search)}. Nothing was written; relax "
                "--max-accuracy-drop or --min-agreement only if that cost is acceptable."
            )
        refuse_at_chance(check, manifest, f"The {precision} variant of {artifact_dir.name}")
        staged.chmod(0o644)
        os.replace(staged, artifact_dir / name)
    finally:
        staged.unlink(missing_ok=True)
    record = VariantRecord(
        file=name,
        precision=precision,
        method=_METHODS[precision],
        calibration=calibration[0] if precision == "int8" else None,
        verified=verified,
        held_out=held_out[0],
        limits=limits,
        samples=check.samples,
        agreement=check.agreement,
        accuracy_fp32=check.accuracy_fp32,
        accuracy=check.accuracy,
        nodes_kept_fp32=tuple(search.kept_fp32),
        tries=tuple(search.tries),
        grid=grid,
    )
    file = describe_files(artifact_dir, {name: f"onnx-{precision}"})[name]
    write_manifest(artifact_dir, manifest.with_variant(record, file))
    return record


def refuse_at_chance(check: VariantCheck, manifest: Manifest, what: str) -> None:
    """A variant of trained weights whose accuracy on labelled data is what guessing gives
    is refused, however well it agrees with fp32: the model (or its preprocessing) is wrong.

    Raises:
        KitError: it is at chance level.
    """
    classes = manifest.facts.num_classes
    trained = manifest.model.weights is not None
    if (
        check.accuracy is None
        or not trained
        or not at_chance(check.accuracy, classes, check.samples)
    ):
        return
    raise KitError(
        f"{what} scores {check.accuracy:.2%} on {check.samples} labelled samples, chance level "
        f"for {classes} classes, with trained weights. Nothing was written: the model or its "
        "preprocessing is not right; see the whole-pipeline row of kit parity DIR and the "
        "mean and std the export records."
    )


def _verified(artifact_dir: Path) -> Manifest:
    """The export's manifest once every file matches it and it has a model.onnx.

    Raises:
        ArtifactError: it does not.
    """
    return open_export(artifact_dir, "quantize", needs=(MODEL_FILE,))


def _make(
    precision: str,
    source: Path,
    staged: Path,
    manifest: Manifest,
    calibration: tuple[str, np.ndarray],
    held_out: tuple[str, np.ndarray, np.ndarray | None],
    limits: Limits,
    max_fp32: int | None,
) -> tuple[VariantCheck, _Search]:
    """Write the variant to ``staged`` and check it against ``source`` on ``held_out``."""
    if precision == "int8":
        input_name = manifest.inputs[0].name if manifest.inputs else INPUT_NAME
        return quantize_within_limits(
            source, staged, calibration[1], input_name, held_out, limits, max_fp32
        )
    convert_fp16(source, staged)
    reference = predictions(source, held_out[1])
    return check_variant(reference, staged, held_out[1], held_out[2]), _Search([], [])


def _tried(search: _Search) -> str:
    """What the accuracy-aware search tried, as a table for the error message."""
    if len(search.tries) < 2:
        return ""
    rows = [
        f"  kept in fp32: {', '.join(t['kept_fp32']) or '(none)'} -> agreement "
        f"{t['agreement']:.2%}"
        + (f", accuracy {t['accuracy']:.2%}" if t["accuracy"] is not None else "")
        for t in search.tries
    ]
    return " after keeping layers in fp32, one more each try:\n" + "\n".join(rows) + "\n"
