"""Input sizes that vary: the rules an export declares (``kit export --dynamic``), the one
source every format's form of them is made from, every runtime path enforces and the grid
parity proves.

An axis is ``batch``, ``height`` or ``width``; its rule is a range and a step
(``height=64..512:32``: 64, 96, ..., 512). The rules travel in the model's facts (the ONNX
file's metadata and the manifest), so a runtime that has nothing but the file refuses a size
outside them in one sentence instead of computing a silent wrong answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import msgspec

from ..errors import UsageError

__all__ = [
    "AXES",
    "MAX_BATCH",
    "MAX_SAMPLE_VALUES",
    "AxisRule",
    "ShapeRules",
    "capped_batch",
    "parse_dynamic",
    "parse_grid",
]

#: the axes a rule may name, and each one's index in an (N, C, H, W) input
AXES = {"batch": 0, "height": 2, "width": 3}
#: the largest batch any rule (and torch.export's batch dimension) allows
MAX_BATCH = 65536
#: the largest height or width a rule may allow (a file claiming more is refused)
MAX_SIDE = 16384
#: the most values one sample may hold (4096 x 4096 grey): far past any CNN kit exports
MAX_SAMPLE_VALUES = 1 << 24

_RULE = re.compile(
    r"^\s*(?P<axis>\w+)\s*=\s*(?P<min>\d{1,9})\s*\.\.\s*(?P<max>\d{1,9})\s*(?::\s*(?P<step>\d{1,9}))?\s*$"
)


class AxisRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Sizes ``min..max`` that are multiples of ``multiple``."""

    min: int
    max: int
    multiple: int = 1

    def allows(self, size: int) -> bool:
        return self.min <= size <= self.max and size % self.multiple == 0

    def describe(self) -> str:
        step = f" in steps of {self.multiple}" if self.multiple > 1 else ""
        return f"{self.min}..{self.max}{step}"

    def flag(self, axis: str) -> str:
        step = f":{self.multiple}" if self.multiple > 1 else ""
        return f"{axis}={self.min}..{self.max}{step}"

    def sizes(self, example: int, interior: int = 2) -> list[int]:
        """The grid's sizes on this axis: both ends, the example, ``interior`` sizes
        between them on the multiple."""
        found = {self.min, self.max, example}
        span = self.max - self.min
        for i in range(1, interior + 1):
            inside = self.min + span * i // (interior + 1)
            found.add(inside - inside % self.multiple)
        return sorted(s for s in found if self.allows(s))

    def problem(self) -> str | None:
        if not 1 <= self.multiple <= self.max:
            return f"a multiple of {self.multiple} is outside 1..{self.max}"
        if not 1 <= self.min < self.max:
            return (
                f"the range {self.min}..{self.max} must start at 1 or more and hold more than "
                "one size (a fixed size needs no rule)"
            )
        if self.min % self.multiple or self.max % self.multiple:
            return f"both ends of {self.min}..{self.max} must be multiples of {self.multiple}"
        return None


class ShapeRules(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """The dynamic axes of a one-input (N, C, H, W) model; an axis with no rule is fixed at
    the example's size (the batch: today's ``1..MAX_BATCH``)."""

    batch: AxisRule | None = None
    height: AxisRule | None = None
    width: AxisRule | None = None

    def __post_init__(self) -> None:
        for axis, rule in self.named():
            if (why := rule.problem()) is not None:
                raise ValueError(f"the {axis} rule: {why}")
            if axis != "batch" and rule.max > MAX_SIDE:
                raise ValueError(f"the {axis} rule allows up to {rule.max}, past {MAX_SIDE}")
        if self.batch is not None and self.batch.max > MAX_BATCH:
            raise ValueError(f"the batch rule allows up to {self.batch.max}, past {MAX_BATCH}")

    def named(self) -> list[tuple[str, AxisRule]]:
        return [(a, r) for a in AXES if (r := getattr(self, a)) is not None]

    @property
    def spatial(self) -> bool:
        """Height or width varies."""
        return self.height is not None or self.width is not None

    def describe(self) -> str:
        """``height 64..512 in steps of 32, width 64..512 in steps of 32``."""
        return ", ".join(f"{a} {r.describe()}" for a, r in self.named())

    def flags(self) -> str:
        """The rules as ``--dynamic`` says them."""
        return ",".join(r.flag(a) for a, r in self.named())

    def batch_range(self) -> tuple[int, int]:
        return (self.batch.min, self.batch.max) if self.batch else (1, MAX_BATCH)

    def sample_shape(self, example: Sequence[int]) -> tuple[int | None, ...]:
        """One sample's shape with None where a rule lets the size vary."""
        shape: list[int | None] = list(example)
        for axis, _ in self.named():
            if axis != "batch":
                shape[AXES[axis] - 1] = None
        return tuple(shape)

    def largest(self, example: Sequence[int]) -> tuple[int, ...]:
        """The largest sample the rules allow (what a body limit or a plan must hold)."""
        shape = list(example)
        for axis, rule in self.named():
            if axis != "batch":
                shape[AXES[axis] - 1] = rule.max
        return tuple(shape)

    def problems(self, shape: Sequence[int]) -> list[str]:
        """A sentence for each axis of the (N, C, H, W) ``shape`` outside its rule."""
        found = []
        for axis, rule in self.named():
            index = AXES[axis]
            if index < len(shape) and not rule.allows(shape[index]):
                found.append(
                    f"The input's {axis} is {shape[index]}; this model takes {axis} "
                    f"{rule.describe()}."
                )
        return found

    def grid(
        self, example: Sequence[int], extra: Sequence[tuple[int, int]] = ()
    ) -> list[tuple[int, int]]:
        """The (height, width) sizes parity proves: each varying axis's ends and the
        example crossed (so 64x512 and 512x64), interior sizes on the multiple both
        square-ish and not, then ``extra``; the example first."""
        h0, w0 = example[1], example[2]
        hs = self.height.sizes(h0) if self.height else [h0]
        ws = self.width.sizes(w0) if self.width else [w0]
        ends_h = sorted({hs[0], h0, hs[-1]})
        ends_w = sorted({ws[0], w0, ws[-1]})
        cells = [(h0, w0)] + [(h, w) for h in ends_h for w in ends_w]
        inner_h, inner_w = hs[1:-1], ws[1:-1]
        if inner_h and inner_w:  # interior sizes, square-ish and not
            cells += list(zip(inner_h, inner_w, strict=False))
            cells += list(zip(inner_h, reversed(inner_w), strict=False))
        else:  # one axis varies: each of its interior sizes
            cells += [(h, w0) for h in inner_h] + [(h0, w) for w in inner_w]
        cells += list(extra)
        return list(dict.fromkeys(cells))

    def fit(self, example: Sequence[int], height: int, width: int) -> tuple[int, ...]:
        """The (C, H, W) sample an image of ``height`` x ``width`` is fed at: its own size
        where the rules allow it, else the nearest size they allow (the example's size on a
        fixed axis)."""
        c, h, w = example
        if self.height is not None:
            h = _nearest(self.height, height)
        if self.width is not None:
            w = _nearest(self.width, width)
        return (c, h, w)

    def off_grid(self, example: Sequence[int]) -> list[tuple[int, int]]:
        """Sizes the rules refuse, one per way of breaking them (below, above, off the
        multiple), on each varying axis: what every path must refuse."""
        h0, w0 = example[1], example[2]
        cells = []
        for axis, rule in self.named():
            if axis == "batch":
                continue
            bad = [rule.min - rule.multiple, rule.max + rule.multiple]
            if rule.multiple > 1:
                bad.append(rule.min + rule.multiple // 2)
            for size in bad:
                if size >= 1:
                    cells.append((size, w0) if axis == "height" else (h0, size))
        return cells


def capped_batch(rules: ShapeRules | None, wanted: int) -> int:
    """``wanted`` rows at most, and no more than a batch rule allows (a server's or
    Triton's max batch size)."""
    rule = rules.batch if rules is not None else None
    return min(wanted, rule.max) if rule is not None else wanted


def _nearest(rule: AxisRule, size: int) -> int:
    size = min(max(size, rule.min), rule.max)
    down = size - size % rule.multiple
    up = down + rule.multiple if size % rule.multiple else down
    return down if size - down <= up - size or up > rule.max else up


def parse_dynamic(values: Sequence[str], example: Sequence[int]) -> ShapeRules | None:
    """``--dynamic`` values (repeatable, each comma-separated ``AXIS=MIN..MAX[:MULTIPLE]``)
    as rules the ``example`` sample shape (C, H, W) satisfies; None for none.

    Raises:
        UsageError: a rule that does not parse, names an axis twice or an unknown one, is
            empty, or leaves the example outside.
    """
    given: dict[str, AxisRule] = {}
    for part in (p for v in values for p in v.split(",") if p.strip()):
        m = _RULE.match(part)
        if m is None:
            raise UsageError(
                f"--dynamic {part.strip()!r} is not AXIS=MIN..MAX[:MULTIPLE] "
                "(e.g. height=64..512:32)."
            )
        axis = m["axis"]
        if axis not in AXES:
            raise UsageError(f"--dynamic names {axis!r}; the axes are {', '.join(AXES)}.")
        if axis in given:
            raise UsageError(f"--dynamic names {axis} twice; give one rule per axis.")
        rule = AxisRule(int(m["min"]), int(m["max"]), int(m["step"] or 1))
        if (why := rule.problem()) is not None:
            raise UsageError(f"--dynamic {part.strip()}: {why}.")
        given[axis] = rule
    if not given:
        return None
    if len(example) != 3 and set(given) - {"batch"}:
        raise UsageError(
            f"--dynamic height and width need a C,H,W input; this one is {list(example)}."
        )
    try:
        rules = ShapeRules(**given)
    except ValueError as exc:
        raise UsageError(f"--dynamic: {exc}.") from None
    example_problems = rules.problems((2, *example))
    if example_problems:
        raise UsageError(
            f"The example input {list(example)} is outside --dynamic {rules.flags()}: "
            f"{' '.join(example_problems)} Change --input-shape or the rule."
        )
    if (largest := math.prod(rules.largest(example))) > MAX_SAMPLE_VALUES:
        raise UsageError(
            f"--dynamic {rules.flags()} allows samples of {largest:,} values; keep the "
            f"largest sample at most {MAX_SAMPLE_VALUES:,} values."
        )
    return rules


def parse_grid(values: Sequence[str], rules: ShapeRules | None) -> tuple[tuple[int, int], ...]:
    """``--grid`` sizes (repeatable, each comma-separated ``HxW``) the ``rules`` allow.

    Raises:
        UsageError: a size that does not parse, or that the rules refuse (a size outside
            them is refused everywhere, so it cannot be proven).
    """
    sizes = []
    for part in (p.strip() for v in values for p in v.split(",") if p.strip()):
        h, x, w = part.lower().partition("x")
        if not (x and h.isdigit() and w.isdigit() and len(h) < 7 and len(w) < 7):
            raise UsageError(f"--grid {part!r} is not HEIGHTxWIDTH (e.g. 320x480).")
        if rules is None:
            raise UsageError("--grid adds sizes to the grid of --dynamic; give --dynamic too.")
        problems = rules.problems((1, 0, int(h), int(w)))
        if problems:
            raise UsageError(
                f"--grid {part} is outside the rules ({rules.describe()}): sizes outside "
                "them are refused, not proven."
            )
        sizes.append((int(h), int(w)))
    return tuple(sizes)
