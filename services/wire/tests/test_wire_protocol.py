"""The shared OIP v2 wire codec and the legacy reply validator."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from wma_wire.protocol import (
    InferTensor,
    ProtocolError,
    decode_infer_request,
    decode_infer_response,
    encode_infer_request,
    encode_infer_response,
    encode_message,
    parse_legacy_response,
)

ARRAYS = {
    "BOOL": np.array([[True, False], [False, True]]),
    "UINT8": np.array([0, 255], dtype=np.uint8),
    "UINT16": np.array([65535], dtype=np.uint16),
    "UINT32": np.array([2**32 - 1], dtype=np.uint32),
    "UINT64": np.array([2**64 - 1], dtype=np.uint64),
    "INT8": np.array([-128, 127], dtype=np.int8),
    "INT16": np.array([-32768], dtype=np.int16),
    "INT32": np.array([[-(2**31)], [7]], dtype=np.int32),
    "INT64": np.array([-(2**63), 2**63 - 1], dtype=np.int64),
    "FP16": np.array([0.5, -2.0], dtype=np.float16),
    "FP32": np.array([[0.1, -1.0, 3.5]], dtype=np.float32),
    "FP64": np.array([1e-300, 2.5], dtype=np.float64),
    "BYTES": np.array([b"ok", b"", "h\u00e9".encode()], dtype=object),
}


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("datatype", list(ARRAYS))
def test_every_datatype_round_trips(datatype: str, binary: bool) -> None:
    array = ARRAYS[datatype]
    body, headers = encode_infer_response("m", "r", {"t": array}, binary=binary)
    out = decode_infer_response(body, headers).outputs["t"]
    assert out.shape == array.shape
    assert out.tolist() == array.tolist()
    if datatype != "BYTES":
        assert out.dtype == array.dtype


@pytest.mark.parametrize("binary", [True, False])
def test_frames_round_trip_through_the_request_codec(binary: bool) -> None:
    frames = [b"\xff\xd8\xff\x00binary\x00", b"\x89PNG\r\n\x1a\n..."]
    body, headers = encode_infer_request("id-7", frames, binary=binary)
    request = decode_infer_request(body, {k.upper(): v for k, v in headers.items()})
    assert request.id == "id-7"
    assert request.images() == frames
    assert request.wants_binary("probs") is binary


@pytest.mark.parametrize(
    ("entry", "needle"),
    [
        ({"name": "t", "shape": [2], "datatype": "INT8", "data": [1, 300]}, "out of range"),
        ({"name": "t", "shape": [1], "datatype": "BOOL", "data": [1]}, "true/false"),
        ({"name": "t", "shape": [1], "datatype": "FP32", "data": ["a"]}, "numbers"),
        ({"name": "t", "shape": [-1], "datatype": "FP32", "data": []}, "non-negative"),
        ({"name": "t", "shape": [1], "datatype": "COMPLEX", "data": [1]}, "unknown datatype"),
        ({"name": "t", "shape": [1], "datatype": "FP32"}, "neither 'data'"),
        ({"name": "t", "shape": [3], "datatype": "INT32", "data": [1, 2]}, "needs 3 elements"),
    ],
)
def test_malformed_tensors_raise_protocol_error(entry: dict[str, Any], needle: str) -> None:
    import json

    with pytest.raises(ProtocolError, match=needle):
        decode_infer_request(json.dumps({"inputs": [entry]}).encode(), {})


def test_binary_sizes_must_add_up() -> None:
    tensor = InferTensor("t", "FP32", np.zeros(2, dtype=np.float32), binary=True)
    body, headers = encode_message({"id": "x"}, "inputs", [tensor])
    with pytest.raises(ProtocolError, match="belong to no tensor"):
        decode_infer_request(body + b"extra", headers)
    with pytest.raises(ProtocolError, match="missing or truncated"):
        decode_infer_request(body[:-1], headers)


def test_error_reply_is_a_protocol_error_with_its_message() -> None:
    with pytest.raises(ProtocolError, match="queue full"):
        decode_infer_response(b'{"error": "queue full"}', {})


def test_legacy_reply_is_validated() -> None:
    assert parse_legacy_response({"pred_label": "REAL", "confidence": 0.1, "probs": [0.1, 1]}) == [
        0.1,
        1.0,
    ]
    for bad in (
        [],
        {"probs": "x"},
        {"probs": [True]},
        {"probs": [1.5]},
        {"probs": [float("nan")]},
        {"probs": [], "pred_label": "MAYBE"},
    ):
        with pytest.raises(ProtocolError):
            parse_legacy_response(bad)


@pytest.mark.parametrize(
    "shape",
    [[0, 865, 2**62], [0] + [2**31 - 1] * 3, [1] * 33, [2**31 + 1]],
    ids=["zero-size-huge", "zero-size-wide", "33-dims", "over-span"],
)
def test_shapes_numpy_cannot_make_are_protocol_errors(shape: list[int]) -> None:
    # numpy raises ValueError for these, even with no elements: a 400, never a 500
    body = json.dumps(
        {"inputs": [{"name": "images", "datatype": "BYTES", "shape": shape, "data": []}]}
    ).encode()
    with pytest.raises(ProtocolError, match="dimensions|too large"):
        decode_infer_request(body, {"content-type": "application/json"})
