"""The seed networks, registered with their facts.

>>> from architectures import get_model, list_models
>>> model = get_model("mnist_cnn")
"""

from . import alexnet, lenet, mnist_cnn, vgg  # noqa: F401  (registers the networks)
from ._registry import (
    ModelSpec,
    TrainRecipe,
    UnknownModelError,
    get_model,
    get_spec,
    list_models,
    load_factory,
    register_model,
)

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
