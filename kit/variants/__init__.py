"""Cheaper variants of an exported ``model.onnx`` (int8, fp16), each landing only when its
accuracy cost, measured on real held-out data, is within limits. Torch-free: numpy arrays
in, a file and a manifest record out."""

from __future__ import annotations

from .quantize import (
    VariantCheck,
    add_variant,
    check_variant,
    convert_fp16,
    predictions,
    refuse_at_chance,
)

__all__ = [
    "VariantCheck",
    "add_variant",
    "check_variant",
    "convert_fp16",
    "predictions",
    "refuse_at_chance",
]
