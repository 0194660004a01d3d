"""Open Inference Protocol v2 tensor codec: datatypes, JSON data and binary blobs.

Pure functions over numpy arrays, no I/O. ``protocol`` builds the request and
response codec on top of them; both the model server and the gateway use it.
Every malformed input raises :class:`ProtocolError` naming what is wrong.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

__all__ = [
    "DATATYPES",
    "ProtocolError",
    "datatype_of",
    "decode_binary",
    "decode_json_data",
    "encode_binary",
    "encode_json_data",
    "check_shape",
    "element_count",
    "shape_of",
]


class ProtocolError(ValueError):
    """A message does not follow the Open Inference Protocol (or the legacy API)."""


# OIP datatype -> little-endian numpy dtype; BYTES is an object array of ``bytes``.
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
_LENGTH = struct.Struct("<I")


def datatype_of(array: np.ndarray[Any, Any]) -> str:
    """The OIP datatype name of a numpy array (object/str/bytes arrays are BYTES)."""
    if array.dtype.kind in "OSU":
        return "BYTES"
    for name, dtype in DATATYPES.items():
        if name != "BYTES" and dtype == array.dtype.newbyteorder("<"):
            return name
    raise ProtocolError(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype")


# Far above any tensor the services take (the frame limits bound them), far below
# what numpy refuses to shape: larger shapes, even with a zero dimension, are a 400.
MAX_DIMS = 32
MAX_SPAN = 2**31


def check_shape(shape: object) -> list[int]:
    """Validate an OIP shape: a list of at most :data:`MAX_DIMS` non-negative integers
    whose non-zero dimensions multiply to at most :data:`MAX_SPAN`."""
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise ProtocolError(f"shape must be a list of non-negative integers, got {shape!r}")
    if len(shape) > MAX_DIMS:
        raise ProtocolError(f"shape has {len(shape)} dimensions; at most {MAX_DIMS}")
    span = 1
    for d in shape:
        span *= max(d, 1)
        if span > MAX_SPAN:
            raise ProtocolError(f"shape {shape[:8]!r} is too large (over {MAX_SPAN} elements)")
    return shape


def element_count(shape: object) -> int:
    """Validate an OIP shape and return its element count."""
    return math.prod(check_shape(shape))


def _dtype(datatype: str) -> np.dtype[Any]:
    try:
        return DATATYPES[datatype]
    except KeyError:
        raise ProtocolError(
            f"unknown datatype {datatype!r}; expected one of {', '.join(DATATYPES)}"
        ) from None


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:  # e.g. a lone surrogate ("\ud800") from JSON
            raise ProtocolError("BYTES element is not valid Unicode text") from None
    raise ProtocolError(f"BYTES element must be bytes or str, got {type(value).__name__}")


def encode_binary(array: np.ndarray[Any, Any], datatype: str) -> bytes:
    """Raw bytes of a tensor as the binary extension sends them (row-major, little-endian)."""
    if datatype == "BYTES":
        parts: list[bytes] = []
        for item in array.reshape(-1):
            raw = _as_bytes(item)
            parts += (_LENGTH.pack(len(raw)), raw)
        return b"".join(parts)  # one copy of the frames, not one per frame
    return np.ascontiguousarray(array, dtype=_dtype(datatype)).tobytes()


def decode_binary(raw: bytes, datatype: str, shape: object) -> np.ndarray[Any, Any]:
    """Inverse of :func:`encode_binary`, checking that ``raw`` holds exactly ``shape``."""
    count = element_count(shape)
    dtype = _dtype(datatype)
    if datatype != "BYTES":
        if len(raw) != count * dtype.itemsize:
            raise ProtocolError(
                f"{datatype} tensor of shape {shape} needs {count * dtype.itemsize} bytes, "
                f"got {len(raw)}"
            )
        return np.frombuffer(raw, dtype=dtype).reshape(shape)
    items: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise ProtocolError("BYTES tensor ends inside a 4-byte length prefix")
        (size,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise ProtocolError("BYTES tensor element is longer than the data that follows")
        items.append(raw[offset : offset + size])
        offset += size
    if len(items) != count:
        raise ProtocolError(
            f"BYTES tensor of shape {shape} needs {count} elements, got {len(items)}"
        )
    out = np.empty(count, dtype=object)
    out[:] = items
    return out.reshape(shape)


def _flatten(data: list[object]) -> list[object]:
    # Iterative: nesting as deep as the JSON parser allows must not hit the recursion limit.
    flat: list[object] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def decode_json_data(data: object, datatype: str, shape: object) -> np.ndarray[Any, Any]:
    """A tensor from its JSON ``data`` (flat or nested, row-major)."""
    count = element_count(shape)
    dtype = _dtype(datatype)
    flat = _flatten(data) if isinstance(data, list) else None
    if flat is None:
        raise ProtocolError(f"tensor data must be a list, got {type(data).__name__}")
    if len(flat) != count:
        raise ProtocolError(f"tensor of shape {shape} needs {count} elements, got {len(flat)}")
    if datatype == "BYTES":
        out = np.empty(count, dtype=object)
        out[:] = [_as_bytes(v) for v in flat]
        return out.reshape(shape)
    if datatype == "BOOL":
        if not all(isinstance(v, bool) for v in flat):
            raise ProtocolError("BOOL tensor data must hold only true/false")
    elif dtype.kind in "iu":
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
            raise ProtocolError(f"{datatype} tensor data must hold only integers")
        info = np.iinfo(dtype)
        ints = [int(v) for v in flat]  # type: ignore[call-overload]
        if ints and (min(ints) < info.min or max(ints) > info.max):
            raise ProtocolError(f"{datatype} tensor data out of range [{info.min}, {info.max}]")
    elif not all(isinstance(v, int | float) and not isinstance(v, bool) for v in flat):
        raise ProtocolError(f"{datatype} tensor data must hold only numbers")
    try:
        return np.asarray(flat, dtype=dtype).reshape(shape)
    except OverflowError:  # an integer too large for any float (JSON allows any length)
        raise ProtocolError(
            f"{datatype} tensor data holds a number out of range for {datatype}"
        ) from None


def encode_json_data(array: np.ndarray[Any, Any], datatype: str) -> list[Any]:
    """Flat row-major JSON ``data`` of a tensor; BYTES elements become UTF-8 strings."""
    flat = array.reshape(-1)
    if datatype == "BYTES":
        try:
            return [_as_bytes(v).decode("utf-8") for v in flat]
        except UnicodeDecodeError:
            raise ProtocolError(
                "BYTES tensor is not UTF-8 text; use the binary extension or base64"
            ) from None
    values: list[Any] = flat.astype(_dtype(datatype)).tolist()
    if datatype.startswith("FP") and not all(math.isfinite(v) for v in values):
        raise ProtocolError("JSON cannot carry NaN or infinite values; use the binary extension")
    return values


def shape_of(array: np.ndarray[Any, Any]) -> list[int]:
    """The shape of an array as the JSON list OIP expects."""
    return [int(d) for d in array.shape]
