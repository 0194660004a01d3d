"""``POST /check_frame_batch``: the old model-server API, kept wire-compatible.

Multipart field ``files`` (repeated JPEG/PNG frames); reply
``{"pred_label", "confidence", "probs"}`` where ``probs`` leaves out frames that
fail to decode or have no face, ``confidence`` is their mean and the label is
FAKE when ``confidence > threshold``. ``num_frames``/``num_scored`` are additive.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from wma_model_server.legacy_form import parse_frame_parts
from wma_model_server.state import StateDep, read_body

__all__ = ["router"]

router = APIRouter()


@router.post("/check_frame_batch")
async def check_frame_batch(
    request: Request,
    state: StateDep,
    model_type: Literal["base", "custom"] = "custom",
    threshold: Annotated[float, Query(ge=0.0, le=1.0)] = 0.5,
    yolo_conf_threshold: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
    recrop: bool = False,
    debug: bool = False,
) -> dict[str, Any]:
    # model_type and yolo_conf_threshold are accepted for compatibility; the
    # served checkpoint and the Haar face detector do not use them.
    pipeline = state.require_pipeline()
    settings = state.settings
    body = await read_body(request, settings.max_request_bytes)
    frames = await asyncio.to_thread(
        parse_frame_parts,
        body,
        request.headers.get("content-type", ""),
        max_parts=settings.max_files,
    )
    scores = await pipeline.score_encoded(frames, recrop=recrop, debug=debug)
    probs = scores.scored
    confidence = sum(probs) / len(probs) if probs else 0.0
    return {
        "pred_label": "FAKE" if probs and confidence > threshold else "REAL",
        "confidence": confidence,
        "probs": probs,
        "num_frames": len(frames),
        "num_scored": len(probs),
    }
