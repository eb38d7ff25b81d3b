"""torch.export's refusals of a declared size range, in plain words.

When the sizes ``--dynamic`` declares are wider than the network allows, torch.export raises
a constraint violation: the guard no size in the range may break (``(height // 2) ==
2*(height // 4)``), or a specialisation (``height = 28``), and often suggested fixes. kit
names the guard with the axis's name, the layer that fixes a size when one does (the first
Linear after a flatten), and the ``--dynamic`` that would export, from those fixes.
"""

from __future__ import annotations

import re

from torch import nn

from ..artifact import AxisRule, ShapeRules

__all__ = ["explain_guards"]

_SIZE = re.compile(r"L\['\w+'\]\.size\(\)\[(\d)\]")
_GUARD = re.compile(r"satisfy the generated guard (?P<guard>.+?)\.?$", re.M)
_FIXES = re.compile(r"Suggested fixes:\n(?P<lines>(?:  .+\n?)+)")
_FIXED = re.compile(r"^(?P<axis>\w+) = (?P<size>\d+)$")
_MULTIPLE = re.compile(r"^(?P<axis>\w+) = (?P<k>\d+)\*(?P<base>\w+)$")
_RANGE = re.compile(r"^(?P<name>\w+) = Dim\('\w+'(?:, min=(?P<min>\d+))?(?:, max=(?P<max>\d+))?\)$")
_AXIS_AT = {"0": "batch", "2": "height", "3": "width"}


def explain_guards(exc: Exception, model: nn.Module, name: str, rules: ShapeRules) -> str | None:
    """One sentence for a torch.export refusal of ``rules``; None for any other failure."""
    text = str(exc)
    if "Constraints violated" not in text and "Specializations unexpectedly required" not in text:
        return None
    fixed, suggested = _suggestions(text, rules)
    guard = _first_guard(text)
    if fixed:
        axis, size = next(iter(fixed.items()))
        return _fixed_sentence(model, name, axis, size, guard, rules)
    where = f" (the guard {guard})" if guard else ""
    if suggested and suggested != rules:
        return (
            f"torch.export cannot export {name} at {rules.describe()}{where}; its suggested "
            f"rules export: --dynamic {suggested.flags()}."
        )
    return (
        f"torch.export cannot export {name} at {rules.describe()}{where}; narrow --dynamic "
        "to sizes that satisfy it."
    )


def _first_guard(text: str) -> str | None:
    found = _GUARD.search(text)
    if found is None:
        return None
    return _SIZE.sub(lambda m: _AXIS_AT.get(m[1], f"dim {m[1]}"), found["guard"])


def _suggestions(text: str, rules: ShapeRules) -> tuple[dict[str, int], ShapeRules | None]:
    """The axes torch.export fixed to one size, and the rules its suggested fixes give."""
    found = _FIXES.search(text)
    if found is None:
        return {}, None
    lines = [line.strip() for line in found["lines"].splitlines()]
    fixed = {m["axis"]: int(m["size"]) for line in lines if (m := _FIXED.match(line))}
    ranges = {m["name"]: (m["min"], m["max"]) for line in lines if (m := _RANGE.match(line))}
    new = {a: r for a, r in rules.named()}
    for line in lines:
        if (m := _MULTIPLE.match(line)) and m["axis"] in new:
            k, low_high = int(m["k"]), ranges.get(m["base"], (None, None))
            old = new[m["axis"]]
            low = int(low_high[0]) * k if low_high[0] else -(-old.min // k) * k
            high = int(low_high[1]) * k if low_high[1] else old.max // k * k
            new[m["axis"]] = AxisRule(low, high, k)
    for axis, (lo, hi) in ranges.items():
        if axis in new:
            old = new[axis]
            new[axis] = AxisRule(int(lo or old.min), int(hi or old.max), old.multiple)
    try:
        return fixed, ShapeRules(**new)
    except ValueError:
        return fixed, None


def _fixed_sentence(
    model: nn.Module, name: str, axis: str, size: int, guard: str | None, rules: ShapeRules
) -> str:
    """An axis the network fixes to one size: name the layer that does (its first Linear)."""
    linear = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)), None)
    keep = [f for a, r in rules.named() if a != axis and (f := r.flag(a))]
    instead = f"export with --dynamic {','.join(keep)}" if keep else "leave out --dynamic"
    if linear is not None:
        layer, module = linear
        return (
            f"{name} cannot take a varying {axis}: its first Linear layer {layer!r} "
            f"({module.in_features} inputs) needs the {axis} to be exactly {size}; {instead}, "
            "or pool to a fixed size before the classifier (nn.AdaptiveAvgPool2d)."
        )
    why = f" (the guard {guard})" if guard else ""
    return f"torch.export fixes {name}'s {axis} at {size}{why}; {instead}."
