"""What a model accepts, checked before the native call: every problem at once, cheaply."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..artifact import ShapeRules
from ..errors import InputError

__all__ = ["InputCheck"]

#: inputs up to this many values are checked with a single-threaded BLAS dot product
_DOT_LIMIT = 8192
_FLOAT32 = np.dtype(np.float32)  # numpy's one float32 dtype object: `is` is the cheap test


class InputCheck:
    """Validates batches for one input of shape ``(N, *sample)`` (None: a free dimension,
    held to ``rules`` when the model's facts declare them)."""

    def __init__(self, sample: tuple[int | None, ...], rules: ShapeRules | None = None) -> None:
        self.sample = sample
        self.rules = rules
        self._batch = rules.batch if rules is not None else None  # a batch rule, if any
        self.rank = 1 + len(sample)
        self.fixed = all(isinstance(d, int) for d in sample)
        self._zeros = np.zeros(math.prod(sample) if self.fixed else 0, np.float32)  # type: ignore[arg-type]

    def problems(self, x: Any) -> list[str]:
        """Every reason ``x`` cannot be fed to the model, one sentence each."""
        if not isinstance(x, np.ndarray):
            return [f"The input must be a numpy array, not {type(x).__name__}."]
        problems = []
        if x.dtype != np.float32:
            problems.append(f"The input has dtype {x.dtype}; the model takes float32.")
        expected = ("N", *self.sample)
        if x.ndim != self.rank:
            problems.append(
                f"The input has {x.ndim} dimensions {x.shape}; the model takes {self.rank} {expected}."
            )
        else:
            if x.shape[0] == 0:
                problems.append("The input batch is empty; send at least one sample.")
            for axis, (got, want) in enumerate(zip(x.shape[1:], self.sample, strict=True), 1):
                if want is not None and got != want:
                    problems.append(
                        f"Dimension {axis} of the input is {got}; the model takes {want} there {expected}."
                    )
            if self.rules is not None:
                problems += self.rules.problems(x.shape)
        if x.dtype.kind == "f" and x.size and not np.isfinite(x).all():
            bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
            problems.append(f"The input holds {bad} NaN or infinite value(s).")
        return problems

    def __call__(self, x: Any) -> None:
        """Raise :class:`InputError` listing every problem (nothing for a good batch).

        Fast path for a well-formed batch of a fixed-shape model: attribute reads and one
        finiteness test. Small inputs (the latency-bound case) use a BLAS dot product with
        zeros: 0 when every value is finite, NaN as soon as one is NaN or infinite (0 * inf
        is NaN); it cannot overflow, and unlike a numpy reduction it does not slow the small
        run that follows. Large inputs use np.isfinite: BLAS would start its own threads
        there, and they spin on the cores onnxruntime is about to use. (A shape with a None
        in it never equals x.shape[1:], so a model with free dimensions takes the full check.)
        """
        if (
            type(x) is np.ndarray
            and x.dtype is _FLOAT32
            and x.shape[1:] == self.sample
            and x.shape[0]
            and (self._batch is None or self._batch.allows(x.shape[0]))
            and self._finite(x)
        ):
            return
        problems = self.problems(x)
        if problems:
            raise InputError(" ".join(problems))

    def _finite(self, x: np.ndarray) -> bool:
        size = x.size
        if size > _DOT_LIMIT:
            return bool(np.isfinite(x).all())
        if size == self._zeros.size:  # batch 1; vdot, unlike dot, raises no FP warning
            return not np.vdot(x, self._zeros)
        with np.errstate(invalid="ignore"):  # a NaN here is an answer, not a warning
            rows = np.dot(x.reshape(x.shape[0], -1), self._zeros)  # 0 or NaN per sample
        return not np.vdot(rows, rows)
