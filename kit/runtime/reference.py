"""Reading an export's reference data without onnx or torch, and checking the artifact
against it: ``kit.runtime.load(directory).self_check()``.

A ``.pb`` file of ONNX's test-data layout is one ``TensorProto``; the few fields it uses
(dims, data_type, raw_data or float_data, name) are read here from the protobuf wire format
directly, so the runtime apps embed needs nothing beyond numpy and onnxruntime.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .._files import read_regular
from ..artifact import Manifest
from ..errors import ArtifactError
from ..parity import ParityRun, Runner, run_parity
from ..rule import Agreement, Comparison, Tolerance

__all__ = ["SelfCheck", "check_model", "parse_tensor", "read_tensor", "reference_sets"]

#: TensorProto.DataType -> numpy (little-endian, as raw_data is)
_DTYPES = {
    1: "<f4",
    2: "u1",
    3: "i1",
    6: "<i4",
    7: "<i8",
    9: "?",
    10: "<f2",
    11: "<f8",
}


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at


def _fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """``(field, wire type, value)`` of one protobuf message (varints and byte strings)."""
    found: list[tuple[int, int, int | bytes]] = []
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(data, at)
            found.append((field, wire, value))
        elif wire == 2:
            size, at = _varint(data, at)
            if at + size > len(data):
                raise ValueError("truncated field")
            found.append((field, wire, data[at : at + size]))
            at += size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            found.append((field, wire, data[at : at + width]))
            at += width
        else:
            raise ValueError(f"wire type {wire}")
    return found


def read_tensor(path: Path) -> np.ndarray:
    """The array in a ``TensorProto`` file (one kit wrote; see :func:`reference_sets` for
    reading an export's, which checks each file against its manifest first).

    Raises:
        ArtifactError: not a tensor kit wrote (external data, an unknown type, a bad size).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    return parse_tensor(data, str(path))


def parse_tensor(data: bytes, where: str) -> np.ndarray:
    """The array in the bytes of a ``TensorProto``; ``where`` names it in errors.

    Raises:
        ArtifactError: not a tensor kit wrote (external data, an unknown type, a bad size).
    """
    try:
        dims: list[int] = []
        dtype, raw, floats = 1, b"", b""
        for field, wire, value in _fields(data):
            if field == 1:  # dims: packed or one varint each
                dims += list(_packed(value)) if wire == 2 else [int(value)]  # type: ignore[arg-type]
            elif field == 2:
                dtype = int(value)  # type: ignore[arg-type]
            elif field == 9:
                raw = value  # type: ignore[assignment]
            elif field == 4:
                floats += value if isinstance(value, bytes) else b""
        if len(dims) > 8 or any(d > 1 << 31 for d in dims):
            raise ValueError(f"dims {dims[:9]} are not a tensor's")
        array = np.frombuffer(raw or floats, dtype=_DTYPES[dtype])
        return array.reshape(dims).copy()
    except (ValueError, KeyError) as exc:
        raise ArtifactError(f"{where} is not a tensor of kit's reference data ({exc}).") from None


def _packed(data: bytes) -> list[int]:
    values, at = [], 0
    while at < len(data):
        value, at = _varint(data, at)
        values.append(value)
    return values


#: the largest reference tensor file kit reads (kit keeps a few MB in all)
MAX_TENSOR_BYTES = 64 << 20


def _listed_tensor(directory: Path, manifest: Manifest, name: str) -> np.ndarray:
    """The tensor in ``directory/name``, exactly as the manifest lists and hashes it: a
    regular file (no link, FIFO or device), its size checked before a byte is read.

    Raises:
        ArtifactError: the manifest does not list it, or the file is not what it lists.
    """
    record = manifest.files.get(name)
    if record is None or record.format != "reference":
        raise ArtifactError(
            f"{directory / name} is not listed in {directory}'s manifest as reference data; "
            "kit reads only the files a manifest lists."
        )
    data = read_regular(directory / name, record.size, MAX_TENSOR_BYTES)
    if hashlib.sha256(data).hexdigest() != record.sha256:
        raise ArtifactError(f"{directory / name} does not match its sha256 in the manifest.")
    return parse_tensor(data, str(directory / name))


def reference_sets(
    directory: Path, manifest: Manifest
) -> list[tuple[str, bool, np.ndarray, list[np.ndarray]]]:
    """``(label, real, inputs, eager outputs)`` of each reference set of an export: its
    ``input_0.pb`` and one ``output_K.pb`` per output the manifest names, each read as the
    manifest lists it (nothing is globbed: a stray file is never read).

    Raises:
        ArtifactError: the export has no reference data, lists no sets, a set lacks a
            file, a batch is empty, or a file is not what the manifest lists (the sentence
            names the file).
    """
    record = manifest.reference
    if record is None:
        raise ArtifactError(
            f"{directory} has no reference data (exported before kit kept it); add it with "
            f"kit export {directory}."
        )
    if not record.sets:
        raise ArtifactError(f"{directory}'s manifest lists no reference sets to check with.")
    found = []
    for s in record.sets:
        x = _listed_tensor(directory, manifest, f"{s.directory}/input_0.pb")
        if x.ndim == 0 or len(x) == 0:
            raise ArtifactError(f"{directory / s.directory}/input_0.pb holds an empty batch.")
        outputs = [
            _listed_tensor(directory, manifest, f"{s.directory}/output_{k}.pb")
            for k in range(len(manifest.output_names))
        ]
        if not outputs:
            raise ArtifactError(f"{directory}'s manifest names no outputs to compare.")
        found.append((s.inputs, s.real, x, outputs))
    return found


@dataclass
class SelfCheck:
    """Every reference set and output against the artifact, by the export's recorded rule
    (a variant by top-1 agreement at its limit, on the real samples)."""

    artifact: str
    rule: str
    rows: list[Comparison]

    @property
    def passed(self) -> bool:
        """Every row passed, and there was at least one (nothing checked is no pass)."""
        return bool(self.rows) and all(r.passed for r in self.rows)

    def raise_for_failures(self) -> None:
        """Raise naming the sample set, the output and the difference of the first failure.

        Raises:
            ArtifactError: a row failed.
        """
        for row in self.rows:
            if not row.passed:
                why = row.error or f"max|diff| {row.max_abs:.3g} against max|eager| {row.scale:.3g}"
                raise ArtifactError(
                    f"{self.artifact} disagrees with its reference data on {row.inputs}, output "
                    f"{row.output}: {why} ({self.rule})."
                )


def judge(
    artifact: str,
    manifest: Manifest,
    sets: list[tuple[str, bool, np.ndarray, list[np.ndarray]]],
    runner: Runner,
    agreement: float | None,
) -> SelfCheck:
    """Run ``runner`` on every set and judge each output through :func:`kit.parity.run_parity`
    (an artifact returning fewer outputs than the reference holds fails)."""
    assert manifest.reference is not None
    tolerance = Tolerance(manifest.reference.atol, manifest.reference.rtol)
    rule = tolerance if agreement is None else Agreement(agreement)
    # a variant is judged on the real samples only
    chosen = [s for s in sets if agreement is None or s[1]]
    inputs = [(s[0], s[2]) for s in chosen]
    report = ParityRun(artifact, tolerance)
    run_parity(
        None,
        [runner],
        inputs,
        report=report,
        rule=rule,
        output_names=manifest.output_names,
        expected=[s[3] for s in chosen],
    )
    if not report.comparisons:
        raise ArtifactError(
            f"{artifact} has no reference samples its rule can judge ({rule.describe()})."
        )
    return SelfCheck(artifact, rule.describe(), report.comparisons)


class _Loaded(Protocol):
    """What the self-check reads of a :class:`kit.runtime.Model`."""

    export: tuple[Path, Manifest] | None
    precision: str
    path: Path
    provider: str
    output_names: list[str]

    def predict(self, x: np.ndarray, *, validate: bool = True) -> dict[str, np.ndarray]: ...


def check_model(model: _Loaded) -> SelfCheck:
    """``Model.self_check``: the export's reference data through ``model``, judged."""
    if model.export is None:
        raise ArtifactError(
            f"{model.path} was loaded as a file; load its export directory to self-check it."
        )
    directory, manifest = model.export
    sets = reference_sets(directory, manifest)
    agreement = None
    if model.precision != "fp32":
        agreement = manifest.onnx_variants[model.precision].limits.min_agreement
        if not any(real for _, real, _, _ in sets):
            raise ArtifactError(
                f"{directory}'s reference data holds no real samples, and the "
                f"{model.precision} variant is judged by top-1 agreement on real samples."
            )

    def run(x: np.ndarray) -> list[np.ndarray]:
        outputs = model.predict(x)
        return [outputs[name] for name in model.output_names]

    key = "onnxruntime-cpu" if model.provider == "CPUExecutionProvider" else "onnxruntime-cuda"
    runner = Runner(model.path.name, f"onnxruntime {model.provider}", run, key=key)
    check = judge(model.path.name, manifest, sets, runner, agreement)
    check.raise_for_failures()
    return check
