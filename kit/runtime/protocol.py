"""The Open Inference Protocol (KServe v2) request and response bodies, as Triton speaks them.

Parsing is strict: every way a request can be wrong becomes a :class:`ProtocolError` with
an HTTP status and one sentence, never an exception from deep inside numpy.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["InferRequest", "ProtocolError", "encode_response", "parse_infer_request"]

DATATYPES = {"FP32": np.dtype("<f4")}
#: Output tensors' numpy dtypes and ONNX element types -> the protocol's datatype names.
OUTPUT_DATATYPES = {
    np.dtype(np.float32): "FP32",
    np.dtype(np.float16): "FP16",
    np.dtype(np.float64): "FP64",
    np.dtype(np.int64): "INT64",
    np.dtype(np.int32): "INT32",
    np.dtype(np.int8): "INT8",
    np.dtype(np.uint8): "UINT8",
    np.dtype(np.bool_): "BOOL",
}
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
HEADER_LENGTH = "inference-header-content-length"


class ProtocolError(Exception):
    """A request the server answers with ``{"error": message}`` and ``status``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class InferRequest:
    """A parsed, validated inference request."""

    id: str | None
    x: np.ndarray
    outputs: list[str]
    binary: dict[str, bool]


def _json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"The request body is not valid JSON ({exc}).") from None
    except RecursionError:
        raise ProtocolError("The request body nests JSON too deeply.") from None
    if not isinstance(body, dict):
        raise ProtocolError("The request body must be a JSON object with an 'inputs' list.")
    return body


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise ProtocolError(f"Input {name!r} needs 'shape' as a list of non-negative integers.")
    return tuple(value)


def parse_infer_request(
    body: bytes,
    header_length: str | None,
    *,
    input_name: str,
    sample_shape: tuple[int, ...],
    output_names: list[str],
) -> InferRequest:
    """Parse a JSON or binary-tensor infer request for a one-input model.

    Raises:
        ProtocolError: anything wrong with the request, with a sentence saying what.
    """
    binary = memoryview(b"")
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise ProtocolError("Inference-Header-Content-Length must be an integer.") from None
        if n < 0 or n > len(body):
            raise ProtocolError(
                f"Inference-Header-Content-Length is {n} but the body holds {len(body)} bytes."
            )
        # a view, not a copy: the tensor bytes (600 KB for one AlexNet image) are read in place
        body, binary = body[:n], memoryview(body)[n:]
    req = _json(body)
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError("The request needs a non-empty 'inputs' list.")
    names = [i.get("name") if isinstance(i, dict) else None for i in inputs]
    if input_name not in names:
        raise ProtocolError(
            f"Input {input_name!r} is missing; the model takes exactly one input, {input_name!r}."
        )
    extra = [n for n in names if n != input_name]
    if extra or len(names) != 1:
        raise ProtocolError(
            f"Unexpected input(s) {extra or names}; the model takes exactly one input, {input_name!r}."
        )
    spec = inputs[0]
    datatype = spec.get("datatype")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise ProtocolError(
            f"Input {input_name!r} has datatype {datatype!r}; the model takes FP32."
        )
    dtype = DATATYPES[datatype]
    shape = _shape(spec.get("shape"), input_name)
    count = math.prod(shape) if shape else 0
    params = spec.get("parameters") or {}
    if not isinstance(params, dict):
        raise ProtocolError(f"Input {input_name!r} has 'parameters' that is not an object.")
    size = params.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ProtocolError("binary_data_size must be a non-negative integer.")
        if size != len(binary):
            raise ProtocolError(
                f"binary_data_size is {size} but {len(binary)} bytes of binary data follow the header."
            )
        if size != count * dtype.itemsize:
            raise ProtocolError(
                f"Shape {list(shape)} needs {count * dtype.itemsize} bytes of {datatype}; binary_data_size is {size}."
            )
        x = np.frombuffer(binary, dtype=dtype).reshape(shape)
    else:
        if binary:
            raise ProtocolError(
                "Binary data follows the header but no input declares binary_data_size."
            )
        if "data" not in spec:
            raise ProtocolError(f"Input {input_name!r} has neither 'data' nor binary_data_size.")
        try:
            with np.errstate(over="ignore"):  # a value past float32 becomes inf, refused below
                flat = np.asarray(spec["data"], dtype=np.float32).reshape(-1)
        except (ValueError, TypeError, OverflowError, RecursionError):
            raise ProtocolError(
                f"Input {input_name!r} 'data' must be a (nested) list of float32 numbers."
            ) from None
        if flat.size != count:
            raise ProtocolError(
                f"Input {input_name!r} has shape {list(shape)} ({count} values) but 'data' holds {flat.size}."
            )
        x = flat.reshape(shape)
    if len(shape) != 1 + len(sample_shape) or shape[1:] != sample_shape:
        raise ProtocolError(
            f"Input {input_name!r} has shape {list(shape)}; the model takes {[-1, *sample_shape]}."
        )
    if shape[0] == 0:
        raise ProtocolError("The batch is empty; send at least one sample.")
    if not np.isfinite(x).all():
        raise ProtocolError(f"Input {input_name!r} holds NaN or infinite values.")
    requested = req.get("outputs")
    req_params = req.get("parameters") or {}
    if not isinstance(req_params, dict):
        raise ProtocolError("The request's 'parameters' must be an object.")
    binary_default = bool(req_params.get("binary_data_output", False))
    wanted: dict[str, bool] = {}
    if requested is None:
        wanted = dict.fromkeys(output_names, binary_default)
    else:
        if not isinstance(requested, list):
            raise ProtocolError("'outputs' must be a list of {'name': ...} objects.")
        for o in requested:
            name = o.get("name") if isinstance(o, dict) else None
            if not isinstance(name, str) or name not in output_names:
                raise ProtocolError(f"Unknown output {name!r}; the model has {output_names}.")
            if name in wanted:
                raise ProtocolError(f"Output {name!r} is requested more than once.")
            p = o.get("parameters") or {}
            wanted[name] = (
                bool(p.get("binary_data", binary_default))
                if isinstance(p, dict)
                else binary_default
            )
    rid = req.get("id")
    return InferRequest(
        id=str(rid) if rid is not None else None,
        x=np.ascontiguousarray(x, dtype=np.float32),
        outputs=list(wanted),
        binary=wanted,
    )


def encode_response(
    model_name: str, version: str, request: InferRequest, outputs: dict[str, np.ndarray]
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary tensors follow it."""
    header: dict[str, Any] = {"model_name": model_name, "model_version": version, "outputs": []}
    if request.id is not None:
        header["id"] = request.id
    blobs = []
    for name in request.outputs:
        arr = np.ascontiguousarray(outputs[name])
        if arr.dtype not in OUTPUT_DATATYPES:  # anything else travels as float32
            arr = arr.astype(np.float32)
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        datatype = OUTPUT_DATATYPES[arr.dtype.newbyteorder("=")]
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if request.binary[name]:
            raw = arr.tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = arr.reshape(-1).tolist()
        header["outputs"].append(entry)
    head = json.dumps(header, separators=(",", ":")).encode()
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)
