"""The network registry: one home for every fact about a seed network.

Export, parity, training, the runtime and the server read a network's input shape,
normalisation, class names, parity tolerances and training recipe from its
:class:`ModelSpec`; none of them repeats a constant.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

__all__ = [
    "ModelSpec",
    "TrainRecipe",
    "UnknownModelError",
    "get_model",
    "get_spec",
    "list_models",
    "load_factory",
    "register_model",
]


class UnknownModelError(KeyError):
    """A model name that is not registered (the message lists the known ones)."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want a sentence.
        return str(self.args[0])


@dataclass(frozen=True)
class TrainRecipe:
    """How `kit train` trains a network when the user gives no option."""

    dataset: str = "fake"
    epochs: int = 1
    batch_size: int = 64
    optimizer: str = "sgd"  # "sgd" (momentum 0.9, nesterov), "adam" or "adamw"
    lr: float = 0.01
    weight_decay: float = 5e-4
    schedule: str = "onecycle"  # "onecycle" or "constant"
    label_smoothing: float = 0.0
    augment: str = "none"  # "none" or "affine" (random rotation, scale, shear, shift per batch)
    augment_strength: float = 1.0
    ema: float = 0.0  # decay of an exponential moving average of the weights (0: off)


@dataclass(frozen=True)
class ModelSpec:
    """Everything kit knows about a network besides its code.

    Attributes:
        name: Registry name (``vgg16_bn``).
        builder: Factory returning an ``nn.Module``; takes ``num_classes`` as a keyword.
        input_shape: One sample's shape, channels first (``(1, 28, 28)``).
        mean: Per-channel mean of the pixel values scaled to [0, 1].
        std: Per-channel standard deviation, same scale.
        num_classes: Default number of classes.
        class_names: Label of each class for the default ``num_classes``.
        head: The classifier's last Linear module (``fc.3``); its weight's first
            dimension is the number of classes, so a weights file tells its class count.
        atol: Default absolute parity tolerance.
        rtol: Default relative parity tolerance.
        recipe: Default training recipe.
        description: One line for ``kit list``.
    """

    name: str
    builder: Callable[..., nn.Module]
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    class_names: tuple[str, ...]
    head: str | None = None
    atol: float = 1e-4
    rtol: float = 1e-4
    recipe: TrainRecipe = field(default_factory=TrainRecipe)
    description: str = ""

    def labels(self, num_classes: int | None = None) -> list[str]:
        """Class labels for ``num_classes`` (the default names when the count matches)."""
        n = self.num_classes if num_classes is None else num_classes
        if n == len(self.class_names):
            return list(self.class_names)
        return [str(i) for i in range(n)]

    def classes_in(self, state: Mapping[str, Any]) -> int | None:
        """How many classes a ``state_dict`` holds for this network (None: cannot tell)."""
        weight = state.get(f"{self.head}.weight") if self.head else None
        shape = getattr(weight, "shape", None)
        return int(shape[0]) if shape is not None and len(shape) == 2 else None

    def facts(self) -> dict[str, Any]:
        """The spec as plain JSON-ready data (no builder)."""
        data = asdict(self)
        data.pop("builder")
        data.pop("head")
        data["class_names"] = list(self.class_names)
        data["input_shape"] = list(self.input_shape)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data


_SPECS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to the registry; a second spec with the same name is refused."""
    if spec.name in _SPECS:
        raise ValueError(f"A model named {spec.name!r} is already registered.")
    _SPECS[spec.name] = spec
    return spec


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_SPECS)


def get_spec(name: str) -> ModelSpec:
    """The spec registered as ``name``.

    Raises:
        UnknownModelError: ``name`` is not registered; the message lists those that are.
    """
    try:
        return _SPECS[name]
    except KeyError:
        known = ", ".join(list_models())
        raise UnknownModelError(f"Unknown model {name!r}; known models: {known}.") from None


def get_model(name: str, *, num_classes: int | None = None) -> nn.Module:
    """Build the registered network ``name`` with fresh weights."""
    spec = get_spec(name)
    return spec.builder(num_classes=spec.num_classes if num_classes is None else num_classes)


def load_factory(target: str) -> Callable[..., nn.Module]:
    """Resolve a user's ``package.module:factory`` string to the callable it names.

    Raises:
        UnknownModelError: the module or the attribute cannot be found.
    """
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise UnknownModelError(
            f"{target!r} is neither a registered model nor of the form 'package.module:factory'."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownModelError(f"Cannot import module {module_name!r}: {exc}.") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UnknownModelError(f"Module {module_name!r} has no callable named {attr!r}.")
    return factory  # type: ignore[no-any-return]
