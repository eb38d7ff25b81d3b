"""The facts a runtime needs to feed a model and read its answer, and a variant's limits.

Both are typed values that validate on the way in (msgspec structs): the same type checks
the ONNX file's ``kit.facts`` metadata, the manifest's ``facts`` and what export writes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import msgspec

from ..errors import ArtifactError
from .shapes import MAX_SAMPLE_VALUES, ShapeRules

__all__ = ["FactsError", "Limits", "ModelFacts", "validation_sentence"]

#: The name of a network's only output (the contract's, repeated here to keep this a leaf).
_SINGLE_OUTPUT = "logits"


class FactsError(ArtifactError, ValueError):
    """Facts that cannot be right (a ValueError too, so msgspec reports where it was)."""


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a cheaper variant (int8) may cost against ``model.onnx``: accuracy lost (a
    fraction, 0.003 = 0.3 point) and top-1 agreement kept."""

    max_accuracy_drop: float = 0.003
    min_agreement: float = 0.995


class ModelFacts(msgspec.Struct, frozen=True):
    """What a runtime needs to feed a model and read its answer, from the ONNX file alone.

    Attributes:
        name: The network's name.
        input_shape: One sample's shape, channels first.
        mean: Per-channel mean of pixel values scaled to [0, 1].
        std: Per-channel standard deviation, same scale.
        outputs: The ONNX outputs' names, in order.
        num_classes: Width of a classifier's one 2-D output (0 for other networks).
        class_names: A label per class (empty for other networks).
        atol: The network's absolute parity tolerance.
        rtol: The network's relative parity tolerance.
        weights_sha256: sha256 of the weights file exported, if any.
        kit_version: The kit that wrote the file.
        dynamic: The sizes the input may take besides ``input_shape`` (the example's);
            None: only the batch varies.
    """

    name: str
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    outputs: tuple[str, ...] = (_SINGLE_OUTPUT,)
    num_classes: int = 0
    class_names: tuple[str, ...] = ()
    atol: float = 1e-4
    rtol: float = 1e-4
    weights_sha256: str | None = None
    kit_version: str = ""
    dynamic: ShapeRules | None = None

    def __post_init__(self) -> None:
        problems = _fact_problems(self)
        if problems:
            raise FactsError(f"Model facts for {self.name!r} are invalid: {'; '.join(problems)}")

    @property
    def is_classifier(self) -> bool:
        return self.num_classes > 0

    def to_dict(self) -> dict[str, Any]:
        found = {k: list(v) if isinstance(v, tuple) else v for k, v in _fields(self).items()}
        if self.dynamic is None:
            del found["dynamic"]  # facts written before rules existed read the same
        else:
            found["dynamic"] = msgspec.to_builtins(self.dynamic)
        return found

    def sample_shape(self) -> tuple[int | None, ...]:
        """One sample's shape, None where the rules let the size vary."""
        if self.dynamic is None:
            return self.input_shape
        return self.dynamic.sample_shape(self.input_shape)

    def to_json(self) -> str:
        return msgspec.json.encode(dict(sorted(self.to_dict().items()))).decode()

    @classmethod
    def from_dict(cls, data: Any) -> ModelFacts:
        """Facts from parsed JSON; unknown keys are ignored (a newer kit may add some).

        Raises:
            ArtifactError: a required fact is missing or a value is invalid, in a sentence.
        """
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if v is not None}
        try:
            return msgspec.convert(data, cls)
        except msgspec.ValidationError as exc:
            sentence = validation_sentence(exc)
            if not sentence.startswith("Model facts"):  # a type error, not __post_init__'s
                sentence = f"Model facts are invalid: {sentence}"
            raise ArtifactError(f"{sentence}.") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelFacts:
        try:
            data = msgspec.json.decode(text)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise ArtifactError(f"Model facts are not valid JSON: {exc}.") from None
        return cls.from_dict(data)


def _fields(facts: ModelFacts) -> dict[str, Any]:
    return {f: getattr(facts, f) for f in facts.__struct_fields__}


def _positive_ints(values: Sequence[Any]) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)


def _fact_problems(f: ModelFacts) -> list[str]:
    problems = []
    if not f.name:
        problems.append("name must be a non-empty string")
    if not f.input_shape or not _positive_ints(f.input_shape):
        problems.append(f"input_shape {list(f.input_shape)} must be positive integers")
    elif math.prod(f.input_shape) > MAX_SAMPLE_VALUES:
        problems.append(
            f"input_shape {list(f.input_shape)} holds more than {MAX_SAMPLE_VALUES} values"
        )
    elif not (len(f.mean) == len(f.std) == f.input_shape[0]):
        problems.append(f"mean and std need one value per channel ({f.input_shape[0]})")
    if any(not math.isfinite(m) for m in f.mean):
        problems.append("mean values must be finite")
    if any(not (s > 0 and math.isfinite(s)) for s in f.std):
        problems.append("std values must be positive")
    if not f.outputs or len(set(f.outputs)) != len(f.outputs):
        problems.append("outputs must be distinct names")
    if f.num_classes < 0:
        problems.append("num_classes must not be negative")
    if f.class_names and len(f.class_names) != f.num_classes:
        problems.append(f"{len(f.class_names)} class names for {f.num_classes} classes")
    if not (f.atol >= 0 and f.rtol >= 0):
        problems.append("tolerances must be non-negative")
    if f.dynamic is not None and not problems:
        problems += _rule_problems(f.dynamic, f.input_shape)
    return problems


def _rule_problems(rules: ShapeRules, shape: tuple[int, ...]) -> list[str]:
    if rules.spatial and len(shape) != 3:
        return [f"height and width rules need a C,H,W input_shape, not {list(shape)}"]
    problems = []
    if rules.problems((rules.batch_range()[0], *shape)):
        problems.append(f"input_shape {list(shape)} is outside its own rules ({rules.describe()})")
    if math.prod(rules.largest(shape)) > MAX_SAMPLE_VALUES:
        problems.append(f"the dynamic rules allow samples of more than {MAX_SAMPLE_VALUES} values")
    return problems


_WHERE = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<where>[^`]*)`)?$", re.S)
_MISSING = re.compile(r"Object missing required field `(?P<field>[^`]*)`")
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<field>[^`]*)`")
_TYPE = re.compile(r"Expected `(?P<want>[^`]*)`, got `(?P<got>[^`]*)`")


def validation_sentence(exc: msgspec.ValidationError) -> str:
    """msgspec's error as a clause that names the field first: ``field model.name is
    missing``, ``field facts.mean[0] must be float, not str``."""
    found = _WHERE.match(str(exc))
    assert found is not None  # the pattern matches any text
    what, where = found["what"].rstrip("."), (found["where"] or "").lstrip(".")
    if m := _MISSING.fullmatch(what):
        return f"field {_join(where, m['field'])} is missing"
    if m := _UNKNOWN.fullmatch(what):
        return f"field {_join(where, m['field'])} is not one kit knows"
    if m := _TYPE.fullmatch(what):
        return f"field {where or '(top level)'} must be {m['want']}, not {m['got']}"
    return f"field {where}: {what}" if where else what


def _join(where: str, field: str) -> str:
    return f"{where}.{field}" if where else field
