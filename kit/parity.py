"""Parity: does each artifact compute what the eager network computes?

Every artifact (TorchScript, torch.export, ONNX on each onnxruntime provider) runs the same
inputs as the eager network: seeded random batches at several sizes, including sizes the
export never traced, plus real samples when given. Every output of a network is compared
on its own. The verdict judges each sample of each output against that sample's own scale,

    max |artifact - eager| <= atol + rtol * max |eager|

so float32 reordering noise on an output in the hundreds is not a failure while a real
divergence still is. The report also keeps the element-wise figures (max/mean absolute and
max relative difference) and top-1 agreement for classifiers. All failures are gathered
before the verdict, so one run shows everything that is wrong.
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

from .errors import ParityError, ProviderError, ShapeMismatch, ToleranceExceeded, first_line
from .outputs import flatten_outputs

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
#: A batch in, every output out (in the network's flattened order).
Runner = Callable[[np.ndarray], list[np.ndarray]]


@dataclass
class Comparison:
    """One output of one artifact on one input batch against eager PyTorch.

    ``kind`` says why it failed: ``shape``, ``tolerance``, ``nonfinite`` or ``error``
    (the artifact could not run); ``needed_rtol`` is the smallest rtol that would pass
    at the report's atol.
    """

    artifact: str
    runtime: str
    inputs: str
    batch: int
    output: str = "logits"
    max_abs: float = math.nan
    max_rel: float = math.nan
    mean_abs: float = math.nan
    scale: float = math.nan
    needed_rtol: float = math.nan
    top1_agreement: float = math.nan
    passed: bool = False
    kind: str | None = None
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
            "rule": "per sample and output: max|artifact - eager| <= atol + rtol * max|eager|",
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
        head = (
            "artifact",
            "runtime",
            "inputs",
            "output",
            "max|diff|",
            "max rel",
            "mean|diff|",
            "needs rtol",
            "top-1",
            "",
        )
        rows = [head]
        for c in self.comparisons:
            verdict = "ok" if c.passed else f"FAIL{': ' + c.error if c.error else ''}"
            rows.append(
                (
                    c.artifact,
                    c.runtime,
                    c.inputs,
                    c.output,
                    f"{c.max_abs:.2e}",
                    f"{c.max_rel:.2e}",
                    f"{c.mean_abs:.2e}",
                    f"{c.needed_rtol:.1e}" if c.needed_rtol else "-",
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
        lines.append(
            f"parity {self.model} (max|diff| <= atol {self.atol:g} + rtol {self.rtol:g} x "
            f"max|eager|, per sample and output): {verdict}"
        )
        return "\n".join(line.rstrip() for line in lines)

    def relax_hint(self) -> str:
        """Which flag would let the tolerance failures pass, and by how much."""
        tol = [c for c in self.failures if c.kind == "tolerance"]
        if not tol or len(tol) != len(self.failures) or self.problems:
            return ""
        worst = max(tol, key=lambda c: c.needed_rtol)
        if math.isinf(worst.needed_rtol):  # eager is all zeros where the artifact is not
            atol = _round_up(max(c.max_abs for c in tol) * 1.05)
            return (
                f"--atol {atol:g} (now {self.atol:g}) would pass: some samples are all zeros in "
                "eager, so no --rtol can. Relax it only if that is float noise."
            )
        return (
            f"--rtol {_round_up(worst.needed_rtol * 1.05):g} (now {self.rtol:g}) would pass every comparison; the "
            f"worst is {worst.artifact} on {worst.runtime}, {worst.inputs}, output "
            f"{worst.output}: max|diff| {worst.max_abs:.3g} against max|eager| {worst.scale:.3g}. "
            "Relax it only if that is float noise, not a divergence."
        )

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
            f"{c.artifact} on {c.runtime}, {c.inputs}, output {c.output}: "
            + (
                c.error
                or f"max|diff| {c.max_abs:.3g} exceeds atol {self.atol:g} + rtol {self.rtol:g} "
                f"x max|eager| {c.scale:.3g}"
            )
            for c in self.failures[:3]
        ]
        more = len(self.failures) - 3
        message = (
            f"Parity failed for {self.model}: "
            + "; ".join(lines)
            + (f"; and {more} more" if more > 0 else "")
            + "."
        )
        if hint := self.relax_hint():
            message += " " + hint
        kinds = {c.kind for c in self.failures}
        error: type[ParityError] = ParityError
        if not self.problems and kinds == {"shape"}:
            error = ShapeMismatch
        elif not self.problems and kinds == {"tolerance"}:
            error = ToleranceExceeded
        raise error(message, report=self)


def _round_up(x: float) -> float:
    """``x`` rounded up to two significant digits (a tolerance that surely passes)."""
    if not math.isfinite(x) or x <= 0:
        return x
    step = 10 ** (math.floor(math.log10(x)) - 1)
    return float(f"{math.ceil(x / step - 1e-9) * step:.2g}")


def compare(
    actual: np.ndarray, expected: np.ndarray, *, atol: float, rtol: float, into: Comparison
) -> Comparison:
    """Fill ``into`` with the differences between ``actual`` and the eager ``expected``.

    Each sample (row of the batch axis) is judged against its own ``max|eager|``.
    """
    if actual.shape != expected.shape:
        into.kind = "shape"
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
    rows = max(1, b.shape[0]) if b.ndim else 1
    row_diff = diff.reshape(rows, -1).max(axis=1, initial=0.0)
    row_scale = np.abs(b).reshape(rows, -1).max(axis=1, initial=0.0)
    into.scale = float(row_scale.max(initial=0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where(row_diff <= atol, 0.0, (row_diff - atol) / row_scale)
    into.needed_rtol = float(np.nan_to_num(need, nan=np.inf, posinf=np.inf).max(initial=0.0))
    if not np.isfinite(a).all():
        into.kind, into.error = "nonfinite", "output holds NaN or Inf"
    elif np.all(row_diff <= atol + rtol * row_scale):
        into.passed = True
    else:
        into.kind = "tolerance"
    return into


def random_inputs(
    input_shape: Sequence[int], batch_sizes: Sequence[int], *, seed: int = 0
) -> list[tuple[str, torch.Tensor]]:
    """Seeded standard-normal batches, one per batch size."""
    g = torch.Generator().manual_seed(seed)
    return [(f"random b={b}", torch.randn(b, *input_shape, generator=g)) for b in batch_sizes]


def _onnx_requests(provider: str) -> list[list[Any]]:
    """The provider lists to run ONNX on: CPU always, CUDA when asked or (auto) present.

    Raises:
        ProviderError: ``cuda`` asked for on a machine where it cannot run.
    """
    import onnxruntime as ort

    from .runtime.session import check_providers

    cpu: list[Any] = ["CPUExecutionProvider"]
    # TF32 would trade precision for speed; parity measures fp32 against fp32.
    cuda: list[Any] = [
        ("CUDAExecutionProvider", {"use_tf32": 0, "cudnn_conv_algo_search": "HEURISTIC"}),
        "CPUExecutionProvider",
    ]
    if provider == "cpu":
        return [cpu]
    if provider == "cuda":
        check_providers(cuda)
        return [cpu, cuda]
    gpu = "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available()
    return [cpu, cuda] if gpu else [cpu]


def _onnx_runners(path: Path, *, provider: str = "auto") -> list[tuple[str, Runner]]:
    import onnxruntime as ort

    runners: list[tuple[str, Runner]] = []
    for providers in _onnx_requests(provider):
        session = ort.InferenceSession(str(path), providers=providers)
        actual = session.get_providers()[0]
        asked = providers[0] if isinstance(providers[0], str) else providers[0][0]
        if actual != asked and provider == "cuda":
            raise ProviderError(
                f"onnxruntime could not start {asked} (CUDA or cuDNN libraries missing or "
                "mismatched); run with -v for its log, or use --provider cpu (or auto)."
            )
        label = actual if actual == asked else f"{actual} (asked {asked})"
        name = session.get_inputs()[0].name

        def run(x: np.ndarray, _s: Any = session, _n: str = name) -> list[np.ndarray]:
            return [np.asarray(o) for o in _s.run(None, {_n: x})]

        runners.append((label, run))
    return runners


def _torch_runner(module: Any, network: str) -> Runner:
    def run(x: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            out = module(torch.from_numpy(x))
        return [t.numpy() for t in flatten_outputs(out, network=network)]

    return run


def artifact_runners(
    files: dict[str, Path], *, network: str = "the network", provider: str = "auto"
) -> list[tuple[str, str, Runner]]:
    """``(artifact, runtime, run)`` for each artifact file, keyed by format name.

    ``provider`` (auto, cpu or cuda) picks onnxruntime's providers for ONNX files.
    """
    from .export.program import load_program
    from .export.torchscript import load_torchscript

    runners: list[tuple[str, str, Runner]] = []
    for fmt, path in files.items():
        if fmt == "torchscript":
            runners.append((fmt, "torch.jit (cpu)", _torch_runner(load_torchscript(path), network)))
        elif fmt == "pt2":
            runners.append((fmt, "torch.export (cpu)", _torch_runner(load_program(path), network)))
        elif fmt == "onnx":
            runners += [(fmt, label, run) for label, run in _onnx_runners(path, provider=provider)]
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
    output_names: Sequence[str] | None = None,
    provider: str = "auto",
    report: ParityReport | None = None,
) -> ParityReport:
    """Compare eager ``model`` with every artifact in ``files`` on the same inputs.

    Args:
        model: The eager reference (put in eval mode here).
        files: Artifact paths by format (``onnx``, ``torchscript``, ``pt2``).
        name: Model name for the report.
        input_shape: One sample's shape.
        atol: Absolute tolerance.
        rtol: Relative tolerance (times the sample's ``max|eager|``).
        batch_sizes: Random batches to run.
        real: Optional ``(label, batch)`` of real samples.
        seed: Seed of the random batches.
        output_names: The outputs' names for the report (``logits``, ``output_0..``).
        provider: onnxruntime providers for ONNX: auto (CUDA too when present), cpu, cuda.
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
        runners = artifact_runners(files, network=name, provider=provider)
    except ProviderError:
        raise
    except Exception as exc:  # a corrupt artifact: report it, do not crash
        report.problems.append(f"cannot load an artifact: {first_line(exc)}")
        return report
    for label, x in inputs:
        with torch.no_grad():
            expected = [t.numpy() for t in flatten_outputs(model(x), network=name)]
        names = list(output_names or [])
        if len(names) != len(expected):
            names = (
                ["logits"] if len(expected) == 1 else [f"output_{i}" for i in range(len(expected))]
            )
        x_np = np.ascontiguousarray(x.numpy())
        for artifact, runtime, run in runners:
            report.comparisons += _compare_run(
                run, x_np, expected, names, (artifact, runtime, label), atol=atol, rtol=rtol
            )
    return report


def _compare_run(
    run: Runner,
    x: np.ndarray,
    expected: list[np.ndarray],
    names: list[str],
    where: tuple[str, str, str],
    *,
    atol: float,
    rtol: float,
) -> list[Comparison]:
    """One artifact on one batch: a comparison per output (one row if it could not run)."""
    batch = int(x.shape[0])
    try:
        actual = run(x)
    except Exception as exc:  # runtime refused the input: a failure, with its reason
        error = f"{type(exc).__name__}: {first_line(exc, 200)}"
        return [Comparison(*where, batch, output="*", kind="error", error=error)]
    if len(actual) != len(expected):
        error = f"returns {len(actual)} outputs, eager {len(expected)}"
        return [Comparison(*where, batch, output="*", kind="shape", error=error)]
    return [
        compare(a, e, atol=atol, rtol=rtol, into=Comparison(*where, batch, output=n))
        for a, e, n in zip(actual, expected, names, strict=True)
    ]


def rebuild_reference(artifact_dir: Path, manifest: dict[str, Any]) -> tuple[Any, nn.Module]:
    """The spec and eager network an export was made from, as its manifest records.

    Raises:
        ArtifactError: the weights file is missing or does not match its sha256.
    """
    from ._files import sha256_file
    from .errors import ArtifactError, UsageError
    from .models import load_network, read_state_dict, resolve_spec

    info = manifest["model"]
    spec = resolve_spec(info.get("factory") or info["name"], tuple(info["input_shape"]))
    weights = info.get("weights")
    path = None
    if weights:
        path = artifact_dir / weights["file"]
        if not path.is_file() or sha256_file(path) != weights["sha256"]:
            raise ArtifactError(f"{path} is missing or does not match its sha256 in the manifest.")
    asked = info.get("num_classes") or None
    try:
        network = load_network(spec, weights=path, num_classes=asked, seed=info.get("seed", 0))
    except UsageError:  # the weights' head disagrees with the manifest's class count
        found = spec.classes_in(read_state_dict(path)) if path else None
        raise ArtifactError(
            f"The manifest in {artifact_dir} says num_classes {asked} but {path} holds "
            f"{found} classes; re-export the model (kit export --weights alone reads the count)."
        ) from None
    return spec, network.model


def verify_saved(
    artifact_dir: Path,
    *,
    atol: float | None = None,
    rtol: float | None = None,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    real: tuple[str, torch.Tensor] | None = None,
    provider: str = "auto",
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
        output_names=[o["name"] for o in manifest.get("outputs", [])] or None,
        provider=provider,
        report=report,
    )
