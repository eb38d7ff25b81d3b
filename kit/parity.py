"""Parity: does each artifact compute what the eager network computes?

Every runner (an artifact in a runtime) gets the same inputs as the eager network: seeded
random batches at several sizes, including sizes the export never traced, plus real
samples when given. Every output is compared on its own and judged by the rule passed in
(:mod:`kit.rule`); all failures are gathered before the verdict, so one run shows
everything that is wrong.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

import msgspec
import numpy as np

from ._bounded import Count, Name, Share, Size, Text
from ._table import format_table
from .artifact import SINGLE_OUTPUT
from .errors import ParityError, ShapeMismatch, ToleranceExceeded, first_line
from .rule import Comparison, Rule, Tolerance

__all__ = [
    "Comparison",
    "ParityData",
    "ParityRow",
    "ParityRun",
    "PipelineData",
    "Runner",
    "closing",
    "format_parity",
    "input_size",
    "pipeline_line",
    "random_inputs",
    "run_parity",
    "sized_label",
    "to_junit",
]

#: A batch in, every output out (in the network's flattened order).
RunFn = Callable[[np.ndarray], list[np.ndarray]]


@dataclass(frozen=True)
class Runner:
    """An artifact in a runtime, ready to run batches (made by :mod:`kit.runners`).

    Attributes:
        artifact: What runs (``onnx``, ``pt2``, ``onnx int8``, ``endpoint``).
        runtime: Where, as reports name it (``onnxruntime CPUExecutionProvider``).
        run: A batch in, every output out.
        precision: The arithmetic it really runs at (``fp32``, ``int8``, ``bf16``).
        batch_sizes: The batch sizes it accepts (None: any); others run in its chunks.
        note: What a report should say about it (a static batch, a precision default).
        advisory: Its rows warn instead of failing (a runtime's default precision, which
            a deployment may keep but parity does not judge).
        key: Its runtime's key in :mod:`kit.catalogue` (what reports place its rows by).
        closer: Ends what it started (a Node.js process, a browser); :meth:`close` calls it.

    A runner's life cycle: made (``kit.runners.make_runners``), run on batches as they
    come, closed (:func:`closing` closes a list of them).
    """

    artifact: str
    runtime: str
    run: RunFn
    precision: str = "fp32"
    batch_sizes: tuple[int, ...] | None = None
    note: str | None = None
    advisory: bool = False
    key: str = ""
    closer: Callable[[], None] | None = None

    def close(self) -> None:
        if self.closer is not None:
            self.closer()


@contextlib.contextmanager
def closing(runners: Sequence[Runner]) -> Iterator[Sequence[Runner]]:
    """``runners``, each closed on the way out (whatever happened inside)."""
    try:
        yield runners
    finally:
        for runner in runners:
            runner.close()


# -- the saved form of a ParityRun, read back through these types ---------------------


class ParityRow(msgspec.Struct, frozen=True):
    """One comparison of a saved parity report (the fields a report shows)."""

    artifact: Name
    runtime: Name
    inputs: Name
    batch: Count
    passed: bool
    output: Name = SINGLE_OUTPUT
    max_abs: Size | None = None
    scale: Size | None = None
    top1_agreement: Share | None = None
    error: Text | None = None
    warning: Text | None = None
    #: the runtime's catalogue key (absent in reports saved before rows carried it: those
    #: rows are placed in no column, and the report names the command that renews them)
    key: Name = ""


class PipelineData(msgspec.Struct, frozen=True):
    """The whole-pipeline check of a parity run (``kit.verify.pipeline``)."""

    data: Text
    images: Count
    classes: Count
    agreement: Share
    accuracy: Share
    accuracy_eager: Share
    trained: bool
    passed: bool
    why: Text | None = None


class ParityData(msgspec.Struct, frozen=True):
    """A ``kit parity`` report as saved (:meth:`ParityRun.to_dict`) and read back: every
    field bounded, since a saved report may come from anywhere."""

    atol: Size
    rtol: Size
    comparisons: Annotated[list[ParityRow], msgspec.Meta(max_length=20000)]
    notes: Annotated[list[Text], msgspec.Meta(max_length=200)] = []
    problems: Annotated[list[Text], msgspec.Meta(max_length=200)] = []
    pipeline: PipelineData | None = None


@dataclass
class ParityRun:
    """All comparisons of one parity run, the rule that judged them, plus problems found
    before running (sha256) and notes on what was not checked and why."""

    model: str
    rule: Tolerance
    comparisons: list[Comparison] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: what was not checked, or checked by another rule, and why (never silent)
    notes: list[str] = field(default_factory=list)
    #: the whole-pipeline check (images through kit's preprocessing into model.onnx against
    #: eager and the labels; ``kit.verify.pipeline``), when there was data for it
    pipeline: dict[str, Any] | None = None

    @property
    def atol(self) -> float:
        return self.rule.atol

    @property
    def rtol(self) -> float:
        return self.rule.rtol

    @property
    def passed(self) -> bool:
        """No problem, at least one comparison, and every comparison passed (nothing
        checked is no pass)."""
        pipeline = self.pipeline is None or bool(self.pipeline.get("passed"))
        return (
            not self.problems
            and bool(self.comparisons)
            and all(c.passed for c in self.comparisons)
            and pipeline
        )

    @property
    def failures(self) -> list[Comparison]:
        return [c for c in self.comparisons if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "passed": self.passed,
            "atol": self.atol,
            "rtol": self.rtol,
            "rule": self.rule.describe(),
            "problems": list(self.problems),
            "notes": list(self.notes),
            "pipeline": self.pipeline,
            "comparisons": [
                {
                    k: (None if isinstance(v, float) and math.isnan(v) else v)
                    for k, v in asdict(c).items()
                }
                for c in self.comparisons
            ],
        }

    def cases(self) -> list[tuple[str, str | None]]:
        """Each problem and comparison as a test case: ``(name, why it failed or None)``,
        for JUnit files and the pytest plugin."""
        cases: list[tuple[str, str | None]] = [(f"files: {p}", p) for p in self.problems]
        if self.pipeline is not None:
            why = None if self.pipeline.get("passed") else str(self.pipeline.get("why"))
            cases.append(("the whole pipeline: images through kit's preprocessing", why))
        return cases + [
            (
                f"{c.artifact} on {c.runtime}, {c.inputs}, {c.output}",
                None if c.passed else self.rule.failure_text(c),
            )
            for c in self.comparisons
        ]

    def relax_hint(self) -> str:
        """Which flag would let the failures pass (empty unless only tolerance failed)."""
        return "" if self.problems else self.rule.relax_hint(self.failures)

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
            + self.rule.failure_text(c)
            for c in self.failures[:3]
        ]
        if self.pipeline is not None and not self.pipeline.get("passed"):
            lines.append(f"the whole pipeline: {self.pipeline.get('why')}")
        more = len(self.failures) - 3
        message = (
            f"Parity failed for {self.model}: {'; '.join(lines)}"
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


def pipeline_line(p: dict[str, Any]) -> str:
    """The whole-pipeline check in one line."""
    line = (
        f"pipeline  images -> kit's preprocessing -> model.onnx on {p['images']} images of "
        f"{p['data']}: accuracy {p['accuracy']:.2%} (eager on the data set's tensors "
        f"{p['accuracy_eager']:.2%}), top-1 agreement {p['agreement']:.2%}"
    )
    return line + ("  ok" if p["passed"] else f"  FAILED: {p['why']}")


def format_parity(report: ParityRun) -> str:
    """A fixed-width table of every comparison, then problems, notes and the verdict."""
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
    rows = [
        (
            c.artifact,
            c.runtime,
            c.inputs,
            c.output,
            f"{c.max_abs:.2e}",
            f"{c.max_rel:.2e}",
            f"{c.mean_abs:.2e}",
            "-" if not c.needed_rtol or math.isnan(c.needed_rtol) else f"{c.needed_rtol:.1e}",
            "-" if math.isnan(c.top1_agreement) else f"{c.top1_agreement:.1%}",
            _verdict(c),
        )
        for c in report.comparisons
    ]
    lines = [format_table(head, rows)]
    if report.pipeline is not None:
        lines.append(pipeline_line(report.pipeline))
    lines += [f"problem: {p}" for p in report.problems]
    lines += [f"note: {n}" for n in report.notes]
    warned = [c for c in report.comparisons if c.warning]
    if warned:
        lines.append(f"warning: {len(warned)} advisory row(s) outside tolerance (see the notes)")
    pipeline_failed = report.pipeline is not None and not report.pipeline.get("passed")
    n_fail = len(report.failures) + len(report.problems) + pipeline_failed
    if not n_fail and not report.comparisons:
        n_fail = 1  # nothing checked is no pass
    verdict = "PASSED" if report.passed else f"FAILED ({n_fail} failure{'s' * (n_fail != 1)})"
    lines.append(f"parity {report.model} ({report.rule.describe()}): {verdict}")
    return "\n".join(lines)


def _verdict(c: Comparison) -> str:
    if c.warning:
        return f"WARN: {c.warning}"
    return "ok" if c.passed else f"FAIL{': ' + c.error if c.error else ''}"


def to_junit(report: ParityRun) -> str:
    """JUnit XML (one test case per comparison, one per problem) for CI systems."""
    from xml.etree import ElementTree as ET

    suite = ET.Element("testsuite", name=f"kit parity {report.model}")
    cases = report.cases()
    for name, failure in cases:
        case = ET.SubElement(suite, "testcase", classname=f"kit.parity.{report.model}", name=name)
        if failure is not None:
            ET.SubElement(case, "failure", message=failure).text = failure
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(f is not None for _, f in cases)))
    ET.SubElement(suite, "system-out").text = format_parity(report)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)


def sized_label(batch: int, height: int, width: int) -> str:
    """A random batch's label at another size than the export's: ``random b=1 64x512``."""
    return f"random b={batch} {height}x{width}"


def input_size(label: str) -> str | None:
    """The size a parity input's label names (``64x512``), None for the export's own."""
    last = label.rsplit(" ", 1)[-1]
    h, x, w = last.partition("x")
    return last if x and h.isdigit() and w.isdigit() else None


def random_inputs(
    input_shape: Sequence[int], batch_sizes: Sequence[int], *, seed: int = 0
) -> list[tuple[str, np.ndarray]]:
    """Seeded standard-normal float32 batches, one per batch size."""
    rng = np.random.default_rng(seed)
    shape = tuple(input_shape)
    return [
        (f"random b={b}", rng.standard_normal((b, *shape), dtype=np.float32)) for b in batch_sizes
    ]


def run_parity(
    reference: RunFn | None,
    runners: Sequence[Runner],
    inputs: Sequence[tuple[str, np.ndarray]],
    *,
    report: ParityRun,
    rule: Rule | None = None,
    output_names: Sequence[str] | None = None,
    expected: Sequence[Sequence[np.ndarray]] | None = None,
) -> ParityRun:
    """Compare every runner with ``reference`` on the same inputs, judged by ``rule``
    (the report's own when None); rows are added to ``report``.

    Args:
        reference: The eager network: a batch in, its outputs out.
        runners: The artifacts to check, each in its runtime.
        inputs: ``(label, batch)`` pairs, float32 and C-contiguous.
        report: The report to add to (one that holds sha256 problems, say).
        rule: How to judge (a variant's :class:`~kit.rule.Agreement`, say).
        output_names: The outputs' names for the report (``logits``, ``output_0..``).
        expected: The reference's outputs for each input when known already (reference
            data kept in an export); ``reference`` is not called then.
    """
    judge = rule or report.rule
    for i, (label, x) in enumerate(inputs):
        wanted = list(expected[i]) if expected is not None else reference(x)  # type: ignore[misc]
        names = _names(output_names, len(wanted))
        for runner in runners:
            where = (runner.artifact, runner.runtime, label)
            rows = _compare_run(runner.run, x, wanted, names, where, judge)
            for row in rows:
                row.key = runner.key
            report.comparisons += [_advise(c) for c in rows] if runner.advisory else rows
    return report


def _advise(c: Comparison) -> Comparison:
    """An advisory row: outside the rule it warns, with its numbers, and does not fail."""
    if not c.passed and c.kind in ("tolerance", "agreement"):
        c.warning = (
            f"outside tolerance (max|diff| {c.max_abs:.3g} against max|eager| {c.scale:.3g})"
        )
        c.passed, c.kind = True, None
    return c


def _names(given: Sequence[str] | None, count: int) -> list[str]:
    names = list(given or [])
    if len(names) == count:
        return names
    return [SINGLE_OUTPUT] if count == 1 else [f"output_{i}" for i in range(count)]


def _compare_run(
    run: RunFn,
    x: np.ndarray,
    expected: list[np.ndarray],
    names: list[str],
    where: tuple[str, str, str],
    rule: Rule,
) -> list[Comparison]:
    """One artifact on one batch: a comparison per output (one row if it could not run)."""
    batch = int(x.shape[0])
    try:
        actual = run(x)
    except Exception as exc:  # the runtime refused the input: a failure, with its reason
        error = f"{type(exc).__name__}: {first_line(exc, 400)}"
        return [Comparison(*where, batch, output="*", kind="error", error=error)]
    if len(actual) != len(expected):
        error = f"returns {len(actual)} outputs, eager {len(expected)}"
        return [Comparison(*where, batch, output="*", kind="shape", error=error)]
    return [
        rule.judge(np.asarray(a), e, Comparison(*where, batch, output=n))
        for a, e, n in zip(actual, expected, names, strict=True)
    ]
