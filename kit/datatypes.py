"""Tensor element types as each boundary spells them: numpy, the inference protocol (and
Triton, which prefixes ``TYPE_``), onnxruntime's type strings and onnxruntime-js.
One table, so the server, Triton configs, the endpoint check and the JS runtimes agree."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["JS_DTYPES", "ONNX_DATATYPES", "PROTOCOL_DATATYPES", "protocol_datatype"]

#: numpy dtypes -> the inference protocol's datatype names
PROTOCOL_DATATYPES = {
    np.dtype(np.float32): "FP32",
    np.dtype(np.float16): "FP16",
    np.dtype(np.float64): "FP64",
    np.dtype(np.int64): "INT64",
    np.dtype(np.int32): "INT32",
    np.dtype(np.int8): "INT8",
    np.dtype(np.uint8): "UINT8",
    np.dtype(np.bool_): "BOOL",
}
#: onnxruntime's type strings -> the protocol's names
ONNX_DATATYPES = {
    "tensor(float)": "FP32",
    "tensor(float16)": "FP16",
    "tensor(double)": "FP64",
    "tensor(int64)": "INT64",
    "tensor(int32)": "INT32",
    "tensor(int8)": "INT8",
    "tensor(uint8)": "UINT8",
    "tensor(bool)": "BOOL",
}
#: onnxruntime-js tensor types (node and web alike) -> little-endian numpy dtypes
JS_DTYPES: dict[str, np.dtype[Any]] = {
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "float64": np.dtype("<f8"),
    "int64": np.dtype("<i8"),
    "int32": np.dtype("<i4"),
    "int8": np.dtype("i1"),
    "uint8": np.dtype("u1"),
    "bool": np.dtype("?"),
}


def protocol_datatype(dtype: Any) -> str | None:
    """The protocol's name for a numpy dtype or dtype name (None: it has none)."""
    try:
        return PROTOCOL_DATATYPES.get(np.dtype(dtype).newbyteorder("="))
    except TypeError:
        return None
