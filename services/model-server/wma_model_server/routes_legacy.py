"""The old model-server API, kept wire-compatible: ``/check_frame_batch``,
``/check_frame`` and ``/ping``.

``/check_frame_batch``: multipart field ``files`` (repeated JPEG/PNG frames); reply
``{"pred_label", "confidence", "probs"}`` where ``probs`` leaves out frames that
fail to decode or have no face, ``confidence`` is their mean and the label is
FAKE when ``confidence >= threshold``. ``num_frames``/``num_scored`` are additive.
``/check_frame``: one image in the field ``file``, face-cropped first as the old
server always did; reply ``{"pred_label", "fake_prob"}``, a 400 when the image
cannot be decoded or shows no face.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from wma_wire.legacy_form import BATCH_FIELD, SINGLE_FIELD, parse_frame_parts
from wma_wire.openapi import error_responses, json_response, multipart_body
from wma_wire.protocol import FRAME_STATUSES

from wma_model_server.exceptions import BadRequestError
from wma_model_server.state import StateDep, read_body

__all__ = ["router"]

router = APIRouter()
_, UNDECODABLE, NO_FACE = FRAME_STATUSES
Threshold = Annotated[float, Query(ge=0.0, le=1.0)]
YoloConf = Annotated[float | None, Query(ge=0.0, le=1.0)]
_IMAGE = {"type": "string", "format": "binary", "description": "a JPEG or PNG image"}
_PART_TYPES = "image/jpeg, image/png"  # also accepted: application/octet-stream, none
# 400 also for a query parameter out of range; 500 when the model's answer is unusable
_SCORING_ERRORS = error_responses(400, 413, 415, 429, 500, 503)
_PROB = {"type": "number", "minimum": 0.0, "maximum": 1.0}
_LABEL = {"type": "string", "enum": ["FAKE", "REAL"]}
_BATCH_REPLY = json_response(
    "per-frame fake probabilities of the frames scored (undecodable or faceless ones left out)",
    {
        "type": "object",
        "required": ["pred_label", "confidence", "probs", "num_frames", "num_scored"],
        "properties": {
            "pred_label": _LABEL,
            "confidence": _PROB,
            "probs": {"type": "array", "items": _PROB},
            "num_frames": {"type": "integer", "minimum": 0},
            "num_scored": {"type": "integer", "minimum": 0},
        },
    },
)
_SINGLE_REPLY = json_response(
    "the image's fake probability",
    {
        "type": "object",
        "required": ["pred_label", "fake_prob"],
        "properties": {"pred_label": _LABEL, "fake_prob": _PROB},
    },
)


def label(prob: float, threshold: float) -> str:
    """The old server's label: FAKE from the threshold up (a tie is FAKE)."""
    return "FAKE" if prob >= threshold else "REAL"


async def read_frames(request: Request, max_bytes: int, max_files: int, field: str) -> list[bytes]:
    """The encoded frames of the form's ``field`` parts (parsed off the event loop)."""
    body = await read_body(request, max_bytes)
    content_type = request.headers.get("content-type", "")
    return await asyncio.to_thread(
        parse_frame_parts, body, content_type, max_files=max_files, field=field
    )


@router.get("/ping")
async def ping() -> dict[str, str]:
    return {"message": "pong"}


@router.post(
    "/check_frame_batch",
    responses={**_BATCH_REPLY, **_SCORING_ERRORS},
    openapi_extra=multipart_body(
        {BATCH_FIELD: {"type": "array", "items": _IMAGE}}, [BATCH_FIELD], {BATCH_FIELD: _PART_TYPES}
    ),
)
async def check_frame_batch(
    request: Request,
    state: StateDep,
    model_type: Literal["base", "custom"] = "custom",
    threshold: Threshold = 0.5,
    yolo_conf_threshold: YoloConf = None,
    recrop: bool = False,
    debug: bool = False,
) -> dict[str, Any]:
    # model_type and yolo_conf_threshold are accepted for compatibility; the
    # served checkpoint and the Haar face detector do not use them.
    pipeline = state.require_pipeline()
    settings = state.settings
    frames = await read_frames(request, settings.max_request_bytes, settings.max_files, BATCH_FIELD)
    scores = await pipeline.score_encoded(frames, recrop=recrop, debug=debug)
    probs = scores.scored
    confidence = sum(probs) / len(probs) if probs else 0.0
    return {
        "pred_label": label(confidence, threshold) if probs else "REAL",
        "confidence": confidence,
        "probs": probs,
        "num_frames": len(frames),
        "num_scored": len(probs),
    }


@router.post(
    "/check_frame",
    responses={**_SINGLE_REPLY, **_SCORING_ERRORS},
    openapi_extra=multipart_body(
        {SINGLE_FIELD: _IMAGE}, [SINGLE_FIELD], {SINGLE_FIELD: _PART_TYPES}
    ),
)
async def check_frame(
    request: Request,
    state: StateDep,
    model_type: Literal["base", "custom"] = "custom",
    threshold: Threshold = 0.5,
    yolo_conf_threshold: YoloConf = None,
    recrop: bool = True,
    debug: bool = False,
) -> dict[str, Any]:
    # The old /check_frame always cropped the face; recrop=false is ours (a ready crop).
    pipeline = state.require_pipeline()
    frames = await read_frames(request, state.settings.max_request_bytes, 1, SINGLE_FIELD)
    if len(frames) != 1:
        raise BadRequestError(
            f"expected one JPEG or PNG image in the multipart field {SINGLE_FIELD!r}, "
            f"got {len(frames)}"
        )
    scores = await pipeline.score_encoded(frames, recrop=recrop, debug=debug)
    (status,) = scores.statuses
    if status == UNDECODABLE:
        raise BadRequestError("cannot decode image")
    if status == NO_FACE:
        raise BadRequestError("could not find a face in the image")
    prob = float(scores.probs[0])
    return {"pred_label": label(prob, threshold), "fake_prob": prob}
