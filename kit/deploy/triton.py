"""``kit triton``: a Triton model repository from kit exports, checked with Triton's schema.

Each model (and each variant, as ``NAME_int8``) becomes ``REPO/NAME/config.pbtxt`` and
``REPO/NAME/1/model.onnx``. The config is built as Triton's own ``ModelConfig`` protobuf
(``tritonclient.grpc.model_config_pb2``), written with protobuf's text format, parsed back
and compared field by field with the ONNX file before it lands; a model already in the
repository is replaced by a rename, and the others are left alone.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf import text_format
from onnx import helper

from ..artifact import (
    FACTS_KEY,
    LABELS_FILE,
    MODEL_FILE,
    PERF_DATA_FILE,
    ModelFacts,
    capped_batch,
    open_export,
    read_manifest,
    served_name,
)
from ..datatypes import PROTOCOL_DATATYPES
from ..errors import ArtifactError, UsageError
from ..server.config import ServerConfig

__all__ = [
    "CONFIG_FILE",
    "TritonOptions",
    "check_config",
    "model_config",
    "perf_analyzer_data",
    "write_model",
    "write_repository",
]

CONFIG_FILE = "config.pbtxt"
VERSION_DIR = "1"


def _pb() -> Any:
    """Triton's model_config_pb2 (from tritonclient[grpc])."""
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2


@dataclass(frozen=True)
class TritonOptions:
    """How Triton should run the models (the CLI's options, with their defaults).

    Attributes:
        max_batch_size: Rows Triton's dynamic batcher merges into one run.
        max_queue_delay_us: The longest the oldest request waits for company (the same
            meaning as ``kit serve --max-queue-delay-us``).
        preferred_batch_sizes: Batch sizes the batcher tries to form (default: the largest).
        device: ``auto`` (GPU when Triton has one), ``gpu`` or ``cpu``.
        gpus: The GPUs to place instances on (empty: all of them).
        instances: Model instances per device.
        max_opset: The highest ai.onnx opset the target Triton's onnxruntime backend loads.
    """

    max_batch_size: int = ServerConfig.max_batch_size
    max_queue_delay_us: int = ServerConfig.max_queue_delay_us
    preferred_batch_sizes: Sequence[int] = ()
    device: str = "auto"
    gpus: Sequence[int] = ()
    instances: int = 1
    max_opset: int = 21

    def __post_init__(self) -> None:
        if self.preferred_batch_sizes and max(self.preferred_batch_sizes) > self.max_batch_size:
            raise UsageError("--preferred-batch-sizes must not exceed --max-batch-size.")


@dataclass(frozen=True)
class _Tensor:
    name: str
    data_type: str
    dims: list[int]


def _tensors(values: Any) -> list[_Tensor]:
    """Graph inputs or outputs: name, Triton type, dims without the batch axis (-1 free)."""
    found = []
    for v in values:
        t = v.type.tensor_type
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type))
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        # Triton's names are the inference protocol's, prefixed
        found.append(_Tensor(v.name, f"TYPE_{PROTOCOL_DATATYPES.get(dtype, 'INVALID')}", dims[1:]))
    return found


def _graph(path: Path) -> tuple[list[_Tensor], list[_Tensor], int]:
    """The ONNX file's inputs, outputs and ai.onnx opset (weights not loaded)."""
    proto = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    return _tensors(proto.graph.input), _tensors(proto.graph.output), opset


def model_config(
    name: str, onnx_path: Path, facts: ModelFacts | None, options: TritonOptions
) -> Any:
    """The ``ModelConfig`` protobuf for one ONNX file.

    Raises:
        ArtifactError: a tensor type Triton lacks, or an opset newer than ``max_opset``.
    """
    pb = _pb()
    inputs, outputs, opset = _graph(onnx_path)
    if opset > options.max_opset:
        raise ArtifactError(
            f"{onnx_path} uses ONNX opset {opset}, newer than the {options.max_opset} the target "
            "Triton's onnxruntime backend loads; re-export with --opset "
            f"{options.max_opset}, or pass --max-opset {opset} for a newer Triton."
        )
    config = pb.ModelConfig(name=name, platform="onnxruntime_onnx")
    most = capped_batch(facts.dynamic if facts is not None else None, options.max_batch_size)
    config.max_batch_size = most  # within a batch rule (kit export --dynamic batch=..)
    for field, tensors in ((config.input, inputs), (config.output, outputs)):
        for t in tensors:
            if t.data_type == "TYPE_INVALID":
                raise ArtifactError(f"{onnx_path}: tensor {t.name} has a type Triton cannot serve.")
            field.add(name=t.name, data_type=pb.DataType.Value(t.data_type), dims=t.dims)
    if facts is not None and facts.is_classifier and len(config.output) == 1:
        config.output[0].label_filename = LABELS_FILE  # Triton's classification extension
    batching = config.dynamic_batching
    batching.max_queue_delay_microseconds = options.max_queue_delay_us
    preferred = [b for b in options.preferred_batch_sizes if b <= most] or [most]
    batching.preferred_batch_size.extend(preferred)
    kind = {"auto": "KIND_AUTO", "gpu": "KIND_GPU", "cpu": "KIND_CPU"}[options.device]
    group = config.instance_group.add(
        count=options.instances, kind=pb.ModelInstanceGroup.Kind.Value(kind)
    )
    group.gpus.extend(options.gpus)
    for key, value in _parameters(facts).items():
        config.parameters[key].string_value = value
    return config


def _labels(facts: ModelFacts) -> list[str]:
    """One label per class for Triton's labels file (one per line, so a name holding a line
    break is written with it escaped)."""
    names = facts.class_names or tuple(str(i) for i in range(facts.num_classes))
    return [n.replace("\n", "\\n").replace("\r", "\\r") for n in names]


def _parameters(facts: ModelFacts | None) -> dict[str, str]:
    """The model's facts as config parameters, each a JSON string clients can read back."""
    if facts is None:
        return {}
    return {
        "kit.mean": json.dumps(list(facts.mean)),
        "kit.std": json.dumps(list(facts.std)),
        "kit.class_names": json.dumps(list(facts.class_names)),
        "kit.input_shape": json.dumps(list(facts.input_shape)),
        **({"kit.dynamic": facts.dynamic.flags()} if facts.dynamic else {}),
        FACTS_KEY: facts.to_json(),
    }


def check_config(text: str, onnx_path: Path, name: str) -> list[str]:
    """Differences between a ``config.pbtxt`` and its ONNX file (empty when they agree).

    Parsed with Triton's own ``ModelConfig`` (an unknown field is a difference too).
    """
    pb = _pb()
    config = pb.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        return [f"not a Triton ModelConfig: {exc}"]
    inputs, outputs, _ = _graph(onnx_path)
    problems = []
    if config.name != name:
        problems.append(f"name {config.name!r}, directory {name!r}")
    if config.platform != "onnxruntime_onnx":
        problems.append(f"platform {config.platform!r}, not onnxruntime_onnx")
    if config.max_batch_size < 1:
        problems.append("max_batch_size < 1, but the ONNX file has a batch axis")
    for kind, field, tensors in (
        ("input", config.input, inputs),
        ("output", config.output, outputs),
    ):
        written = [(t.name, pb.DataType.Name(t.data_type), list(t.dims)) for t in field]
        expected = [(t.name, t.data_type, t.dims) for t in tensors]
        if written != expected:
            problems.append(f"{kind}s {written} but the ONNX file has {expected}")
    return problems


def write_model(
    repo: Path,
    name: str,
    onnx_path: Path,
    facts: ModelFacts | None,
    options: TritonOptions,
    perf_data: dict[str, Any] | None = None,
) -> Path:
    """``repo/name/`` with its config and ``1/model.onnx``, replacing an older one whole;
    with ``perf_data``, perf_analyzer's input data beside them.

    Raises:
        ArtifactError: the config disagrees with the ONNX file, or the repository cannot
            be written.
    """
    config = model_config(name, onnx_path, facts, options)
    text = text_format.MessageToString(config)
    if problems := check_config(text, onnx_path, name):
        raise ArtifactError(f"The Triton config for {name} is wrong: {'; '.join(problems)}.")
    try:
        repo.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=repo, prefix=f".{name}."))
    except OSError as exc:
        raise UsageError(
            f"Cannot write to the repository {repo}: {exc.strerror}; pass a writable --repo."
        ) from None
    try:
        (staging / VERSION_DIR).mkdir()
        shutil.copyfile(onnx_path, staging / VERSION_DIR / MODEL_FILE)
        (staging / CONFIG_FILE).write_text(text)
        if facts is not None and facts.is_classifier:
            (staging / LABELS_FILE).write_text("".join(f"{n}\n" for n in _labels(facts)))
        if perf_data is not None:
            (staging / PERF_DATA_FILE).write_text(json.dumps(perf_data))
        staging.chmod(0o755)
        _swap(staging, repo / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return repo / name


def _swap(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an older ``target`` goes only once the new one is in."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    try:
        staging.rename(target)
    except BaseException:
        if old is not None:
            old.rename(target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def perf_analyzer_data(export: Path, samples: int = 16) -> dict[str, Any] | None:
    """perf_analyzer's ``--input-data`` JSON from an export's reference data: up to
    ``samples`` inputs (one sample each, without the batch axis) and, as ``validation_data``,
    eager's outputs for them (perf_analyzer compares outputs exactly: what a model computes
    on another provider or precision differs in its last bits). None without reference data."""
    from ..runtime.reference import reference_sets

    manifest = read_manifest(export)
    if manifest.reference is None:
        return None
    data: list[dict[str, Any]] = []
    expected: list[dict[str, Any]] = []
    for _, _, x, outputs in reference_sets(export, manifest):
        for i in range(min(len(x), samples - len(data))):
            data.append({manifest.inputs[0].name: _content(x[i])})
            expected.append(
                {n: _content(y[i]) for n, y in zip(manifest.output_names, outputs, strict=False)}
            )
    return {"data": data, "validation_data": expected}


def _content(x: np.ndarray) -> dict[str, Any]:
    return {"content": x.reshape(-1).tolist(), "shape": list(x.shape)}


def models_of(export: Path) -> list[tuple[str, Path, ModelFacts | None]]:
    """``(Triton name, ONNX file, facts)`` for a verified export and each of its variants.

    Raises:
        ArtifactError: not an export directory, a file that does not match its manifest,
            or no model.onnx.
    """
    manifest = open_export(export, "deploy", needs=(MODEL_FILE,))
    return [
        (served_name(manifest.name, p), export / name, manifest.facts)
        for p, name in [
            ("fp32", MODEL_FILE),
            *((p, v.file) for p, v in manifest.onnx_variants.items()),
        ]
    ]


def write_repository(
    repo: Path, exports: Sequence[Path], options: TritonOptions
) -> Iterator[tuple[Path, Path, bool]]:
    """Every model of ``exports`` into the Triton repository ``repo``: one model per name
    (two exports naming one model are refused), every config checked before any model is
    written. Yields each written model's folder, its ONNX file and whether perf_analyzer's
    data went beside it.

    Raises:
        UsageError: two exports name one model.
        ArtifactError: an export is tampered with, or a config disagrees with its file.
    """
    models: list[tuple[str, Path, ModelFacts | None]] = []
    seen: dict[str, Path] = {}
    for export in exports:
        for name, onnx_path, facts in models_of(export):
            if name in seen:
                raise UsageError(
                    f"{seen[name]} and {export} both export a model named {name!r}; a repository "
                    "holds one model per name, so deploy them in separate calls or repositories."
                )
            seen[name] = export
            models.append((name, onnx_path, facts))
    for name, onnx_path, facts in models:  # every model checked before anything is written
        model_config(name, onnx_path, facts, options)
    perf = {export: perf_analyzer_data(export) for export in exports}
    for name, onnx_path, facts in models:
        data = perf[seen[name]]
        yield write_model(repo, name, onnx_path, facts, options, data), onnx_path, data is not None
