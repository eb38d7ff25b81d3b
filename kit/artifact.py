"""The artifact contract: what ``kit export`` writes and every other part of kit reads.

File names, the ONNX metadata key, tensor names, parity defaults, the typed
:class:`ModelFacts` embedded in each ONNX file, and the one reader and writer of
``manifest.json``. Torch-free: the runtime that apps embed reads artifacts through it.
No other module spells these names.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ._files import sha256_file, write_json_atomic
from .errors import ArtifactError

__all__ = [
    "BATCH_AXIS",
    "BEST_CHECKPOINT",
    "DEFAULT_ATOL",
    "DEFAULT_BATCH_SIZES",
    "DEFAULT_CALIBRATION_SIZE",
    "DEFAULT_FORMATS",
    "DEFAULT_RTOL",
    "FACTS_KEY",
    "FAILED_SUFFIX",
    "FILE_NAMES",
    "FORMATS",
    "FORMAT_VERSION",
    "INPUT_NAME",
    "LAST_CHECKPOINT",
    "MANIFEST",
    "MODEL_FILE",
    "ORT_OPS_FILE",
    "PARITY_FILE",
    "RESUME_STATE",
    "SINGLE_OUTPUT",
    "VARIANT_FILES",
    "WEIGHTS_FILE",
    "Limits",
    "ModelFacts",
    "describe_files",
    "read_manifest",
    "verify_files",
    "write_manifest",
]

#: One file per export format, in an ``exported/NAME/`` directory.
FILE_NAMES = {
    "onnx": "model.onnx",
    "torchscript": "model.ts",
    "pt2": "model.pt2",
    "ort": "model.ort",  # ORT mobile's format, converted from model.onnx
}
FORMATS = tuple(FILE_NAMES)
#: What ``kit export`` writes unless ``--formats`` says otherwise.
DEFAULT_FORMATS = ("onnx", "torchscript", "pt2")
#: The operators ``model.ort`` needs, as onnxruntime's reduced-size build reads them.
ORT_OPS_FILE = "model.required_operators.config"
MODEL_FILE = FILE_NAMES["onnx"]
WEIGHTS_FILE = "weights.safetensors"
#: Cheaper variants of ``model.onnx`` (``kit quantize``), each beside it with the same facts.
VARIANT_FILES = {"int8": "model.int8.onnx", "fp16": "model.fp16.onnx"}
MANIFEST = "manifest.json"
#: The parity report kept beside artifacts that failed it (``--keep-failed``).
PARITY_FILE = "parity.json"
FAILED_SUFFIX = ".parity-failed"
FORMAT_VERSION = 1

#: ONNX ``metadata_props`` key holding :class:`ModelFacts` as JSON.
FACTS_KEY = "kit.facts"
INPUT_NAME = "input"
#: The name of a network's only output.
SINGLE_OUTPUT = "logits"
BATCH_AXIS = "batch"

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4
#: Random batch sizes parity checks; the export traces batch 2, so all are unseen.
DEFAULT_BATCH_SIZES = (1, 3, 8)
#: Training samples an int8 variant is calibrated on.
DEFAULT_CALIBRATION_SIZE = 512

# A training run's files (``runs/NAME/``).
BEST_CHECKPOINT = "best.safetensors"
LAST_CHECKPOINT = "last.safetensors"
RESUME_STATE = "resume.pt"


@dataclass(frozen=True)
class Limits:
    """What a cheaper variant (int8) may cost against ``model.onnx``: accuracy lost (a
    fraction, 0.003 = 0.3 point) and top-1 agreement kept."""

    max_accuracy_drop: float = 0.003
    min_agreement: float = 0.995


@dataclass(frozen=True)
class ModelFacts:
    """What a runtime needs to feed a model and read its answer, from the ONNX file alone.

    Attributes:
        name: The network's name.
        input_shape: One sample's shape, channels first.
        mean: Per-channel mean of pixel values scaled to [0, 1].
        std: Per-channel standard deviation, same scale.
        outputs: The ONNX outputs' names, in order.
        num_classes: Width of a classifier's one 2-D output (0 for other networks).
        class_names: A label per class (empty for other networks).
        atol: The network's absolute parity tolerance.
        rtol: The network's relative parity tolerance.
        weights_sha256: sha256 of the weights file exported, if any.
        kit_version: The kit that wrote the file.
    """

    name: str
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    outputs: tuple[str, ...] = (SINGLE_OUTPUT,)
    num_classes: int = 0
    class_names: tuple[str, ...] = ()
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    weights_sha256: str | None = None
    kit_version: str = ""

    def __post_init__(self) -> None:
        problems = _fact_problems(self)
        if problems:
            raise ArtifactError(
                f"Model facts for {self.name!r} are invalid: {'; '.join(problems)}."
            )

    @property
    def is_classifier(self) -> bool:
        return self.num_classes > 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> ModelFacts:
        """Facts from parsed JSON; unknown keys are ignored (a newer kit may add some).

        Raises:
            ArtifactError: a required fact is missing or a value is invalid.
        """
        if not isinstance(data, dict):
            raise ArtifactError("Model facts must be a JSON object.")
        missing = [k for k in ("name", "input_shape", "mean", "std") if k not in data]
        if missing:
            raise ArtifactError(f"Model facts lack {', '.join(missing)}.")
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known and v is not None}
        try:
            for key in ("input_shape", "mean", "std", "outputs", "class_names"):
                if key in values:
                    values[key] = tuple(values[key])
            return cls(**values)
        except TypeError as exc:
            raise ArtifactError(f"Model facts are malformed: {exc}.") from None

    @classmethod
    def from_json(cls, text: str) -> ModelFacts:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ArtifactError(f"Model facts are not valid JSON: {exc}.") from None
        return cls.from_dict(data)


def _positive_ints(values: Sequence[Any]) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)


def _fact_problems(f: ModelFacts) -> list[str]:
    problems = []
    if not isinstance(f.name, str) or not f.name:
        problems.append("name must be a non-empty string")
    if not f.input_shape or not _positive_ints(f.input_shape):
        problems.append(f"input_shape {list(f.input_shape)} must be positive integers")
    elif not (len(f.mean) == len(f.std) == f.input_shape[0]):
        problems.append(f"mean and std need one value per channel ({f.input_shape[0]})")
    if any(not (isinstance(s, int | float) and s > 0 and math.isfinite(s)) for s in f.std):
        problems.append("std values must be positive")
    if not f.outputs or len(set(f.outputs)) != len(f.outputs):
        problems.append("outputs must be distinct names")
    if f.class_names and len(f.class_names) != f.num_classes:
        problems.append(f"{len(f.class_names)} class names for {f.num_classes} classes")
    if not (f.atol >= 0 and f.rtol >= 0):
        problems.append("tolerances must be non-negative")
    return problems


def read_manifest(artifact_dir: Path) -> dict[str, Any]:
    """Read ``artifact_dir/manifest.json``.

    Raises:
        ArtifactError: the directory or manifest is missing or not a kit manifest.
    """
    path = artifact_dir / MANIFEST
    if not artifact_dir.is_dir():
        raise ArtifactError(f"{artifact_dir} is not a directory; pass an exported/NAME directory.")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(
            f"{artifact_dir} has no {MANIFEST}; was it written by kit export?"
        ) from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"Cannot read {path}: {exc}.") from None
    if (
        not isinstance(manifest, dict)
        or not isinstance(manifest.get("files"), dict)
        or not isinstance(manifest.get("model"), dict)
    ):
        raise ArtifactError(f"{path} is not a kit manifest (no 'files' or 'model').")
    return manifest


def write_manifest(artifact_dir: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` atomically."""
    write_json_atomic(artifact_dir / MANIFEST, manifest)


def describe_files(root: Path, names: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``{file: {"format", "size", "sha256"}}`` for files in ``root`` (``names``: file -> format)."""
    return {
        name: {
            "format": fmt,
            "size": (root / name).stat().st_size,
            "sha256": sha256_file(root / name),
        }
        for name, fmt in names.items()
    }


def verify_files(directory: Path, files: dict[str, Any]) -> list[str]:
    """Check each ``{name: {"sha256": ...}}`` entry of a manifest; one sentence per problem."""
    problems = []
    for name, info in files.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif sha256_file(path) != info["sha256"]:
            problems.append(f"{name} does not match the sha256 in {MANIFEST} (modified or corrupt)")
    return problems
