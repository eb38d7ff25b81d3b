"""The torch-free runtime apps embed: numpy + onnxruntime, nothing else.

>>> import kit.runtime
>>> model = kit.runtime.load("exported/mnist_cnn")
>>> model.classify(digit_uint8_28x28)[0][0]
Prediction(label='7', index=7, probability=0.99...)
"""

from ..errors import ArtifactError, InputError, ProviderError
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
