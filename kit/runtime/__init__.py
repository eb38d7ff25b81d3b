"""The torch-free runtime apps embed: numpy + onnxruntime, nothing else.

>>> import kit.runtime
>>> model = kit.runtime.load("exported/mnist_cnn")
>>> model.classify(digit_uint8_28x28)[0][0]
Prediction(label='7', index=7, probability=0.99...)

onnxruntime is imported on first use of :func:`load` or :class:`Model`. The server that
serves these models over HTTP is :mod:`kit.server`, a package of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ArtifactError, InputError, ProviderError

if TYPE_CHECKING:
    from .providers import default_providers
    from .session import Model, Prediction, load

__all__ = [
    "ArtifactError",
    "InputError",
    "Model",
    "Prediction",
    "ProviderError",
    "default_providers",
    "load",
]

_LAZY = {"Model": "session", "Prediction": "session", "load": "session"}
_LAZY["default_providers"] = "providers"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
