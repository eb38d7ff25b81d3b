"""The Open Inference Protocol (KServe v2) request and response bodies, as Triton speaks them.

Parsing is strict: every way a request can be wrong becomes a :class:`ProtocolError` with
an HTTP status and one sentence, never an exception from deep inside numpy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import simdjson

from ..artifact import ShapeRules
from ..datatypes import PROTOCOL_DATATYPES

__all__ = [
    "InferRequest",
    "ProtocolError",
    "encode_response",
    "parse_infer_request",
]

DATATYPES = {"FP32": np.dtype("<f4")}
HEADER_LENGTH = "inference-header-content-length"


class ProtocolError(Exception):
    """A request the server answers with ``{"error": message}`` and ``status``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:  # keeps the status across a worker process
        return (ProtocolError, (str(self), self.status))


@dataclass
class InferRequest:
    """A parsed, validated inference request."""

    id: str | None
    x: np.ndarray
    outputs: list[str]
    binary: dict[str, bool]
    #: outputs asked for as the classification extension's top-k strings, and their k
    classification: dict[str, int] = field(default_factory=dict)


class RequestInput(msgspec.Struct):
    """One input tensor of a request. Loosely typed where the protocol's error message
    names the wrong value; ``data`` stays raw JSON so a flat list decodes straight to floats."""

    name: Any = None
    shape: Any = None
    datatype: Any = None
    parameters: Any = None
    data: msgspec.Raw = msgspec.Raw()  # empty: the request has no 'data'


class RequestOutput(msgspec.Struct):
    name: Any = None
    parameters: Any = None


class InferenceRequest(msgspec.Struct):
    """The body of ``POST /v2/models/NAME/infer`` (its JSON header, with binary tensors)."""

    inputs: list[RequestInput] | None = None
    outputs: list[RequestOutput] | None = None
    parameters: Any = None
    id: Any = None


_REQUEST = msgspec.json.Decoder(InferenceRequest)
_NONFINITE = re.compile(rb"[\[,:]\s*-?(NaN|Infinity)\s*[\],}]")
_FLOATS = msgspec.json.Decoder(list[float])
_ANY = msgspec.json.Decoder()


def _decode(raw: bytes | memoryview) -> InferenceRequest:
    try:
        return _REQUEST.decode(raw)
    except msgspec.ValidationError as exc:
        where = str(exc).rpartition(" - at `")[2].rstrip("`")
        if where.startswith("$.outputs"):
            raise ProtocolError("'outputs' must be a list of {'name': ...} objects.") from None
        if where.startswith("$.inputs"):
            raise ProtocolError("The request needs a non-empty 'inputs' list.") from None
        raise ProtocolError(
            "The request body must be a JSON object with an 'inputs' list."
        ) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        if _NONFINITE.search(bytes(raw)):  # what Python's json writes for nan and inf
            raise ProtocolError(
                "The request holds NaN or infinite values (which JSON cannot carry)."
            ) from None
        raise ProtocolError(f"The request body is not valid JSON ({exc}).") from None
    except RecursionError:
        raise ProtocolError("The request body nests JSON too deeply.") from None


def _shape(
    value: Any, name: str, sample: tuple[int, ...], max_batch: int, rules: ShapeRules | None
) -> tuple[int, ...]:
    """The input's shape, checked against the model (``-1`` in ``sample``: a size the
    ``rules`` let vary) before any tensor data is read."""
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise ProtocolError(f"Input {name!r} needs 'shape' as a list of non-negative integers.")
    shape = tuple(value)
    if (
        len(shape) != 1 + len(sample)
        or (
            shape[1:] != sample  # the usual case, a fixed-size model, is one tuple comparison
            and any(want not in (-1, got) for got, want in zip(shape[1:], sample, strict=False))
        )
    ):
        raise ProtocolError(
            f"Input {name!r} has shape {list(shape)}; the model takes {[-1, *sample]}."
        )
    if rules is not None and (problems := rules.problems(shape)):
        raise ProtocolError(f"Input {name!r} has shape {list(shape)}: {' '.join(problems)}")
    if shape[0] == 0:
        raise ProtocolError("The batch is empty; send at least one sample.")
    if shape[0] > max_batch:
        raise ProtocolError(
            f"The batch has {shape[0]} rows; this model takes at most {max_batch} per request "
            "(its max_batch_size); split it into several requests."
        )
    return shape


def _the_input(req: InferenceRequest, input_name: str) -> RequestInput:
    """The request's one input, named as the model's."""
    if not req.inputs:
        raise ProtocolError("The request needs a non-empty 'inputs' list.")
    names = [i.name for i in req.inputs]
    if input_name not in names:
        raise ProtocolError(
            f"Input {input_name!r} is missing; the model takes exactly one input, {input_name!r}."
        )
    extra = [n for n in names if n != input_name]
    if extra or len(names) != 1:
        raise ProtocolError(
            f"Unexpected input(s) {extra or names}; the model takes exactly one input, {input_name!r}."
        )
    return req.inputs[0]


def _binary_tensor(
    spec: RequestInput, size: Any, binary: memoryview, shape: tuple[int, ...]
) -> np.ndarray:
    dtype = DATATYPES[spec.datatype]
    count = math.prod(shape)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ProtocolError("binary_data_size must be a non-negative integer.")
    if size != len(binary):
        raise ProtocolError(
            f"binary_data_size is {size} but {len(binary)} bytes of binary data follow the header."
        )
    if size != count * dtype.itemsize:
        raise ProtocolError(
            f"Shape {list(shape)} needs {count * dtype.itemsize} bytes of {spec.datatype}; binary_data_size is {size}."
        )
    return np.frombuffer(binary, dtype=dtype).reshape(shape)


def _json_tensor(spec: RequestInput, shape: tuple[int, ...]) -> np.ndarray:
    name = spec.name
    if not spec.data:
        raise ProtocolError(f"Input {name!r} has neither 'data' nor binary_data_size.")
    count = math.prod(shape)
    flat = _flat_numbers(bytes(spec.data))
    if flat is None:
        try:
            values: Any = _FLOATS.decode(spec.data)
        except msgspec.DecodeError:
            values = _flatten(_nested(spec.data, name), name, len(shape))
        try:
            with np.errstate(over="ignore"):  # a value past float32 becomes inf, refused below
                flat = np.asarray(values, dtype=np.float32).reshape(-1)
        except (OverflowError, ValueError):  # an integer past any float
            raise ProtocolError(_NOT_NUMBERS.format(name=name)) from None
    if flat.size != count:
        raise ProtocolError(
            f"Input {name!r} has shape {list(shape)} ({count} values) but 'data' holds {flat.size}."
        )
    return flat.reshape(shape)


def _flat_numbers(data: bytes) -> np.ndarray | None:
    """The usual ``data``, a flat list of numbers, as float32: simdjson writes the doubles
    into one buffer without a Python float per value. None for anything else (nested
    lists, strings, booleans, a number no double holds), which the strict path decodes or
    refuses with its own message."""
    if data.find(b"[", 1) != -1:  # nested: the strict path checks every level's length
        return None
    try:
        values = simdjson.Parser().parse(data)
        if not isinstance(values, simdjson.Array):  # a number or string, not a list
            return None
        doubles = values.as_buffer(of_type="d")
    except (ValueError, TypeError, RuntimeError):
        return None
    with np.errstate(over="ignore"):  # a value past float32 becomes inf, refused below
        return np.frombuffer(doubles, np.float64).astype(np.float32)


def _nested(raw: msgspec.Raw, name: Any) -> Any:
    """``data`` that is not a flat list of floats: nested lists, or something wrong."""
    try:
        return _ANY.decode(raw)
    except (msgspec.DecodeError, RecursionError):  # too deep, or numbers no double holds
        raise ProtocolError(_NOT_NUMBERS.format(name=name)) from None


_NOT_NUMBERS = (
    "Input {name!r} 'data' must be a (nested) list of float32 numbers (not strings or booleans)."
)


def _flatten(values: Any, name: Any, depth: int) -> list[float]:
    """Nested lists of numbers, at most ``depth`` deep and every number equally deep, as one
    flat list; anything else (a string, a boolean, an object, ragged nesting) is refused."""
    flat: list[float] = []
    leaf_level = None
    stack = [(values, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, list) and level < depth:
            stack.extend((v, level + 1) for v in reversed(item))
        elif (
            isinstance(item, int | float)
            and not isinstance(item, bool)
            and level > 0
            and leaf_level in (None, level)
        ):
            leaf_level = level
            flat.append(item)
        else:
            raise ProtocolError(_NOT_NUMBERS.format(name=name))
    return flat


def _wanted_outputs(
    req: InferenceRequest, output_names: list[str], classes: int
) -> tuple[dict[str, bool], dict[str, int]]:
    """``{output: as binary}`` for what the request asks for (every output by default), and
    ``{output: k}`` for those asked for as the classification extension's top k."""
    req_params = req.parameters or {}
    if not isinstance(req_params, dict):
        raise ProtocolError("The request's 'parameters' must be an object.")
    binary_default = bool(req_params.get("binary_data_output", False))
    if req.outputs is None:
        return dict.fromkeys(output_names, binary_default), {}
    wanted: dict[str, bool] = {}
    classification: dict[str, int] = {}
    for o in req.outputs:
        name = o.name
        if not isinstance(name, str) or name not in output_names:
            raise ProtocolError(f"Unknown output {name!r}; the model has {output_names}.")
        if name in wanted:
            raise ProtocolError(f"Output {name!r} is requested more than once.")
        p = o.parameters or {}
        if not isinstance(p, dict):
            p = {}
        wanted[name] = bool(p.get("binary_data", binary_default))
        if "classification" in p:
            classification[name] = _top_k(p["classification"], name, classes)
    return wanted, classification


def _top_k(value: Any, name: str, classes: int) -> int:
    if not classes:
        raise ProtocolError(
            f"Output {name!r} is not a classifier's class scores, so it has no classification."
        )
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ProtocolError("'classification' must be a positive integer: how many classes.")
    return min(value, classes)


def _split(body: bytes, header_length: str | None) -> tuple[bytes | memoryview, memoryview]:
    """The JSON header and the binary tensors after it."""
    if header_length is None:
        return body, memoryview(b"")
    try:
        n = int(header_length)
    except ValueError:
        raise ProtocolError("Inference-Header-Content-Length must be an integer.") from None
    if n < 0 or n > len(body):
        raise ProtocolError(
            f"Inference-Header-Content-Length is {n} but the body holds {len(body)} bytes."
        )
    view = memoryview(body)  # views, not copies: tensor bytes are read in place
    return view[:n], view[n:]


def parse_infer_request(
    body: bytes,
    header_length: str | None,
    *,
    input_name: str,
    sample_shape: tuple[int, ...],
    output_names: list[str],
    max_batch: int,
    classes: int = 0,
    rules: ShapeRules | None = None,
) -> InferRequest:
    """Parse a JSON or binary-tensor infer request for a one-input model (``classes``: how
    many its one output scores, when it is a classifier; ``rules``: the sizes a model whose
    size varies takes, ``-1`` in ``sample_shape``).

    The shape is checked against the model (rank, sample dimensions, at most ``max_batch``
    rows) before any tensor data is decoded.

    Raises:
        ProtocolError: anything wrong with the request, with a sentence saying what.
    """
    head, binary = _split(body, header_length)
    req = _decode(head)
    spec = _the_input(req, input_name)
    if not isinstance(spec.datatype, str) or spec.datatype not in DATATYPES:
        raise ProtocolError(
            f"Input {input_name!r} has datatype {spec.datatype!r}; the model takes FP32."
        )
    shape = _shape(spec.shape, input_name, sample_shape, max_batch, rules)
    params = spec.parameters or {}
    if not isinstance(params, dict):
        raise ProtocolError(f"Input {input_name!r} has 'parameters' that is not an object.")
    size = params.get("binary_data_size")
    if size is not None:
        x = _binary_tensor(spec, size, binary, shape)
    elif binary:
        raise ProtocolError(
            "Binary data follows the header but no input declares binary_data_size."
        )
    else:
        x = _json_tensor(spec, shape)
    if not np.isfinite(x).all():
        raise ProtocolError(f"Input {input_name!r} holds NaN or infinite values.")
    wanted, classification = _wanted_outputs(req, output_names, classes)
    return InferRequest(
        id=str(req.id) if req.id is not None else None,
        x=np.ascontiguousarray(x, dtype=np.float32),
        outputs=list(wanted),
        binary=wanted,
        classification=classification,
    )


def classify(scores: np.ndarray, k: int, labels: Sequence[str]) -> list[list[str]]:
    """Each row's top ``k`` classes as Triton's classification extension writes them:
    ``"score:index:label"`` (the raw output value; the label when the model names it)."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [
        [
            f"{float(row[i]):f}:{int(i)}" + (f":{labels[i]}" if i < len(labels) else "")
            for i in picks
        ]
        for row, picks in zip(scores, top, strict=True)
    ]


def _bytes_entry(name: str, rows: list[list[str]], binary: bool) -> tuple[dict[str, Any], bytes]:
    """A BYTES output: JSON strings, or the binary extension's length-prefixed elements."""
    entry: dict[str, Any] = {"name": name, "datatype": "BYTES", "shape": [len(rows), len(rows[0])]}
    flat = [s for row in rows for s in row]
    if not binary:
        entry["data"] = flat
        return entry, b""
    raw = b"".join(len(b).to_bytes(4, "little") + b for b in (s.encode() for s in flat))
    entry["parameters"] = {"binary_data_size": len(raw)}
    return entry, raw


def _tensor_entry(name: str, arr: np.ndarray, binary: bool) -> tuple[dict[str, Any], bytes]:
    """A numeric output: JSON numbers, or the binary extension's little-endian bytes."""
    if arr.dtype not in PROTOCOL_DATATYPES:  # anything else travels as float32
        arr = arr.astype(np.float32)
    arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    datatype = PROTOCOL_DATATYPES[arr.dtype.newbyteorder("=")]
    entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
    if not binary:
        entry["data"] = arr.reshape(-1).tolist()
        return entry, b""
    raw = arr.tobytes()
    entry["parameters"] = {"binary_data_size": len(raw)}
    return entry, raw


def encode_response(
    model_name: str,
    version: str,
    request: InferRequest,
    outputs: dict[str, np.ndarray],
    labels: Sequence[str] = (),
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary tensors follow it."""
    header: dict[str, Any] = {"model_name": model_name, "model_version": version, "outputs": []}
    if request.id is not None:
        header["id"] = request.id
    blobs = []
    for name in request.outputs:
        arr = np.ascontiguousarray(outputs[name])
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ProtocolError(
                f"The model's output {name!r} holds NaN or infinite values for this input "
                "(values this large overflow float32 arithmetic); scale the input as the "
                "model expects."
            )
        if name in request.classification:
            rows = classify(arr, request.classification[name], labels)
            entry, raw = _bytes_entry(name, rows, request.binary[name])
        else:
            entry, raw = _tensor_entry(name, arr, request.binary[name])
        header["outputs"].append(entry)
        if request.binary[name]:
            blobs.append(raw)
    head = msgspec.json.encode(header)
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)
