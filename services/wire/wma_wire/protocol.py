"""Wire codec of the model server, shared by the server and its callers (the gateway).

Open Inference Protocol v2 requests and responses, in plain JSON or with the
binary tensor data extension (a JSON header of ``Inference-Header-Content-Length``
bytes followed by the raw tensors), and the validator of the legacy
``/check_frame_batch`` reply. Pure functions: bytes and headers in, values out.

Conventions of this server (documented in docs/model-server.md):
input ``images`` is BYTES ``[N]`` holding encoded JPEG/PNG frames (base64 strings
in JSON mode); output ``probs`` is FP32 ``[N]`` with :data:`UNSCORED` (-1.0) for a
frame that could not be scored, and ``status`` is BYTES ``[N]`` with one of
:data:`FRAME_STATUSES` per frame.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from wma_wire.tensors import (
    ProtocolError,
    datatype_of,
    decode_binary,
    decode_json_data,
    element_count,
    encode_binary,
    encode_json_data,
    shape_of,
)

__all__ = [
    "FRAME_STATUSES",
    "HEADER_LENGTH",
    "OUTPUTS",
    "UNSCORED",
    "InferRequest",
    "InferResponse",
    "InferTensor",
    "ProtocolError",
    "decode_infer_request",
    "decode_infer_response",
    "encode_infer_request",
    "encode_infer_response",
    "encode_message",
    "encode_shared_pixels_request",
    "parse_legacy_response",
]

HEADER_LENGTH = "Inference-Header-Content-Length"
UNSCORED = -1.0
FRAME_STATUSES = ("ok", "undecodable", "no_face")
OUTPUTS = ("probs", "status")  # the infer outputs, in reply order
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class InferTensor:
    """One decoded input or output tensor; ``binary`` says how it travelled."""

    name: str
    datatype: str
    data: np.ndarray[Any, Any]
    binary: bool = False


@dataclass(frozen=True)
class InferRequest:
    id: str
    inputs: dict[str, InferTensor]
    # requested output name -> whether it should come back as binary data
    outputs: dict[str, bool] = field(default_factory=dict)
    binary_data_output: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)

    def wants_binary(self, name: str) -> bool:
        return self.outputs.get(name, self.binary_data_output)

    def images(self) -> list[bytes]:
        """The encoded frames of input ``images`` (base64-decoded when sent as JSON)."""
        tensor = self.inputs.get("images")
        if tensor is None:
            raise ProtocolError("request has no input named 'images'")
        if tensor.datatype != "BYTES" or tensor.data.ndim != 1:
            raise ProtocolError("input 'images' must be BYTES with shape [N]")
        frames = [bytes(v) for v in tensor.data]
        if tensor.binary:
            return frames
        try:
            return [base64.b64decode(f, validate=True) for f in frames]
        except binascii.Error:
            raise ProtocolError("JSON input 'images' must hold base64 strings") from None


@dataclass(frozen=True)
class InferResponse:
    model_name: str
    id: str
    outputs: dict[str, np.ndarray[Any, Any]]

    @property
    def probs(self) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Per-frame fake probability, :data:`UNSCORED` where the frame was not scored."""
        if "probs" not in self.outputs:
            raise ProtocolError("response has no output named 'probs'")
        return np.asarray(self.outputs["probs"], dtype=np.float32).reshape(-1)

    @property
    def statuses(self) -> list[str]:
        """Per-frame status codes (``ok``, ``undecodable``, ``no_face``)."""
        if "status" not in self.outputs:
            raise ProtocolError("response has no output named 'status'")
        return [v.decode() if isinstance(v, bytes) else str(v) for v in self.outputs["status"].flat]


class SharedMemory(Protocol):
    """Where inputs sent by shared-memory reference are read
    (:class:`wma_wire.shm.RegionRegistry`)."""

    def read(self, name: object, offset: object, size: object) -> bytes: ...


_SHM_REGION = "shared_memory_region"
_SHM_OFFSET = "shared_memory_offset"
_SHM_SIZE = "shared_memory_byte_size"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _split(body: bytes, headers: Mapping[str, str]) -> tuple[dict[str, Any], bytes | None]:
    raw_length = _header(headers, HEADER_LENGTH)
    if raw_length is None:
        head, blobs = body, None
    else:
        try:
            length = int(raw_length)
        except ValueError:
            raise ProtocolError(f"{HEADER_LENGTH} is not an integer: {raw_length!r}") from None
        if not 0 < length <= len(body):
            raise ProtocolError(f"{HEADER_LENGTH} {length} is outside the body ({len(body)} B)")
        head, blobs = body[:length], body[length:]
    try:
        message = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"inference header is not valid JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("inference header is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer over Python's 4300-digit conversion limit
        raise ProtocolError(f"inference header is refused: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("inference header must be a JSON object")
    return message, blobs


def _read_tensors(
    entries: object, blobs: bytes | None, what: str, shared: SharedMemory | None = None
) -> dict[str, InferTensor]:
    if not isinstance(entries, list):
        raise ProtocolError(f"'{what}' must be a list")
    offset = 0
    tensors: dict[str, InferTensor] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ProtocolError(f"each of '{what}' must be an object with a string 'name'")
        name, datatype, shape = entry["name"], entry.get("datatype"), entry.get("shape")
        if not isinstance(datatype, str):
            raise ProtocolError(f"{what} {name!r} has no string 'datatype'")
        element_count(shape)
        params = entry.get("parameters") or {}
        if not isinstance(params, dict):
            raise ProtocolError(f"{what} {name!r} 'parameters' must be an object")
        size = params.get("binary_data_size")
        if _SHM_REGION in params:
            if shared is None:
                raise ProtocolError(
                    f"{what} {name!r} names a shared memory region, and shared memory "
                    "is not enabled on this server"
                )
            if size is not None or "data" in entry:
                raise ProtocolError(f"{what} {name!r} has shared memory and data: send one")
            raw = shared.read(
                params[_SHM_REGION], params.get(_SHM_OFFSET, 0), params.get(_SHM_SIZE)
            )
            data = decode_binary(raw, datatype, shape)
            is_binary = True  # raw bytes, as with the binary extension
        elif size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ProtocolError(f"{what} {name!r} binary_data_size must be an integer >= 0")
            if blobs is None or offset + size > len(blobs):
                raise ProtocolError(f"{what} {name!r} binary data is missing or truncated")
            data = decode_binary(blobs[offset : offset + size], datatype, shape)
            offset += size
            is_binary = True
        elif "data" in entry:
            data = decode_json_data(entry["data"], datatype, shape)
            is_binary = False
        else:
            raise ProtocolError(f"{what} {name!r} has neither 'data' nor binary_data_size")
        if name in tensors:
            raise ProtocolError(f"{what} {name!r} appears twice")
        tensors[name] = InferTensor(name, datatype, data, binary=is_binary)
    if blobs is not None and offset != len(blobs):
        raise ProtocolError(f"{len(blobs) - offset} bytes of binary data belong to no tensor")
    return tensors


def encode_message(
    header: dict[str, Any], key: str, tensors: Collection[InferTensor]
) -> tuple[bytes, dict[str, str]]:
    """Serialise ``header`` with ``tensors`` under ``key`` (binary ones after the JSON)."""
    entries, blobs = [], []
    for t in tensors:
        entry: dict[str, Any] = {"name": t.name, "shape": shape_of(t.data), "datatype": t.datatype}
        if t.binary:
            blob = encode_binary(t.data, t.datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = encode_json_data(t.data, t.datatype)
        entries.append(entry)
    head = json.dumps({**header, key: entries}, separators=(",", ":")).encode()
    if not blobs:
        return head, {"content-type": JSON_TYPE}
    headers = {"content-type": BINARY_TYPE, HEADER_LENGTH: str(len(head))}
    return head + b"".join(blobs), headers


def encode_infer_request(
    request_id: str, images: list[bytes], *, binary: bool = True
) -> tuple[bytes, dict[str, str]]:
    """An infer request carrying encoded frames as input ``images``.

    ``binary=True`` sends frames and asks for outputs with the binary extension;
    ``binary=False`` sends base64 strings in plain JSON and asks for JSON outputs.
    """
    data = np.empty(len(images), dtype=object)
    data[:] = images if binary else [base64.b64encode(i).decode("ascii") for i in images]
    outputs = [{"name": n, "parameters": {"binary_data": binary}} for n in OUTPUTS]
    header = {"id": request_id, "outputs": outputs}
    return encode_message(header, "inputs", [InferTensor("images", "BYTES", data, binary)])


def encode_shared_pixels_request(
    request_id: str, region: str, offset: int, shape: list[int]
) -> tuple[bytes, dict[str, str]]:
    """An infer request whose input ``pixels`` (UINT8 ``shape``) lies in shared memory
    ``region`` at ``offset`` (system shared memory extension); binary outputs."""
    params = {_SHM_REGION: region, _SHM_OFFSET: offset, _SHM_SIZE: math.prod(shape)}
    pixels = {"name": "pixels", "datatype": "UINT8", "shape": shape, "parameters": params}
    outputs = [{"name": n, "parameters": {"binary_data": True}} for n in OUTPUTS]
    head = {"id": request_id, "inputs": [pixels], "outputs": outputs}
    return json.dumps(head, separators=(",", ":")).encode(), {"content-type": JSON_TYPE}


def decode_infer_request(
    body: bytes, headers: Mapping[str, str], shared: SharedMemory | None = None
) -> InferRequest:
    """An infer request; inputs by shared-memory reference are read from ``shared``
    (a :class:`ProtocolError` when it is None: the extension is off)."""
    message, blobs = _split(body, headers)
    request_id = message.get("id", "")
    if not isinstance(request_id, str):
        raise ProtocolError("'id' must be a string")
    inputs = _read_tensors(message.get("inputs"), blobs, "inputs", shared)
    if not inputs:
        raise ProtocolError("request has no inputs")
    params = message.get("parameters") or {}
    if not isinstance(params, dict):
        raise ProtocolError("'parameters' must be an object")
    requested = message.get("outputs") or []
    if not isinstance(requested, list):
        raise ProtocolError("'outputs' must be a list of objects with a string 'name'")
    outputs: dict[str, bool] = {}
    for entry in requested:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ProtocolError("each requested output must be an object with a string 'name'")
        out_params = entry.get("parameters") or {}
        wants = out_params.get("binary_data", False) if isinstance(out_params, dict) else False
        outputs[entry["name"]] = bool(wants)
    return InferRequest(
        request_id, inputs, outputs, bool(params.get("binary_data_output", False)), params
    )


def encode_infer_response(
    model_name: str,
    request_id: str,
    outputs: Mapping[str, np.ndarray[Any, Any]],
    *,
    binary: bool | Collection[str] = False,
) -> tuple[bytes, dict[str, str]]:
    """An infer response; ``binary`` is a flag for all outputs or the names to send binary."""
    tensors = [
        InferTensor(
            name, datatype_of(arr), arr, binary if isinstance(binary, bool) else name in binary
        )
        for name, arr in outputs.items()
    ]
    return encode_message({"model_name": model_name, "id": request_id}, "outputs", tensors)


def decode_infer_response(body: bytes, headers: Mapping[str, str]) -> InferResponse:
    message, blobs = _split(body, headers)
    if "outputs" not in message:
        detail = message.get("error")
        raise ProtocolError(f"response has no 'outputs'{f': {detail}' if detail else ''}")
    tensors = _read_tensors(message["outputs"], blobs, "outputs")
    name, request_id = message.get("model_name", ""), message.get("id", "")
    if not isinstance(name, str) or not isinstance(request_id, str):
        raise ProtocolError("'model_name' and 'id' must be strings")
    return InferResponse(name, request_id, {n: t.data for n, t in tensors.items()})


def parse_legacy_response(payload: object) -> list[float]:
    """The per-frame probabilities of a ``/check_frame_batch`` reply, validated."""
    if not isinstance(payload, dict):
        raise ProtocolError("legacy reply must be a JSON object")
    probs = payload.get("probs")
    if not isinstance(probs, list):
        raise ProtocolError("legacy reply has no 'probs' list")
    for p in probs:
        if isinstance(p, bool) or not isinstance(p, int | float) or not math.isfinite(p):
            raise ProtocolError(f"legacy reply has a non-numeric probability: {p!r}")
        if not 0.0 <= p <= 1.0:
            raise ProtocolError(f"legacy reply has a probability outside [0, 1]: {p!r}")
    label = payload.get("pred_label", "REAL")
    if label not in ("REAL", "FAKE"):
        raise ProtocolError(f"legacy reply has an unknown pred_label: {label!r}")
    return [float(p) for p in probs]
