"""The runtime catalogue: every file format kit writes and every runtime it runs them in,
one record each. Everything else that needs to know "which runtimes exist, which formats
each runs, what it is called, what installs it" derives it from here: the artifact
contract's file names, the runner registry's modules, the report's columns, cold start's
imports, the edge writers' extras and ``kit doctor``.

Adding a runtime is one record here and one module that registers its backend
(docs/DESIGN.md, "How to add a runtime"). A :class:`~kit.parity.Runner` and every parity row
carry their runtime's ``key``; nothing recognises a runtime by reading a label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "FORMATS",
    "RUNTIMES",
    "Format",
    "Runtime",
    "add",
    "home_runtime",
    "pinned",
    "runtime_record",
    "selected_by",
]


@dataclass(frozen=True)
class Format:
    """One file format of an export.

    Attributes:
        key: Its ``--formats`` name (``onnx``, ``pte``).
        file: Its file in an export (``model.onnx``).
        home: The key of the runtime it is checked in when an export is made.
        writer: The package whose version wrote it (from the manifest's ``versions``).
        writes_with: The module its writer imports (absent: the extra says how to get it).
        write: For a format kit's export does not write itself, ``module:function`` that
            does: ``function(model, example, path, onnx_path)`` (``onnx_path`` is the
            export's model.onnx, written first, or None).
    """

    key: str
    file: str
    home: str
    writer: str
    writes_with: str | None = None
    write: str | None = None


@dataclass(frozen=True)
class Runtime:
    """One runtime kit runs files in: one column of the report's parity matrix.

    Attributes:
        key: What runners and parity rows carry (``onnxruntime-cpu``, ``node``).
        select: The ``kit parity --runtime`` that selects it (``python``); empty when
            another flag does (``--endpoint``).
        title: The report's column heading.
        formats: The file formats it runs.
        modules: The kit modules that implement it (each registers its backend on import).
        imports: What a fresh process imports first (what its cold start pays).
        needs: What this machine must have, as ``module:NAME``, ``program:NAME``,
            ``chromium``, ``gpu`` or ``pinned:VERSION`` (read by ``kit.report.columns``).
        extra: The ``pip install 'kit[EXTRA]'`` that installs it.
        package: The distribution whose version it reports.
        provider: The ``kit parity --provider`` it needs (``cuda``).
        shown: ``always``, ``with-rows`` (only when results have its rows: advisory
            columns) or ``never`` (no column: an endpoint).
    """

    key: str
    select: str
    title: str
    formats: tuple[str, ...]
    modules: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    extra: str | None = None
    package: str | None = None
    provider: str = "auto"
    shown: str = "always"


FORMATS: dict[str, Format] = {
    f.key: f
    for f in (
        Format("onnx", "model.onnx", "onnxruntime-cpu", "onnx"),
        Format("torchscript", "model.ts", "torch", "torch"),
        Format("pt2", "model.pt2", "torch", "torch"),
        # ORT mobile's format, converted from model.onnx
        Format("ort", "model.ort", "onnxruntime-cpu", "onnxruntime"),
        # ExecuTorch, lowered to XNNPACK from the torch.export program
        Format("pte", "model.pte", "executorch", "executorch", "executorch.exir"),
        # LiteRT (TensorFlow Lite), from litert-torch
        Format("tflite", "model.tflite", "litert", "litert-torch", "litert_torch"),
        # OpenVINO IR, converted from model.onnx; its weights beside it
        Format("openvino", "model.xml", "openvino", "openvino", "openvino"),
    )
}

_ORT = ("kit.runners.onnxruntime",)
_JS = ("kit.runners.js",)
RUNTIMES: dict[str, Runtime] = {
    r.key: r
    for r in (
        Runtime("onnxruntime-cpu", "python", "onnxruntime CPU", ("onnx", "ort"), _ORT,
                ("onnxruntime",), package="onnxruntime"),
        Runtime("onnxruntime-cuda", "python", "onnxruntime CUDA", ("onnx", "ort"), _ORT,
                ("onnxruntime",), ("gpu",), package="onnxruntime", provider="cuda"),
        Runtime("torch", "python", "PyTorch", ("torchscript", "pt2"), ("kit.runners.torch",),
                ("torch",), ("module:torch",), package="torch"),
        Runtime("node", "node", "Node.js", ("onnx", "ort"), _JS, (), ("program:node",)),
        Runtime("browser", "browser", "browser (wasm)", ("onnx", "ort"), _JS, (),
                ("module:playwright", "chromium")),
        Runtime("executorch", "executorch", "ExecuTorch", ("pte",), ("kit.runners.executorch",),
                ("executorch.runtime",), ("module:executorch",), "executorch", "executorch"),
        Runtime("litert", "litert", "LiteRT", ("tflite",), ("kit.runners.litert",),
                ("ai_edge_litert.interpreter",), ("module:ai_edge_litert",), "litert",
                "ai-edge-litert"),
        Runtime("openvino", "openvino", "OpenVINO f32", ("openvino",), ("kit.runners.openvino",),
                ("openvino",), ("module:openvino",), "openvino", "openvino"),
        # OpenVINO at the CPU's default precision: advisory rows, a column only when present
        Runtime("openvino-default", "openvino", "OpenVINO CPU default (advisory)", ("openvino",),
                ("kit.runners.openvino",), ("openvino",), ("module:openvino",), "openvino",
                "openvino", shown="with-rows"),
        # a live server (kit parity --endpoint): rows, no column
        Runtime("endpoint", "", "endpoint", (), shown="never"),
    )
}  # fmt: skip

#: ``onnxruntime==X.Y.Z``: a pinned older release in kit's cache
PINNED = re.compile(r"onnxruntime==(\d+\.\d+\.\d+)")


def pinned(version: str) -> Runtime:
    """The record of a pinned onnxruntime release (``kit parity --runtime onnxruntime==X``)."""
    key = f"onnxruntime=={version}"
    return Runtime(key, key, f"onnxruntime {version} (pinned)", ("onnx",),
                   ("kit.runners.pinned",), (), (f"pinned:{version}",))  # fmt: skip


def runtime_record(key: str) -> Runtime | None:
    """The record of ``key`` (a pinned onnxruntime's too); None when kit knows no such."""
    if (found := PINNED.fullmatch(key)) is not None:
        return pinned(found[1])
    return RUNTIMES.get(key)


def home_runtime(fmt: str) -> Runtime:
    """The runtime a format is checked in when an export is made."""
    return RUNTIMES[FORMATS[fmt].home]


def selected_by(select: str) -> list[Runtime]:
    """The runtimes one ``--runtime`` name selects (``python``: onnxruntime and PyTorch)."""
    if (found := PINNED.fullmatch(select)) is not None:
        return [pinned(found[1])]
    return [r for r in RUNTIMES.values() if r.select == select]


def add(record: Runtime | Format) -> None:
    """Add a record (a runtime or a format someone adds to kit, a test's fake one)."""
    if isinstance(record, Runtime):
        RUNTIMES[record.key] = record
    else:
        FORMATS[record.key] = record
