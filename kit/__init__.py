"""kit: train, export, verify and serve PyTorch CNNs.

Importing ``kit`` is cheap: torch, onnx and onnxruntime load only in the modules that need
them, so ``kit --help`` and ``import kit.runtime`` stay fast.
"""

__version__ = "0.1.0"
