"""Open Inference Protocol v2 endpoints: health, metadata and ``infer``.

``infer`` takes input ``images`` (BYTES [N], encoded JPEG/PNG; base64 in JSON
mode) or ``pixels`` (UINT8 [N, H, W, 3] RGB; with ``shared_memory`` on, also by
reference to a registered region, see :mod:`routes_shm`) and answers ``probs`` (FP32 [N],
-1.0 where a frame was not scored) and ``status`` (BYTES [N]: ok, undecodable,
no_face), in JSON or with the binary tensor data extension, as requested.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from wma_wire.openapi import error_responses
from wma_wire.protocol import (
    OUTPUTS,
    InferRequest,
    ProtocolError,
    decode_infer_request,
    encode_infer_response,
)
from wma_wire.shm import RegionRegistry

from wma_model_server import __version__
from wma_model_server.exceptions import BadRequestError, ModelNotFoundError
from wma_model_server.pipeline import FrameScores, ScoringPipeline
from wma_model_server.state import ServerState, StateDep, read_body

__all__ = ["router"]

router = APIRouter(prefix="/v2")

_TENSOR = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string", "enum": ["images", "pixels"]},
        "datatype": {"type": "string", "enum": ["BYTES", "UINT8"]},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "data": {"type": "array", "description": "base64 strings (images) or 0-255 (pixels)"},
        "parameters": {
            "type": "object",
            "description": "binary_data_size with the binary extension; shared_memory_region, "
            "shared_memory_offset, shared_memory_byte_size with shared memory",
        },
    },
}
_OUTPUT = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "enum": ["probs", "status"]},
        "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}},
    },
}
_INFER_JSON = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {
            "type": "object",
            "properties": {
                "recrop": {"type": "boolean"},
                "binary_data_output": {"type": "boolean"},
            },
        },
        "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": _TENSOR},
        "outputs": {"type": "array", "items": _OUTPUT},
    },
}
_INFER_REPLY = {
    "type": "object",
    "required": ["model_name", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {"type": "array", "items": {"type": "object"}},
    },
}
_BINARY = "the JSON header, then the tensors' bytes (binary tensor data extension)"
_INFER_DOC: dict[str, Any] = {
    "parameters": [
        {
            "name": "Inference-Header-Content-Length",
            "in": "header",
            "required": False,
            "schema": {"type": "integer", "minimum": 1},
            "description": "with the binary extension: the JSON header's length in bytes",
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _INFER_JSON},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary", "description": _BINARY}
            },
        },
    },
}
_INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "per-frame 'probs' (FP32, -1 where not scored) and 'status' (BYTES)",
        "content": {
            "application/json": {"schema": _INFER_REPLY},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary", "description": _BINARY}
            },
        },
    },
    **error_responses(400, 404, 413, 415, 429, 500, 503),
}


def _check_model(state: ServerState, model_id: str) -> None:
    if model_id != state.settings.model_id:
        raise ModelNotFoundError(
            f"unknown model {model_id!r}; this server serves {state.settings.model_id!r}"
        )


@router.get("")
async def server_metadata(state: StateDep) -> dict[str, Any]:
    extensions = ["binary_tensor_data"]
    if state.regions is not None:
        extensions.append("system_shared_memory")
    return {"name": "wma-model-server", "version": __version__, "extensions": extensions}


@router.get("/health/live")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", responses=error_responses(503))
async def ready(state: StateDep) -> dict[str, bool]:
    state.require_pipeline()
    return {"ready": True}


@router.get("/models/{model_id}", responses=error_responses(404))
async def model_metadata(model_id: str, state: StateDep) -> dict[str, Any]:
    _check_model(state, model_id)
    return {
        "name": model_id,
        "versions": ["1"],
        "platform": f"wma-{state.settings.backend}",
        "inputs": [
            {"name": "images", "datatype": "BYTES", "shape": [-1]},
            {"name": "pixels", "datatype": "UINT8", "shape": [-1, -1, -1, 3]},
        ],
        "outputs": [
            {"name": "probs", "datatype": "FP32", "shape": [-1]},
            {"name": "status", "datatype": "BYTES", "shape": [-1]},
        ],
    }


@router.get("/models/{model_id}/ready", responses=error_responses(404, 503))
async def model_ready(model_id: str, state: StateDep) -> dict[str, Any]:
    _check_model(state, model_id)
    state.require_pipeline()
    return {"name": model_id, "ready": True}


@dataclass(frozen=True)
class _Call:
    """A decoded infer request: what to score and which outputs to answer with."""

    request: InferRequest
    outputs: list[str]
    recrop: bool
    frames: list[bytes] | None  # input 'images', base64-decoded
    pixels: np.ndarray[Any, np.dtype[np.uint8]] | None  # input 'pixels'


def _decode_call(body: bytes, headers: dict[str, str], regions: RegionRegistry | None) -> _Call:
    # CPU-bound (JSON, base64 of up to max_request_bytes, a copy out of shared
    # memory): runs in a worker thread.
    request = decode_infer_request(body, headers, regions)
    wanted = list(request.outputs) or list(OUTPUTS)
    unknown = [name for name in wanted if name not in OUTPUTS]
    if unknown:
        raise ProtocolError(f"unknown output {unknown[0]!r}; outputs are 'probs' and 'status'")
    if set(request.inputs) - {"images", "pixels"} or len(request.inputs) != 1:
        raise BadRequestError("send exactly one input: 'images' (BYTES) or 'pixels' (UINT8)")
    recrop = request.parameters.get("recrop", False)
    if not isinstance(recrop, bool):
        raise BadRequestError("parameter 'recrop' must be a boolean")
    if "images" in request.inputs:
        return _Call(request, wanted, recrop, request.images(), None)
    tensor = request.inputs["pixels"]
    pixels = tensor.data
    if tensor.datatype != "UINT8" or pixels.ndim != 4 or pixels.shape[3] != 3:
        raise BadRequestError("input 'pixels' must be UINT8 with shape [N, H, W, 3]")
    return _Call(request, wanted, recrop, None, pixels)


async def _score(pipeline: ScoringPipeline, call: _Call) -> FrameScores:
    if call.frames is not None:
        return await pipeline.score_encoded(call.frames, recrop=call.recrop, debug=False)
    assert call.pixels is not None
    return await pipeline.score_pixels(call.pixels, recrop=call.recrop)


@router.post(
    "/models/{model_id}/infer",
    response_class=Response,
    responses=_INFER_RESPONSES,
    openapi_extra=_INFER_DOC,
)
async def infer(model_id: str, request: Request, state: StateDep) -> Response:
    _check_model(state, model_id)
    pipeline = state.require_pipeline()
    body = await read_body(request, state.settings.max_request_bytes)
    call = await asyncio.to_thread(_decode_call, body, dict(request.headers), state.regions)
    scores = await _score(pipeline, call)
    arrays = {
        "probs": scores.probs,
        "status": np.array([s.encode() for s in scores.statuses], dtype=object),
    }
    content, headers = encode_infer_response(
        model_id,
        call.request.id,
        {name: arrays[name] for name in call.outputs},
        binary=[name for name in call.outputs if call.request.wants_binary(name)],
    )
    return Response(content=content, headers=headers)
