"""The parity matrix's columns: each runtime kit checks files in, which formats it runs,
how its rows are named in a parity report, and whether it can run on this machine."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from ..embed.packages import (
    ORT_JS_VERSION,
    find_browser,
    node_version,
    onnxruntime_dir,
    pinned_version,
)

__all__ = ["Column", "columns_for", "parity_kind", "pinned_column"]


@dataclass(frozen=True)
class Column:
    """One runtime of the matrix.

    Attributes:
        key: Its key in the report's JSON (``onnxruntime-cpu``, ``node``).
        title: Its heading.
        runtime: The ``kit parity --runtime`` that runs it.
        formats: The file formats it runs; other rows say n/a.
        matches: Whether a parity row's runtime label belongs to it.
        missing: Why it cannot run here (None: it can).
        provider: The ``kit parity --provider`` it needs (``cuda``).
    """

    key: str
    title: str
    runtime: str
    formats: tuple[str, ...]
    matches: Callable[[str], bool]
    missing: Callable[[], str | None]
    provider: str = "auto"

    def command(self, directory: str) -> list[str]:
        """The ``kit`` arguments that fill this column for the export in ``directory``."""
        args = ["parity", directory]
        if self.runtime != "python":
            args += ["--runtime", self.runtime]
        return args + (["--provider", self.provider] if self.provider != "auto" else [])


def parity_kind(runtimes: tuple[str, ...], provider: str = "auto", reference: bool = False) -> str:
    """The result name of a ``kit parity`` run: ``parity-node+python``, ``parity-python-cuda``."""
    kind = "parity-" + "+".join(sorted(set(runtimes)))
    if provider != "auto":
        kind += f"-{provider}"
    return kind + ("-reference" if reference else "")


def _module(name: str, package: str) -> Callable[[], str | None]:
    def missing() -> str | None:
        if importlib.util.find_spec(name) is None:
            return f"{package} is not installed here (pip install 'kit[edge]')"
        return None

    return missing


def _node() -> str | None:
    return None if node_version() else "Node.js is not installed here"


def _browser() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed here"
    return None if find_browser() else "no system Chromium here (apt-get install chromium)"


def _cuda() -> str | None:
    from ..runtime.providers import cuda_available

    return None if cuda_available() else "no GPU on this machine"


def _torch() -> str | None:
    return None if importlib.util.find_spec("torch") else "PyTorch is not installed here"


def _always() -> str | None:
    return None


def _starts(*prefixes: str, unless: str = "\0") -> Callable[[str], bool]:
    return lambda label: label.startswith(prefixes) and unless not in label


_DEFAULT = "the CPU's default"

COLUMNS = (
    Column(
        "onnxruntime-cpu",
        "onnxruntime CPU",
        "python",
        ("onnx", "ort"),
        _starts("CPUExecutionProvider"),
        _always,
    ),
    Column(
        "onnxruntime-cuda",
        "onnxruntime CUDA",
        "python",
        ("onnx", "ort"),
        _starts("CUDAExecutionProvider", unless="iobinding"),
        _cuda,
        "cuda",
    ),
    Column(
        "torch",
        "PyTorch",
        "python",
        ("torchscript", "pt2"),
        _starts("torch.jit", "torch.export"),
        _torch,
    ),
    Column(
        "node",
        "Node.js",
        "node",
        ("onnx", "ort"),
        _starts(f"onnxruntime-node {ORT_JS_VERSION}"),
        _node,
    ),
    Column(
        "browser",
        "browser (wasm)",
        "browser",
        ("onnx", "ort"),
        _starts(f"onnxruntime-web {ORT_JS_VERSION}"),
        _browser,
    ),
    Column(
        "executorch",
        "ExecuTorch",
        "executorch",
        ("pte",),
        _starts("executorch"),
        _module("executorch", "executorch"),
    ),
    Column(
        "litert",
        "LiteRT",
        "litert",
        ("tflite",),
        _starts("litert"),
        _module("ai_edge_litert", "ai-edge-litert"),
    ),
    Column(
        "openvino",
        "OpenVINO f32",
        "openvino",
        ("openvino",),
        _starts("openvino", unless=_DEFAULT),
        _module("openvino", "openvino"),
    ),
)

#: shown only when a result has its rows: OpenVINO at the CPU's default precision (advisory)
OPENVINO_DEFAULT = Column(
    "openvino-default",
    "OpenVINO CPU default (advisory)",
    "openvino",
    ("openvino",),
    lambda label: label.startswith("openvino") and _DEFAULT in label,
    _module("openvino", "openvino"),
)


def pinned_column(version: str) -> Column:
    """A pinned onnxruntime release in kit's cache (``kit parity --runtime onnxruntime==X``)."""

    def missing() -> str | None:
        if onnxruntime_dir(version).is_dir():
            return None
        return f"onnxruntime {version} is not in kit's cache yet (the command installs it)"

    return Column(
        f"onnxruntime=={version}",
        f"onnxruntime {version} (pinned)",
        f"onnxruntime=={version}",
        ("onnx",),
        lambda label: pinned_version(label) == version,
        missing,
    )


def columns_for(labels: set[str], pinned: list[str]) -> list[Column]:
    """Every fixed column, the advisory OpenVINO one when ``labels`` (the runtime labels
    results hold) have its rows, and one per pinned onnxruntime version."""
    found = list(COLUMNS)
    if any(OPENVINO_DEFAULT.matches(label) for label in labels):
        found.insert(found.index(COLUMNS[-1]) + 1, OPENVINO_DEFAULT)
    return found + [pinned_column(v) for v in sorted(set(pinned))]
