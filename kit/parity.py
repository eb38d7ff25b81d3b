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
from typing import Any

import numpy as np

from .artifact import DEFAULT_BATCH_SIZES, SINGLE_OUTPUT
from .errors import ParityError, ShapeMismatch, ToleranceExceeded, first_line

__all__ = [
    "Comparison",
    "ParityReport",
    "Runner",
    "compare",
    "random_inputs",
    "run_parity",
]

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
    output: str = SINGLE_OUTPUT
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
    #: what was not checked, and why (printed with the table, never silent)
    notes: list[str] = field(default_factory=list)

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
            "notes": list(self.notes),
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
                    "-"
                    if not c.needed_rtol or math.isnan(c.needed_rtol)
                    else f"{c.needed_rtol:.1e}",
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
        lines += [f"note: {n}" for n in self.notes]
        n_fail = len(self.failures) + len(self.problems)
        verdict = "PASSED" if self.passed else f"FAILED ({n_fail} failure{'s' * (n_fail != 1)})"
        lines.append(
            f"parity {self.model} (max|diff| <= atol {self.atol:g} + rtol {self.rtol:g} x "
            f"max|eager|, per sample and output): {verdict}"
        )
        return "\n".join(line.rstrip() for line in lines)

    def cases(self) -> list[tuple[str, str | None]]:
        """Each problem and comparison as a test case: ``(name, why it failed or None)``,
        for JUnit files and the pytest plugin."""
        cases: list[tuple[str, str | None]] = [(f"files: {p}", p) for p in self.problems]
        return cases + [
            (
                f"{c.artifact} on {c.runtime}, {c.inputs}, {c.output}",
                None if c.passed else self.failure_text(c),
            )
            for c in self.comparisons
        ]

    def failure_text(self, c: Comparison) -> str:
        """Why one comparison failed, in a sentence."""
        return c.error or (
            f"max|diff| {c.max_abs:.3g} exceeds atol {self.atol:g} + rtol {self.rtol:g} "
            f"x max|eager| {c.scale:.3g}"
        )

    def to_junit(self) -> str:
        """JUnit XML (one test case per comparison, one per problem) for CI systems."""
        from xml.etree import ElementTree as ET

        suite = ET.Element("testsuite", name=f"kit parity {self.model}")
        cases = self.cases()
        for name, failure in cases:
            case = ET.SubElement(suite, "testcase", classname=f"kit.parity.{self.model}", name=name)
            if failure is not None:
                ET.SubElement(case, "failure", message=failure).text = failure
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(sum(f is not None for _, f in cases)))
        ET.SubElement(suite, "system-out").text = self.format_table()
        return ET.tostring(suite, encoding="unicode", xml_declaration=True)

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
            f"{c.artifact} on {c.runtime}, {c.inputs}, output {c.output}: {self.failure_text(c)}"
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
    input_shape: Sequence[int], batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES, *, seed: int = 0
) -> list[tuple[str, np.ndarray]]:
    """Seeded standard-normal float32 batches, one per batch size."""
    rng = np.random.default_rng(seed)
    shape = tuple(input_shape)
    return [
        (f"random b={b}", rng.standard_normal((b, *shape), dtype=np.float32)) for b in batch_sizes
    ]


def run_parity(
    reference: Runner,
    runners: Sequence[tuple[str, str, Runner]],
    inputs: Sequence[tuple[str, np.ndarray]],
    *,
    name: str,
    atol: float,
    rtol: float,
    output_names: Sequence[str] | None = None,
    report: ParityReport | None = None,
) -> ParityReport:
    """Compare every ``(artifact, runtime, run)`` with ``reference`` on the same inputs.

    Args:
        reference: The eager network: a batch in, its outputs out.
        runners: The artifacts to check, each with the runtime it runs on.
        inputs: ``(label, batch)`` pairs, float32 and C-contiguous.
        name: Model name for the report.
        atol: Absolute tolerance.
        rtol: Relative tolerance (times the sample's ``max|eager|``).
        output_names: The outputs' names for the report (``logits``, ``output_0..``).
        report: A report to add to (one that already holds sha256 problems, say).

    Returns:
        The report; call :meth:`ParityReport.raise_for_failures` to make failures fatal.
    """
    report = report or ParityReport(model=name, atol=atol, rtol=rtol)
    for label, x in inputs:
        expected = reference(x)
        names = _names(output_names, len(expected))
        for artifact, runtime, run in runners:
            report.comparisons += _compare_run(
                run, x, expected, names, (artifact, runtime, label), atol=atol, rtol=rtol
            )
    return report


def _names(given: Sequence[str] | None, count: int) -> list[str]:
    names = list(given or [])
    if len(names) == count:
        return names
    return [SINGLE_OUTPUT] if count == 1 else [f"output_{i}" for i in range(count)]


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
