"""The comparison rules: how an artifact's output is judged against eager PyTorch.

One rule object is chosen and passed in (Polygraphy's ``CompareFunc``): parity, the
variants' check, the endpoint check and ``--explain`` all judge with it, and every report
states the rule it applied. Numpy only; nothing from the rest of kit.

:class:`Tolerance` judges each sample (row of the batch axis) of each output against its
own scale,

    max |artifact - eager| <= atol + rtol * max |eager|

so float32 reordering noise on an output in the hundreds is not a failure while a real
divergence still is. :class:`Agreement` judges a cheaper variant (int8, fp16) by its top-1
agreement with eager on real samples, at the limit recorded with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Agreement", "Comparison", "Rule", "Tolerance", "at_chance"]


@dataclass
class Comparison:
    """One output of one artifact on one input batch against eager PyTorch.

    ``kind`` says why it failed: ``shape``, ``tolerance``, ``agreement``, ``nonfinite`` or
    ``error`` (the artifact could not run); ``needed_rtol`` is the smallest rtol that would
    pass at the rule's atol.
    """

    artifact: str
    runtime: str
    inputs: str
    batch: int
    output: str = ""  # the output's name (the caller names it; kit.rule knows no contract)
    max_abs: float = math.nan
    max_rel: float = math.nan
    mean_abs: float = math.nan
    scale: float = math.nan
    needed_rtol: float = math.nan
    top1_agreement: float = math.nan
    passed: bool = False
    kind: str | None = None
    error: str | None = None
    #: an advisory row outside the rule (a runtime's default precision): shown, not failed
    warning: str | None = None
    #: the runtime's key in kit.catalogue (reports place rows by it, never by ``runtime``)
    key: str = ""


def _figures(actual: np.ndarray, expected: np.ndarray, into: Comparison) -> np.ndarray | None:
    """Fill the element-wise figures; returns |diff| (None when the shapes differ)."""
    if actual.shape != expected.shape:
        into.kind = "shape"
        into.error = f"output shape {actual.shape} differs from eager {expected.shape}"
        return None
    a, b = actual.astype(np.float64), expected.astype(np.float64)
    diff = np.abs(a - b)
    into.max_abs = float(diff.max(initial=0.0))
    into.mean_abs = float(diff.mean()) if diff.size else 0.0
    into.max_rel = float((diff / np.maximum(np.abs(b), np.finfo(np.float32).tiny)).max(initial=0.0))
    into.scale = float(np.abs(b).max(initial=0.0))
    if a.ndim == 2 and a.shape[1] > 1:
        into.top1_agreement = float((a.argmax(1) == b.argmax(1)).mean())
    if not np.isfinite(a).all():
        into.kind, into.error = "nonfinite", "output holds NaN or Inf"
    return diff


@dataclass(frozen=True)
class Tolerance:
    """Each sample of each output within ``atol + rtol x`` that sample's ``max|eager|``."""

    atol: float
    rtol: float

    def describe(self) -> str:
        return (
            f"max|diff| <= atol {self.atol:g} + rtol {self.rtol:g} x max|eager|, "
            "per sample and output"
        )

    def judge(self, actual: np.ndarray, expected: np.ndarray, into: Comparison) -> Comparison:
        """Fill ``into`` with the figures and this rule's verdict."""
        diff = _figures(actual, expected, into)
        if diff is None or into.kind == "nonfinite":
            return into
        rows = max(1, expected.shape[0]) if expected.ndim else 1
        row_diff = diff.reshape(rows, -1).max(axis=1, initial=0.0)
        row_scale = np.abs(expected.astype(np.float64)).reshape(rows, -1).max(axis=1, initial=0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            need = np.where(row_diff <= self.atol, 0.0, (row_diff - self.atol) / row_scale)
        into.needed_rtol = float(np.nan_to_num(need, nan=np.inf, posinf=np.inf).max(initial=0.0))
        into.passed = bool(np.all(row_diff <= self.atol + self.rtol * row_scale))
        into.kind = None if into.passed else "tolerance"
        return into

    def relax_hint(self, failures: list[Comparison]) -> str:
        """Which flag would let these failures pass (empty unless all are tolerance ones)."""
        if not failures or any(c.kind != "tolerance" for c in failures):
            return ""
        worst = max(failures, key=lambda c: c.needed_rtol)
        if math.isinf(worst.needed_rtol):  # eager is all zeros where the artifact is not
            atol = _round_up(max(c.max_abs for c in failures) * 1.05)
            return (
                f"--atol {atol:g} (now {self.atol:g}) would pass: some samples are all zeros in "
                "eager, so no --rtol can. Relax it only if that is float noise."
            )
        return (
            f"--rtol {_round_up(worst.needed_rtol * 1.05):g} (now {self.rtol:g}) would pass "
            f"every comparison; the worst is {worst.artifact} on {worst.runtime}, "
            f"{worst.inputs}, output {worst.output}: max|diff| {worst.max_abs:.3g} against "
            f"max|eager| {worst.scale:.3g}. Relax it only if that is float noise, not a "
            "divergence."
        )

    def failure_text(self, c: Comparison) -> str:
        """Why one comparison failed, in a sentence."""
        return c.error or (
            f"max|diff| {c.max_abs:.3g} exceeds atol {self.atol:g} + rtol {self.rtol:g} "
            f"x max|eager| {c.scale:.3g}"
        )


@dataclass(frozen=True)
class Agreement:
    """A classifier's top-1 class agrees with eager's on at least ``min_agreement`` of the
    samples (a cheaper variant's rule: int8 and fp16 differ from eager by design)."""

    min_agreement: float

    def describe(self) -> str:
        return f"top-1 agreement with eager >= {self.min_agreement:.1%}"

    def judge(self, actual: np.ndarray, expected: np.ndarray, into: Comparison) -> Comparison:
        if _figures(actual, expected, into) is None or into.kind == "nonfinite":
            return into
        into.passed = into.top1_agreement >= self.min_agreement
        if not into.passed:
            into.kind = "agreement"
            into.error = f"top-1 agreement under {self.min_agreement:.1%}"
        return into


Rule = Tolerance | Agreement


def _round_up(x: float) -> float:
    """``x`` rounded up to two significant digits (a tolerance that surely passes)."""
    if not math.isfinite(x) or x <= 0:
        return x
    step = 10 ** (math.floor(math.log10(x)) - 1)
    return float(f"{math.ceil(x / step - 1e-9) * step:.2g}")


def at_chance(accuracy: float, classes: int, samples: int) -> bool:
    """Whether a classifier's ``accuracy`` on ``samples`` labelled samples is what guessing
    among ``classes`` gives: at most chance plus two standard errors of a guesser's."""
    if classes < 2 or samples < 1:
        return False
    chance = 1.0 / classes
    return accuracy <= chance + 2.0 * math.sqrt(chance * (1.0 - chance) / samples)
