"""``manifest.json`` as a typed value: one reader that validates, one writer.

An export folder is a file people download and share, so the reader trusts nothing in it:
every field is typed (a wrong or missing one is one sentence naming the field and the
file), and every path it names must be a plain relative name that stays inside the folder
once symlinks are resolved. Nothing named by a manifest is opened before that holds.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Any

import msgspec

from .._files import sha256_file, write_text_atomic
from ..catalogue import FORMATS  # the formats a runner runs (weights and configs are not)
from ..errors import ArtifactError
from .facts import Limits, ModelFacts, validation_sentence

__all__ = [
    "ArtifactFile",
    "DataRecord",
    "FileRecord",
    "Manifest",
    "MobileRecord",
    "ModelRecord",
    "ReferenceRecord",
    "ReferenceSet",
    "TensorRecord",
    "VariantRecord",
    "WeightsRecord",
    "describe_files",
    "read_manifest",
    "verify_files",
    "write_manifest",
]

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
#: the largest manifest kit reads (a VGG's, with every parity row and int8 try, is ~100 kB)
MAX_MANIFEST_BYTES = 16 << 20


class FileRecord(msgspec.Struct, frozen=True):
    """One file of the export: its format, size and sha256."""

    format: str
    size: int
    sha256: str


class WeightsRecord(msgspec.Struct, frozen=True):
    """The weights file an export carries, and where it came from."""

    file: str
    sha256: str
    source: str | None = None
    source_sha256: str | None = None


class DataRecord(msgspec.Struct, frozen=True):
    """The data a model was trained and validated on, which later commands use by default:
    a data set kit reads (``mnist``, ``imagefolder``, ``cifar10``) and where it lives (None:
    the copy bundled with kit, or ``$KIT_DATA_DIR``). Images, never code."""

    dataset: str
    directory: str | None = None


class ModelRecord(msgspec.Struct, frozen=True):
    """How to rebuild the eager network: a registered name (or a factory, shown but never
    imported on the manifest's say-so), its class count, and its weights or seed."""

    name: str
    input_shape: tuple[int, ...]
    factory: str | None = None
    num_classes: int | None = None
    seed: int = 0
    weights: WeightsRecord | None = None
    #: one line for people (an untrained export says so)
    note: str | None = None
    #: the data it was trained and validated on
    data: DataRecord | None = None


class TensorRecord(msgspec.Struct, frozen=True):
    """An input or output: its name, shape (``batch`` for the free axis) and dtype."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"


class VariantRecord(msgspec.Struct, frozen=True):
    """A cheaper variant of ``model.onnx`` (or of another format): how it was made and what
    it measured."""

    file: str
    precision: str
    format: str = "onnx"
    method: str = ""
    calibration: str | None = None
    verified: bool = True
    held_out: str = ""
    limits: Limits = Limits()
    samples: int = 0
    agreement: float = 0.0
    accuracy_fp32: float | None = None
    accuracy: float | None = None
    nodes_kept_fp32: tuple[str, ...] = ()
    tries: tuple[dict[str, Any], ...] = ()
    #: top-1 agreement with model.onnx at each other size of the rules' grid (an export
    #: whose size varies), on the held-out samples resized to it
    grid: dict[str, Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]] = {}


class MobileRecord(msgspec.Struct, frozen=True):
    """``model.ort``'s operators and those outside ORT Mobile's default set."""

    operators: tuple[str, ...]
    outside_default_set: tuple[str, ...]
    operators_file: str


class ReferenceSet(msgspec.Struct, frozen=True):
    """One reference sample set in ONNX's test-data layout (``test_data_set_N/``): its
    inputs (``input_0.pb``) and eager's outputs for them (``output_K.pb``)."""

    directory: str
    inputs: str
    batch: int
    real: bool = False


class ReferenceRecord(msgspec.Struct, frozen=True):
    """The samples parity used, kept with eager's outputs, and the rule that judges them."""

    sets: tuple[ReferenceSet, ...]
    atol: Annotated[float, msgspec.Meta(ge=0.0, le=1e300)]
    rtol: Annotated[float, msgspec.Meta(ge=0.0, le=1e300)]
    rule: str
    size: int


class ArtifactFile(msgspec.Struct, frozen=True):
    """A runnable file of an export: its name, format (onnx, pt2, ...) and precision."""

    name: str
    format: str
    precision: str = "fp32"

    @property
    def label(self) -> str:
        """How reports name it: its format, with the precision of a variant (``onnx int8``)."""
        return self.format if self.precision == "fp32" else f"{self.format} {self.precision}"


class Manifest(msgspec.Struct, frozen=True):
    """What an export wrote, how to rebuild its eager reference, and how it verified."""

    model: ModelRecord
    facts: ModelFacts
    files: dict[str, FileRecord]
    format_version: int = FORMAT_VERSION
    created: str = ""
    inputs: tuple[TensorRecord, ...] = ()
    outputs: tuple[TensorRecord, ...] = ()
    opset: int | None = None
    versions: dict[str, str] = {}
    parity: dict[str, Any] | None = None
    variants: dict[str, VariantRecord] = {}
    training: dict[str, Any] | None = None
    mobile: MobileRecord | None = None
    reference: ReferenceRecord | None = None
    #: the runtime versions this export was made to load in (``kit export --target``)
    targets: tuple[str, ...] = ()
    #: bytes of memory a file plans for its largest input, by file (ExecuTorch plans at
    #: the upper bound of every varying size)
    planned: dict[str, Annotated[int, msgspec.Meta(ge=0)]] = {}
    #: files written at the example's size only though the rules let it vary, and why
    #: (their converter could not do a varying size); parity checks them at that size
    static: dict[str, Annotated[str, msgspec.Meta(max_length=4000)]] = {}

    def __post_init__(self) -> None:
        for where, name in self.named_paths():
            if problem := _path_problem(name):
                raise ValueError(f"field {where}: {name!r} {problem}")
        for key, variant in self.variants.items():
            where = f"field variants[{key!r}]"
            if variant.file not in self.files:
                raise ValueError(f"{where}.file: {variant.file!r} is not in files")
            if key != _variant_key(variant):
                raise ValueError(f"{where}: a {variant.precision} {variant.format} variant")
        if self.model.weights is not None and self.model.weights.file not in self.files:
            file = self.model.weights.file
            raise ValueError(f"field model.weights.file: {file!r} is not in files")

    def named_paths(self) -> list[tuple[str, str]]:
        """Every file name the manifest holds, with the field that holds it."""
        found = [(f"files[{name!r}]", name) for name in self.files]
        found += [(f"variants[{p!r}].file", v.file) for p, v in self.variants.items()]
        if self.model.weights is not None:
            found.append(("model.weights.file", self.model.weights.file))
        if self.mobile is not None:
            found.append(("mobile.operators_file", self.mobile.operators_file))
        if self.reference is not None:
            found += [
                (f"reference.sets[{i}]", s.directory) for i, s in enumerate(self.reference.sets)
            ]
        return found

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def onnx_variants(self) -> dict[str, VariantRecord]:
        """The variants of ``model.onnx``, by precision (what kit serve and Triton serve)."""
        return {v.precision: v for v in self.variants.values() if v.format == "onnx"}

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs] or list(self.facts.outputs)

    def artifacts(self) -> list[ArtifactFile]:
        """Every runnable file (not weights, not operator configs), with its precision."""
        precision = {v.file: v.precision for v in self.variants.values()}
        found = []
        for name, record in self.files.items():
            fmt = record.format.partition("-")[0] if name in precision else record.format
            if fmt in FORMATS:
                found.append(ArtifactFile(name, fmt, precision.get(name, "fp32")))
        return found

    def with_files(self, files: dict[str, FileRecord]) -> Manifest:
        return msgspec.structs.replace(self, files={**self.files, **files})

    def with_variant(self, record: VariantRecord, file: FileRecord) -> Manifest:
        """The manifest with ``record`` (and its file) added or replaced."""
        return msgspec.structs.replace(
            self,
            files={**self.files, record.file: file},
            variants={**self.variants, _variant_key(record): record},
        )

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]


def _variant_key(record: VariantRecord) -> str:
    """The contract's ``variant_key`` (repeated: the contract's names import this module)."""
    return record.precision if record.format == "onnx" else f"{record.precision}-{record.format}"


def _path_problem(name: str) -> str | None:
    """Why ``name`` cannot be a file of an export folder (None when it can)."""
    if not isinstance(name, str) or not name or "\x00" in name:
        return "is not a file name"
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or "\\" in name:
        return "is an absolute path; a manifest names files inside its folder"
    if any(part in ("..", "") for part in name.split("/")) or name.startswith("./"):
        return "leaves its folder (..); a manifest names files inside its folder"
    return None


def _entry_sentence(data: Any, exc: msgspec.ValidationError) -> str:
    """msgspec's error, naming the key of the ``files``/``variants`` entry that failed
    (msgspec itself says ``files[...]``)."""
    sentence = validation_sentence(exc)
    for field, kind in (("files", FileRecord), ("variants", VariantRecord)):
        if f"field {field}[...]" not in sentence or not isinstance(data.get(field), dict):
            continue
        for key, value in data[field].items():
            try:
                msgspec.convert(value, kind)
            except msgspec.ValidationError as inner:
                inner_sentence = validation_sentence(inner)
                where = f"{field}[{key!r}]"
                if inner_sentence.startswith("field (top level)"):
                    return f"field {where}{inner_sentence[17:]}"
                if inner_sentence.startswith("field "):
                    return f"field {where}.{inner_sentence[6:]}"
                return f"field {where}: {inner_sentence}"
    return sentence


def _escapes(directory: Path, name: str) -> bool:
    """Whether ``directory/name`` resolves (symlinks followed) outside ``directory``."""
    root = directory.resolve()
    try:
        (directory / name).resolve().relative_to(root)
    except ValueError:
        return True
    return False


def read_manifest(artifact_dir: Path) -> Manifest:
    """Read and validate ``artifact_dir/manifest.json``.

    Raises:
        ArtifactError: the directory or manifest is missing, not a kit manifest, or a field
            is wrong (the sentence names the field and the file).
    """
    path = artifact_dir / MANIFEST
    if not artifact_dir.is_dir():
        raise ArtifactError(f"{artifact_dir} is not a directory; pass an exported/NAME directory.")
    if not path.is_file():
        what = "a directory" if path.is_dir() else "missing"
        raise ArtifactError(f"{path} is {what}; was {artifact_dir} written by kit export?")
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ArtifactError(f"{path} is larger than {MAX_MANIFEST_BYTES >> 20} MiB.")
        data = msgspec.json.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError, RecursionError) as exc:
        raise ArtifactError(f"Cannot read {path}: {exc}.") from None
    if not isinstance(data, dict) or not {"files", "model"} <= set(data):
        raise ArtifactError(f"{path} is not a kit manifest (no 'files' or 'model').")
    try:
        manifest = msgspec.convert(data, Manifest)
    except msgspec.ValidationError as exc:
        raise ArtifactError(
            f"{path} is not a valid kit manifest: {_entry_sentence(data, exc)}."
        ) from None
    for where, name in manifest.named_paths():
        if _escapes(artifact_dir, name):
            raise ArtifactError(
                f"{path} is not a valid kit manifest: field {where}: {name!r} resolves outside "
                f"{artifact_dir} (a symlink); a manifest names files inside its folder."
            )
    return manifest


def write_manifest(artifact_dir: Path, manifest: Manifest) -> None:
    """Write ``manifest.json`` atomically (indented JSON, fields in their declared order)."""
    text = msgspec.json.format(msgspec.json.encode(manifest), indent=2).decode()
    write_text_atomic(artifact_dir / MANIFEST, text + "\n")


def describe_files(root: Path, names: dict[str, str]) -> dict[str, FileRecord]:
    """A record of each file in ``root`` (``names``: file -> format)."""
    return {
        name: FileRecord(fmt, (root / name).stat().st_size, sha256_file(root / name))
        for name, fmt in names.items()
    }


def verify_files(directory: Path, files: dict[str, FileRecord]) -> list[str]:
    """Check every file's size and sha256 against its record; one sentence per problem.

    A path that is not a regular file inside ``directory`` (a FIFO, a device, a symlink out)
    is never opened.
    """
    problems = []
    for name, record in files.items():
        path = directory / name
        if _escapes(directory, name):
            problems.append(f"{name} resolves outside {directory}; refusing to read it")
        elif not path.is_file():
            problems.append(f"{name} is missing (or not a regular file)")
        elif os.stat(path).st_size != record.size or sha256_file(path) != record.sha256:
            problems.append(f"{name} does not match the sha256 in {MANIFEST} (modified or corrupt)")
    return problems


def checked_export(directory: Path) -> tuple[Manifest, list[str]]:
    """An export's manifest, and what is wrong with the files it lists (nothing: all match)."""
    manifest = read_manifest(directory)
    return manifest, verify_files(directory, manifest.files)


def open_export(directory: Path, doing: str, *, needs: tuple[str, ...] = ()) -> Manifest:
    """An export's manifest once every file it lists matches its sha256, and it has each
    file ``needs`` names; else one sentence: ``Refusing to DOING DIRECTORY: why.``

    Raises:
        ArtifactError: no manifest, an invalid one, a missing or tampered file, or a file
            the caller needs that this export lacks.
    """
    manifest, problems = checked_export(directory)
    problems += [f"it has no {name} (export it with that format)" for name in needs
                 if name not in manifest.files]  # fmt: skip
    if problems:
        raise ArtifactError(f"Refusing to {doing} {directory}: {'; '.join(problems)}.")
    return manifest
