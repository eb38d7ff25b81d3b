"""The torch-free runtime apps embed: numpy + onnxruntime, nothing else.

>>> import kit.runtime
>>> model = kit.runtime.load("exported/mnist_cnn")
>>> model.classify(digit_uint8_28x28)[0][0]
Prediction(label='7', index=7, probability=0.99...)

onnxruntime is imported on first use of :func:`load` or :class:`Model`, so modules that
only need the server's configuration (the CLI's ``--help``) stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ArtifactError, InputError, ProviderError

if TYPE_CHECKING:
    from .session import Model, Prediction, default_providers, load

__all__ = [
    "ArtifactError",
    "InputError",
    "Model",
    "Prediction",
    "ProviderError",
    "default_providers",
    "load",
]

_FROM_SESSION = {"Model", "Prediction", "default_providers", "load"}


def __getattr__(name: str) -> Any:
    if name in _FROM_SESSION:
        from . import session

        return getattr(session, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
