"""KServe v2 / Open Inference Protocol request and response bodies, JSON and Triton's binary extension.

JSON tensors carry ``data`` as a row-major flat (or nested) list. The binary-tensor extension (what
``tritonclient.http`` sends by default) puts a JSON header of ``Inference-Header-Content-Length`` bytes
first and the raw little-endian tensor bytes after it, each input saying its byte count in
``parameters.binary_data_size``; outputs come back binary when the request asks with
``parameters.binary_data_output`` (request level) or ``parameters.binary_data`` (per output). Binary
matters for benchmarking: a ResNet-50 input is 150,528 floats, about 15 ms of ``json.loads`` alone.

Every defect in a request raises :class:`ProtocolError` with the HTTP status the server answers
(400 malformed, 413 too large), never an unhandled exception.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferperf.serve.model import NUMPY_TO_V2, V2_TO_NUMPY

HEADER_LENGTH = "inference-header-content-length"

#: the most elements one tensor of a request may declare (guards ``np.prod`` of absurd shapes)
MAX_ELEMENTS = 1 << 31


class ProtocolError(Exception):
    """A request the server must refuse, with the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class InferRequest:
    inputs: dict[str, np.ndarray]
    request_id: str | None = None
    outputs: list[str] | None = None
    binary_outputs: set[str] = field(default_factory=set)
    binary_all: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)


def _element_count(shape: list[int], name: str) -> int:
    n = 1
    for d in shape:
        n *= d
        if n > MAX_ELEMENTS:
            raise ProtocolError(f"input {name!r}: shape {shape} is too large")
    return n


def _shape(value: Any, name: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise ProtocolError(f"input {name!r}: 'shape' must be a list of integers")
    if any(d < 0 for d in value):
        raise ProtocolError(f"input {name!r}: shape dimensions must be non-negative, got {value}")
    return list(value)


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{where}: 'parameters' must be an object")
    return value


def decode_request(body: bytes, header_length: int | None) -> InferRequest:
    """Parse an inference request body (JSON, or JSON header + binary tensors)."""
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise ProtocolError(f"{HEADER_LENGTH} {header_length} does not fit a {len(body)}-byte body")
        header_bytes, binary = body[:header_length], memoryview(body)[header_length:]
    else:
        header_bytes, binary = body, memoryview(b"")
    try:
        doc = json.loads(header_bytes)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ProtocolError("the request body must be a JSON object")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ProtocolError("the request needs a non-empty 'inputs' list")
    params = _parameters(doc.get("parameters"), "request")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError("'id' must be a string")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for raw in raw_inputs:
        if not isinstance(raw, dict):
            raise ProtocolError("every entry of 'inputs' must be an object")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise ProtocolError("every input needs a 'name' string")
        if name in inputs:
            raise ProtocolError(f"input {name!r} is given twice")
        datatype = raw.get("datatype")
        if datatype not in V2_TO_NUMPY:
            if datatype == "BYTES":
                raise ProtocolError(f"input {name!r}: BYTES tensors are not supported by this model")
            raise ProtocolError(f"input {name!r}: unknown datatype {datatype!r} "
                                f"(one of {', '.join(sorted(V2_TO_NUMPY))})")
        dtype = np.dtype(V2_TO_NUMPY[datatype])
        shape = _shape(raw.get("shape"), name)
        count = _element_count(shape, name)
        in_params = _parameters(raw.get("parameters"), f"input {name!r}")
        size = in_params.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ProtocolError(f"input {name!r}: binary_data_size must be a non-negative integer")
            if size != count * dtype.itemsize:
                raise ProtocolError(f"input {name!r}: {size} binary bytes for shape {shape} of {datatype} "
                                    f"(expected {count * dtype.itemsize})")
            if offset + size > len(binary):
                raise ProtocolError(f"input {name!r}: the body ends before its {size} binary bytes")
            arr = np.frombuffer(binary[offset:offset + size], dtype=dtype.newbyteorder("<")).astype(dtype, copy=False)
            offset += size
            inputs[name] = arr.reshape(shape)
            continue
        if "data" not in raw:
            raise ProtocolError(f"input {name!r} has neither 'data' nor binary_data_size")
        inputs[name] = _json_tensor(raw["data"], dtype, shape, name)
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} binary bytes after the last binary input")

    outputs = None
    binary_outputs: set[str] = set()
    raw_outputs = doc.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise ProtocolError("'outputs' must be a list")
        outputs = []
        for raw in raw_outputs:
            if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
                raise ProtocolError("every requested output needs a 'name' string")
            outputs.append(raw["name"])
            if _parameters(raw.get("parameters"), f"output {raw['name']!r}").get("binary_data") is True:
                binary_outputs.add(raw["name"])
    return InferRequest(inputs, request_id, outputs, binary_outputs, params.get("binary_data_output") is True, params)


def _json_tensor(data: Any, dtype: np.dtype, shape: list[int], name: str) -> np.ndarray:
    if not isinstance(data, list):
        raise ProtocolError(f"input {name!r}: 'data' must be a list")
    try:
        arr = np.array(data, dtype=dtype if dtype.kind != "b" else object)
        if dtype.kind == "b":
            if not all(isinstance(v, bool) for v in arr.ravel()):
                raise ValueError("BOOL data must be true/false")
            arr = arr.astype(bool)
    except (ValueError, TypeError, OverflowError) as exc:
        what = NUMPY_TO_V2[dtype.name]
        raise ProtocolError(f"input {name!r}: 'data' is not a list of {what} values ({exc})") from None
    if arr.dtype == object:
        raise ProtocolError(f"input {name!r}: 'data' is ragged")
    expected = math.prod(shape)
    if arr.size != expected:
        raise ProtocolError(f"input {name!r}: {arr.size} values for shape {shape} ({expected} expected)")
    return arr.reshape(shape)


def encode_response(
    model_name: str,
    outputs: Mapping[str, np.ndarray],
    request: InferRequest,
    parameters: Mapping[str, Any] | None = None,
    model_version: str = "1",
) -> tuple[bytes, int | None]:
    """Response body and, when any output is binary, the JSON header length for the response header."""
    names = request.outputs if request.outputs is not None else list(outputs)
    unknown = [n for n in names if n not in outputs]
    if unknown:
        raise ProtocolError(f"unknown output(s) {unknown}; the model produces {list(outputs)}")
    entries = []
    blobs: list[bytes] = []
    for name in names:
        arr = np.ascontiguousarray(outputs[name])
        entry: dict[str, Any] = {"name": name, "datatype": NUMPY_TO_V2[arr.dtype.name], "shape": list(arr.shape)}
        if request.binary_all or name in request.binary_outputs:
            raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = arr.ravel().tolist()
        entries.append(entry)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": entries}
    if request.request_id is not None:
        doc["id"] = request.request_id
    if parameters:
        doc["parameters"] = dict(parameters)
    header = json.dumps(doc, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)
