"""Parity: does each artifact compute what the eager network computes?

Every artifact (TorchScript, torch.export, ONNX on each onnxruntime provider) runs the same
inputs as the eager network: seeded random batches at several sizes, including sizes the
export never traced, plus real samples when given. Each comparison records max/mean
absolute and max relative differences, an element-wise verdict
``|artifact - eager| <= atol + rtol * |eager|`` and top-1 agreement. All failures are
gathered before the verdict, so one run shows everything that is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import ParityError, ShapeMismatch, ToleranceExceeded

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "Comparison",
    "ParityReport",
    "artifact_runners",
    "compare",
    "random_inputs",
    "run_parity",
]

DEFAULT_BATCH_SIZES = (1, 3, 8)
Runner = Callable[[np.ndarray], np.ndarray]


@dataclass
class Comparison:
    """One artifact on one input batch against eager PyTorch."""

    artifact: str
    runtime: str
    inputs: str
    batch: int
    max_abs: float = math.nan
    max_rel: float = math.nan
    mean_abs: float = math.nan
    top1_agreement: float = math.nan
    passed: bool = False
    error: str | None = None


@dataclass
class ParityReport:
    """All comparisons of one parity run, plus problems found before running (sha256)."""

    model: str
    atol: float
    rtol: float
    comparisons: list[Comparison] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems and all(c.passed for c in self.comparisons)

    @property
    def failures(self) -> list[Comparison]:
        return [c for c in self.comparisons if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "passed": self.passed,
            "atol": self.atol,
            "rtol": self.rtol,
            "problems": list(self.problems),
            "comparisons": [
                {
                    k: (None if isinstance(v, float) and math.isnan(v) else v)
                    for k, v in asdict(c).items()
                }
                for c in self.comparisons
            ],
        }

    def format_table(self) -> str:
        """A fixed-width table of every comparison and the verdict."""
        head = ("artifact", "runtime", "inputs", "max|diff|", "max rel", "mean|diff|", "top-1", "")
        rows = [head]
        for c in self.comparisons:
            verdict = "ok" if c.passed else f"FAIL{': ' + c.error if c.error else ''}"
            rows.append(
                (
                    c.artifact,
                    c.runtime,
                    c.inputs,
                    f"{c.max_abs:.2e}",
                    f"{c.max_rel:.2e}",
                    f"{c.mean_abs:.2e}",
                    "-" if math.isnan(c.top1_agreement) else f"{c.top1_agreement:.1%}",
                    verdict,
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
        lines = [
            "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)) + "  " + r[-1]
            for r in rows
        ]
        lines += [f"problem: {p}" for p in self.problems]
        n_fail = len(self.failures) + len(self.problems)
        verdict = "PASSED" if self.passed else f"FAILED ({n_fail} failure{'s' * (n_fail != 1)})"
        lines.append(f"parity {self.model} (atol={self.atol:g}, rtol={self.rtol:g}): {verdict}")
        return "\n".join(line.rstrip() for line in lines)

    def raise_for_failures(self) -> None:
        """Raise one error that lists every failure (nothing when all passed).

        Raises:
            ShapeMismatch: every failure is a shape mismatch.
            ToleranceExceeded: every failure is a tolerance failure.
            ParityError: anything else, or a mix.
        """
        if self.passed:
            return
        lines = list(self.problems) + [
            f"{c.artifact} on {c.runtime}, {c.inputs}: "
            + (
                c.error
                or f"max|diff| {c.max_abs:.3g} exceeds atol {self.atol:g} + rtol {self.rtol:g}"
            )
            for c in self.failures
        ]
        message = f"Parity failed for {self.model}: " + "; ".join(lines) + "."
        kinds = {
            ("shape" if c.error and "shape" in c.error else "tol" if not c.error else "other")
            for c in self.failures
        }
        if not self.problems and kinds == {"shape"}:
            raise ShapeMismatch(message)
        if not self.problems and kinds == {"tol"}:
            raise ToleranceExceeded(message)
        raise ParityError(message)


def compare(
    actual: np.ndarray, expected: np.ndarray, *, atol: float, rtol: float, into: Comparison
) -> Comparison:
    """Fill ``into`` with the differences between ``actual`` and the eager ``expected``."""
    if actual.shape != expected.shape:
        into.error = f"output shape {actual.shape} differs from eager {expected.shape}"
        return into
    a = actual.astype(np.float64)
    b = expected.astype(np.float64)
    diff = np.abs(a - b)
    into.max_abs = float(diff.max(initial=0.0))
    into.mean_abs = float(diff.mean()) if diff.size else 0.0
    into.max_rel = float((diff / np.maximum(np.abs(b), np.finfo(np.float32).tiny)).max(initial=0.0))
    if a.ndim == 2 and a.shape[1] > 1:
        into.top1_agreement = float((a.argmax(1) == b.argmax(1)).mean())
    finite = bool(np.isfinite(a).all())
    into.passed = finite and bool(np.all(diff <= atol + rtol * np.abs(b)))
    if not finite:
        into.error = "output holds NaN or Inf"
    return into


def random_inputs(
    input_shape: Sequence[int], batch_sizes: Sequence[int], *, seed: int = 0
) -> list[tuple[str, torch.Tensor]]:
    """Seeded standard-normal batches, one per batch size."""
    g = torch.Generator().manual_seed(seed)
    return [(f"random b={b}", torch.randn(b, *input_shape, generator=g)) for b in batch_sizes]


def _onnx_runners(path: Path, *, threads: int | None = None) -> list[tuple[str, Runner]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    requests: list[list[Any]] = [["CPUExecutionProvider"]]
    if "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available():
        # TF32 would trade precision for speed; parity measures fp32 against fp32.
        cuda = ("CUDAExecutionProvider", {"use_tf32": 0, "cudnn_conv_algo_search": "HEURISTIC"})
        requests.append([cuda, "CPUExecutionProvider"])
    runners: list[tuple[str, Runner]] = []
    for providers in requests:
        session = ort.InferenceSession(str(path), options, providers=providers)
        actual = session.get_providers()[0]
        asked = providers[0] if isinstance(providers[0], str) else providers[0][0]
        label = actual if actual == asked else f"{actual} (asked {asked})"
        name = session.get_inputs()[0].name

        def run(x: np.ndarray, _s: Any = session, _n: str = name) -> np.ndarray:
            return np.asarray(_s.run(None, {_n: x})[0])

        runners.append((label, run))
    return runners


def artifact_runners(files: dict[str, Path]) -> list[tuple[str, str, Runner]]:
    """``(artifact, runtime, run)`` for each artifact file, keyed by format name."""
    from .export.program import load_program
    from .export.torchscript import load_torchscript

    runners: list[tuple[str, str, Runner]] = []

    def torch_runner(module: nn.Module) -> Runner:
        def run(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return module(torch.from_numpy(x)).numpy()

        return run

    for fmt, path in files.items():
        if fmt == "torchscript":
            runners.append((fmt, "torch.jit (cpu)", torch_runner(load_torchscript(path))))
        elif fmt == "pt2":
            runners.append((fmt, "torch.export (cpu)", torch_runner(load_program(path))))
        elif fmt == "onnx":
            runners += [(fmt, label, run) for label, run in _onnx_runners(path)]
    return runners


def run_parity(
    model: nn.Module,
    files: dict[str, Path],
    *,
    name: str,
    input_shape: Sequence[int],
    atol: float,
    rtol: float,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    real: tuple[str, torch.Tensor] | None = None,
    seed: int = 0,
    report: ParityReport | None = None,
) -> ParityReport:
    """Compare eager ``model`` with every artifact in ``files`` on the same inputs.

    Args:
        model: The eager reference (put in eval mode here).
        files: Artifact paths by format (``onnx``, ``torchscript``, ``pt2``).
        name: Model name for the report.
        input_shape: One sample's shape.
        atol: Absolute tolerance.
        rtol: Relative tolerance (times ``|eager|``).
        batch_sizes: Random batches to run.
        real: Optional ``(label, batch)`` of real samples.
        seed: Seed of the random batches.
        report: A report to add to (one that already holds sha256 problems, say).

    Returns:
        The report; call :meth:`ParityReport.raise_for_failures` to make failures fatal.
    """
    report = report or ParityReport(model=name, atol=atol, rtol=rtol)
    model = model.eval()
    inputs = random_inputs(input_shape, batch_sizes, seed=seed)
    if real is not None:
        inputs.append(real)
    try:
        runners = artifact_runners(files)
    except Exception as exc:  # a corrupt artifact: report it, do not crash
        report.problems.append(f"cannot load an artifact: {exc}")
        return report
    for label, x in inputs:
        with torch.no_grad():
            expected = model(x).numpy()
        x_np = np.ascontiguousarray(x.numpy())
        for artifact, runtime, run in runners:
            cmp = Comparison(artifact, runtime, label, int(x.shape[0]))
            try:
                actual = run(x_np)
            except Exception as exc:  # runtime refused the input: a failure, with its reason
                cmp.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            else:
                compare(actual, expected, atol=atol, rtol=rtol, into=cmp)
            report.comparisons.append(cmp)
    return report


def rebuild_reference(artifact_dir: Path, manifest: dict[str, Any]) -> tuple[Any, nn.Module]:
    """The spec and eager network an export was made from, as its manifest records.

    Raises:
        ArtifactError: the weights file is missing or does not match its sha256.
    """
    from ._files import sha256_file
    from .errors import ArtifactError
    from .models import build_model, load_weights, resolve_spec

    info = manifest["model"]
    spec = resolve_spec(info.get("factory") or info["name"], tuple(info["input_shape"]))
    model = build_model(spec, num_classes=info.get("num_classes") or None, seed=info.get("seed", 0))
    weights = info.get("weights")
    if weights:
        path = artifact_dir / weights["file"]
        if not path.is_file() or sha256_file(path) != weights["sha256"]:
            raise ArtifactError(f"{path} is missing or does not match its sha256 in the manifest.")
        load_weights(model, path)
    return spec, model


def verify_saved(
    artifact_dir: Path,
    *,
    atol: float | None = None,
    rtol: float | None = None,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    real: tuple[str, torch.Tensor] | None = None,
) -> ParityReport:
    """Re-verify a saved export: every file's sha256, then parity against eager.

    The eager reference is rebuilt from the manifest (model, weights file or seed).

    Raises:
        ArtifactError: the directory has no readable manifest.
    """
    from ._files import verify_files
    from .export import FILE_NAMES
    from .export.manifest import read_manifest

    manifest = read_manifest(artifact_dir)
    facts = manifest.get("facts", {})
    atol = facts.get("atol", 1e-4) if atol is None else atol
    rtol = facts.get("rtol", 1e-4) if rtol is None else rtol
    report = ParityReport(model=manifest["model"]["name"], atol=atol, rtol=rtol)
    report.problems += verify_files(artifact_dir, manifest["files"])
    if report.problems:
        return report  # do not execute files that are not what export wrote
    spec, model = rebuild_reference(artifact_dir, manifest)
    names = {fmt: artifact_dir / name for fmt, name in FILE_NAMES.items()}
    files = {fmt: path for fmt, path in names.items() if path.name in manifest["files"]}
    return run_parity(
        model,
        files,
        name=spec.name,
        input_shape=spec.input_shape,
        atol=atol,
        rtol=rtol,
        batch_sizes=batch_sizes,
        real=real,
        report=report,
    )
