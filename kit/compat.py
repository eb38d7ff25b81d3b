"""Which runtime versions can load an export's files: ``kit check --target`` and
``kit export --target``.

The tables are kit's own, each with its source: what an onnxruntime release reads (its
highest ai.onnx opset and ONNX IR version), and which onnxruntime each Triton release ships.
A table says what should load; ``kit parity --runtime onnxruntime==X`` proves it in that
version itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

__all__ = [
    "ORT_READS",
    "TRITON_ORT",
    "Finding",
    "OrtTarget",
    "check_export",
    "check_file",
    "export_limits",
    "oldest_readers",
    "onnx_versions",
    "parse_target",
]

#: onnxruntime ``major.minor`` -> (highest ai.onnx opset, highest ONNX IR version) it reads.
#: 1.0-1.20: onnxruntime's compatibility page (docs/reference/compatibility.md in
#: microsoft/onnxruntime, "ONNX opset support"); 1.21 and later: measured by
#: ``scripts/probe_ort.py`` in each release itself (docs/BENCHMARKS.md).
ORT_READS: dict[tuple[int, int], tuple[int, int]] = {
    (1, 0): (11, 6), (1, 1): (11, 6), (1, 2): (11, 6), (1, 3): (12, 7), (1, 4): (12, 7),
    (1, 5): (12, 7), (1, 6): (13, 7), (1, 7): (13, 7), (1, 8): (14, 7), (1, 9): (15, 8),
    (1, 10): (15, 8), (1, 11): (16, 8), (1, 12): (17, 8), (1, 13): (17, 8), (1, 14): (18, 8),
    (1, 15): (19, 8), (1, 16): (19, 9), (1, 17): (20, 9), (1, 18): (21, 10), (1, 19): (21, 10),
    (1, 20): (21, 10), (1, 21): (22, 10), (1, 22): (22, 10), (1, 23): (23, 11),
    (1, 24): (25, 13), (1, 27): (26, 13), (1, 28): (26, 13),
}  # fmt: skip

#: Triton release (``YY.MM``) -> the onnxruntime its onnxruntime backend is built with: the
#: ``ort_version`` of ``TRITON_VERSION_MAP`` in build.py on each ``rYY.MM`` branch of
#: triton-inference-server/server.
TRITON_ORT = {
    "21.06": "1.8.0", "21.07": "1.8.0", "21.08": "1.8.1", "21.09": "1.8.1", "21.10": "1.9.0",
    "21.11": "1.9.0", "21.12": "1.10.0", "22.01": "1.10.0", "22.02": "1.10.0",
    "22.03": "1.10.0", "22.04": "1.10.0", "22.05": "1.11.1", "22.06": "1.11.1",
    "22.07": "1.12.0", "22.08": "1.12.0", "22.09": "1.12.1", "22.10": "1.13.1",
    "22.11": "1.13.1", "22.12": "1.13.1", "23.01": "1.13.1", "23.02": "1.13.1",
    "23.03": "1.14.1", "23.04": "1.14.1", "23.05": "1.15.0", "23.06": "1.15.0",
    "23.07": "1.15.1", "23.08": "1.15.1", "23.09": "1.16.0", "23.10": "1.16.0",
    "23.11": "1.16.3", "23.12": "1.16.3", "24.01": "1.16.3", "24.02": "1.16.3",
    "24.03": "1.17.2", "24.04": "1.17.3", "24.05": "1.18.0", "24.06": "1.18.0",
    "24.07": "1.18.1", "24.08": "1.19.0", "24.09": "1.19.2", "24.10": "1.19.2",
    "24.11": "1.19.2", "24.12": "1.20.1", "25.01": "1.20.1", "25.02": "1.20.1",
    "25.03": "1.21.0", "25.04": "1.21.0", "25.05": "1.22.0", "25.06": "1.22.0",
    "25.07": "1.22.0", "25.08": "1.23.0", "25.09": "1.23.0", "25.10": "1.23.1",
    "25.11": "1.23.2", "25.12": "1.23.2", "26.01": "1.23.2", "26.02": "1.24.1",
    "26.03": "1.24.2", "26.04": "1.24.4", "26.05": "1.24.4", "26.06": "1.24.4",
    "26.07": "1.27.0", "26.08": "1.28.0",
}  # fmt: skip

_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?$")
#: runtimes whose ONNX reader is onnxruntime's (the JavaScript packages share its core)
_ORT_NAMES = ("onnxruntime", "onnxruntime-node", "onnxruntime-web")


@dataclass(frozen=True)
class OrtTarget:
    """A runtime that reads ONNX files with some onnxruntime release."""

    label: str  # how the user named it: ``triton==24.01``
    version: str  # the onnxruntime inside: ``1.16.3`` (for ``executorch==X``, X)

    @property
    def runtime(self) -> str:
        """The runtime it names: ``onnxruntime``, ``onnxruntime-node``, ``triton``, ``executorch``."""
        return self.label.partition("==")[0]

    @property
    def reads(self) -> tuple[int, int] | None:
        """(highest opset, highest IR version), None when kit's table does not know."""
        found = _VERSION.fullmatch(self.version)
        assert found is not None
        return ORT_READS.get((int(found[1]), int(found[2])))


def parse_target(text: str) -> OrtTarget:
    """``onnxruntime==1.16.3``, ``onnxruntime-node==1.17.0``, ``triton==24.01``.

    Raises:
        UsageError: not one of those forms, or a Triton release kit does not know.
    """
    name, _, version = text.partition("==")
    if name in (*_ORT_NAMES, "executorch") and _VERSION.fullmatch(version):
        return OrtTarget(text, version)
    if name == "triton":
        if version not in TRITON_ORT:
            known = f"{min(TRITON_ORT)} to {max(TRITON_ORT)}"
            raise UsageError(
                f"kit does not know which onnxruntime Triton {version} ships (it knows {known})."
            )
        return OrtTarget(text, TRITON_ORT[version])
    raise UsageError(
        f"Target {text!r} is not one kit checks; give onnxruntime==X.Y.Z, onnxruntime-node==X.Y.Z, "
        "onnxruntime-web==X.Y.Z, triton==YY.MM or executorch==X.Y.Z."
    )


@dataclass(frozen=True)
class Finding:
    """Whether one file loads in one target, and why not."""

    file: str
    target: str
    loads: bool | None  # None: kit's table does not know this release
    why: str


def check_file(path: Path, target: OrtTarget) -> Finding:
    """Whether the ONNX file at ``path`` loads in ``target``: its IR version and ai.onnx
    opset against what that onnxruntime reads, naming the operators newer than it."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    where = f"onnxruntime {target.version}" + (
        f" ({target.label})" if not target.label.startswith("onnxruntime==") else ""
    )
    reads = target.reads
    if reads is None:
        why = (
            f"kit's table does not know {where}; prove it there: kit parity DIR --runtime "
            f"onnxruntime=={target.version}"
        )
        return Finding(path.name, target.label, None, why)
    max_opset, max_ir = reads
    problems = []
    if proto.ir_version > max_ir:
        problems.append(f"IR version {proto.ir_version}, and {where} reads up to {max_ir}")
    if opset > max_opset:
        newer = _newer_ops(proto, opset, max_opset)
        problems.append(
            f"opset {opset}, and {where} reads up to {max_opset}"
            + (f" ({', '.join(newer)} changed after it)" if newer else "")
        )
    if problems:
        return Finding(path.name, target.label, False, "; ".join(problems))
    return Finding(
        path.name,
        target.label,
        True,
        f"IR {proto.ir_version}, opset {opset}: within what {where} reads",
    )


def _newer_ops(proto: object, opset: int, max_opset: int) -> list[str]:
    """The ai.onnx operators the file uses whose definition at ``opset`` is newer than
    ``max_opset`` (what a re-export at the older opset would have to avoid or rewrite)."""
    import onnx

    found = set()
    for node in proto.graph.node:  # type: ignore[attr-defined]
        if node.domain not in ("", "ai.onnx"):
            continue
        try:
            since = onnx.defs.get_schema(node.op_type, opset).since_version
        except onnx.defs.SchemaError:
            continue
        if since > max_opset:
            found.add(f"{node.op_type} (opset {since})")
    return sorted(found)


def oldest_readers(ir_version: int, opset: int) -> tuple[str | None, str | None]:
    """The oldest onnxruntime (``major.minor``) and Triton release (``YY.MM``) whose
    onnxruntime reads an ONNX file of this IR version and ai.onnx opset, by kit's tables
    (None where no release in them does)."""
    ort = next(
        (
            f"{v[0]}.{v[1]}"
            for v, (o, ir) in sorted(ORT_READS.items())
            if o >= opset and ir >= ir_version
        ),
        None,
    )
    triton = next(
        (
            release
            for release, version in sorted(TRITON_ORT.items())
            if (reads := OrtTarget(release, version).reads)
            and reads[0] >= opset
            and reads[1] >= ir_version
        ),
        None,
    )
    return ort, triton


def onnx_versions(path: Path) -> tuple[int, int]:
    """(IR version, ai.onnx opset) of the ONNX file at ``path`` (its graph, no weights)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    return int(proto.ir_version), int(opset)


def export_limits(target: OrtTarget) -> tuple[int, int]:
    """(opset, IR version) to export at so ``target`` loads the file.

    Raises:
        UsageError: kit's table does not know the target, or it reads only opsets older
            than torch's exporter writes.
    """
    if target.runtime == "executorch":
        raise UsageError(
            f"--target {target.label} names ExecuTorch, which reads .pte files, not ONNX: kit "
            "export --target chooses how model.onnx is written for an onnxruntime or Triton "
            f"release. Check a .pte with kit check DIR --target {target.label}."
        )
    reads = target.reads
    if reads is None:
        raise UsageError(
            f"kit's table does not know what onnxruntime {target.version} reads; export for a "
            "release it knows, or check the file there with kit parity --runtime "
            f"onnxruntime=={target.version}."
        )
    max_opset, max_ir = reads
    if max_opset < 18:
        raise UsageError(
            f"onnxruntime {target.version} reads ONNX opsets up to {max_opset}, and torch's "
            "dynamo exporter writes opset 18 or newer; target onnxruntime 1.14 or newer."
        )
    return max_opset, max_ir


def _at_least(version: str, minimum: str) -> bool:
    def parts(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", v)[:3])

    return parts(version) >= parts(minimum)


def check_export(directory: Path, targets: list[OrtTarget]) -> list[Finding]:
    """Every file of a verified export that a target reads, against that target: ONNX files
    (the model and its variants) by IR version and opset, ``model.ort`` and ``model.pte`` by
    the version that wrote them (kit's conservative rule: a runtime reads files of its own
    release and older ones, ORT's format since 1.13, ExecuTorch's since 1.0).

    Raises:
        ArtifactError: the export is missing or tampered with.
    """
    from .artifact import open_export

    manifest = open_export(directory, "check")
    found = []
    for target in targets:
        executorch = target.runtime == "executorch"
        if executorch and not any(a.format == "pte" for a in manifest.artifacts()):
            why = f"this export has no .pte file for ExecuTorch (kit export {directory} --formats pte)"
            found.append(Finding("-", target.label, None, why))
        for artifact in manifest.artifacts():
            if executorch and artifact.format == "pte":
                found.append(
                    _written_by(artifact.name, target, manifest.versions.get("executorch"), "1.0.0")
                )
            elif not executorch and artifact.format == "onnx":
                found.append(check_file(directory / artifact.name, target))
            elif not executorch and artifact.format == "ort":
                found.append(
                    _written_by(
                        artifact.name, target, manifest.versions.get("onnxruntime"), "1.13.0"
                    )
                )
    return found


def _written_by(name: str, target: OrtTarget, writer: str | None, first: str) -> Finding:
    runtime = target.runtime
    if writer is None:
        return Finding(name, target.label, None, "its manifest does not say which version wrote it")
    if _at_least(target.version, writer) and _at_least(target.version, first):
        return Finding(name, target.label, True, f"written by {writer}; {target.version} reads it")
    return Finding(
        name,
        target.label,
        False,
        f"written by {runtime} {writer}, and {target.version} is older (re-convert it with "
        f"{runtime}=={target.version})",
    )
