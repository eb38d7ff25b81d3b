"""The artifact contract: what ``kit export`` writes and every other part of kit reads.

File names, the ONNX metadata key, tensor names, parity defaults, the typed
:class:`ModelFacts` embedded in each ONNX file, and the typed :class:`Manifest` with its one
reader and writer. Torch-free: the runtime that apps embed reads artifacts through it. No
other module spells these names.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import overload

from ..catalogue import FORMATS as _CATALOGUE
from .facts import FactsError, Limits, ModelFacts
from .manifest import (
    FORMAT_VERSION,
    MANIFEST,
    ArtifactFile,
    DataRecord,
    FileRecord,
    Manifest,
    MobileRecord,
    ModelRecord,
    ReferenceRecord,
    ReferenceSet,
    TensorRecord,
    VariantRecord,
    WeightsRecord,
    checked_export,
    describe_files,
    open_export,
    read_manifest,
    verify_files,
    write_manifest,
)
from .shapes import (
    AXES,
    MAX_BATCH,
    AxisRule,
    ShapeRules,
    capped_batch,
    parse_dynamic,
    parse_grid,
)

__all__ = [
    "AXES",
    "BATCH_AXIS",
    "BEST_CHECKPOINT",
    "BUNDLED_PTE",
    "CLASS_NAMES_KEY",
    "DATASETS",
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
    "INPUT_SHAPE_KEY",
    "LABELS_FILE",
    "LAST_CHECKPOINT",
    "MANIFEST",
    "MAX_BATCH",
    "MEAN_KEY",
    "MODEL_FILE",
    "OPENVINO_WEIGHTS",
    "ORT_OPS_FILE",
    "OTHER_VARIANT_FILES",
    "PARITY_FILE",
    "PARTIAL_MARK",
    "PERF_DATA_FILE",
    "REFERENCE_BYTES",
    "REFERENCE_SET",
    "RESULTS_DIR",
    "RESUME_STATE",
    "SINGLE_OUTPUT",
    "STD_KEY",
    "VARIANT_FILES",
    "WEIGHTS_FILE",
    "ArtifactFile",
    "AxisRule",
    "DataRecord",
    "FactsError",
    "FileRecord",
    "Limits",
    "Manifest",
    "MobileRecord",
    "ModelFacts",
    "ModelRecord",
    "ReferenceRecord",
    "ReferenceSet",
    "ShapeRules",
    "TensorRecord",
    "VariantRecord",
    "WeightsRecord",
    "capped_batch",
    "checked_export",
    "describe_files",
    "open_export",
    "parse_dynamic",
    "parse_grid",
    "read_manifest",
    "served_name",
    "variant_key",
    "verify_files",
    "write_manifest",
]


class _FileNames(Mapping[str, str]):
    """format -> file name, from the catalogue."""

    def __getitem__(self, fmt: str) -> str:
        return _CATALOGUE[fmt].file

    def __iter__(self) -> Iterator[str]:
        return iter(_CATALOGUE)

    def __len__(self) -> int:
        return len(_CATALOGUE)


class _Formats(Sequence[str]):
    """Every format, in the catalogue's order (``onnx`` before what is made from it)."""

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[str]: ...
    def __getitem__(self, i: int | slice) -> str | Sequence[str]:
        return list(_CATALOGUE)[i]

    def __len__(self) -> int:
        return len(_CATALOGUE)


#: One file per export format, in an ``exported/NAME/`` directory (``kit.catalogue``'s
#: format records, read live: a format added there is here too).
FILE_NAMES: Mapping[str, str] = _FileNames()
FORMATS: Sequence[str] = _Formats()
#: OpenVINO IR keeps its weights in a second file beside ``model.xml``.
OPENVINO_WEIGHTS = "model.bin"
#: What ``kit export`` writes unless ``--formats`` says otherwise.
DEFAULT_FORMATS = ("onnx", "torchscript", "pt2")
#: The operators ``model.ort`` needs, as onnxruntime's reduced-size build reads them.
ORT_OPS_FILE = "model.required_operators.config"
MODEL_FILE = FILE_NAMES["onnx"]
WEIGHTS_FILE = "weights.safetensors"
#: Cheaper variants of ``model.onnx`` (``kit quantize``), each beside it with the same facts.
VARIANT_FILES = {"int8": "model.int8.onnx", "fp16": "model.fp16.onnx"}
#: Cheaper variants of other formats: ``(precision, format)`` -> file (PT2E int8 for ExecuTorch).
OTHER_VARIANT_FILES = {("int8", "pte"): "model.int8.pte"}
#: Reference data kept in an export: at most this many bytes, or four samples, whichever
#: is more (ONNX's test-data layout, ``test_data_set_N/input_0.pb``, ``output_K.pb``).
REFERENCE_BYTES = 2 << 20
#: The ONNX test-data layout's names.
REFERENCE_SET = "test_data_set_{}"
#: perf_analyzer's input data, written beside each model of a Triton repository.
PERF_DATA_FILE = "perf_analyzer_data.json"
#: An ExecuTorch program with the reference samples inside (``BundledProgram``).
BUNDLED_PTE = "model.bundled.pte"
#: Where parity, bench, eval, quantize and check save their results in an export, for
#: ``kit report`` (not in the manifest: evidence about the files, never part of them).
RESULTS_DIR = "results"
#: The parity report kept beside artifacts that failed it (``--keep-failed``).
PARITY_FILE = "parity.json"
FAILED_SUFFIX = ".parity-failed"
#: An export being written is ``OUT/.NAME.partial-XXXX``; nothing reads or serves it.
PARTIAL_MARK = ".partial-"

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
#: The data sets kit reads (``--dataset``; a manifest's ``model.data.dataset``).
DATASETS = ("mnist", "imagefolder", "cifar10", "fake")

# A training run's files (``runs/NAME/``).
#: safetensors metadata keys a checkpoint carries from its data into the export (JSON lists):
#: its classes' names, the per-channel mean and std it was trained with, one sample's shape
CLASS_NAMES_KEY = "kit.class_names"
MEAN_KEY = "kit.mean"
STD_KEY = "kit.std"
INPUT_SHAPE_KEY = "kit.input_shape"
#: the file of class names, one per line, beside a Triton model (its ``label_filename``)
LABELS_FILE = "labels.txt"
BEST_CHECKPOINT = "best.safetensors"
LAST_CHECKPOINT = "last.safetensors"
RESUME_STATE = "resume.pt"


def variant_key(precision: str, fmt: str = "onnx") -> str:
    """The manifest's key of a variant: its precision for ONNX (``int8``), precision and
    format otherwise (``int8-pte``)."""
    return precision if fmt == "onnx" else f"{precision}-{fmt}"


def served_name(name: str, precision: str) -> str:
    """A model's name where each precision is its own model (kit serve, Triton):
    ``mnist_cnn`` for fp32, ``mnist_cnn_int8`` for its int8 variant."""
    return name if precision == "fp32" else f"{name}_{precision}"
