"""Per-app runtime state (pipeline, load error) and request helpers for routes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from wma_model_server.exceptions import LimitExceededError, NotReadyError
from wma_model_server.pipeline import ScoringPipeline
from wma_model_server.settings import ModelServerSettings
from wma_model_server.telemetry import ServerMetrics

__all__ = ["ServerState", "StateDep", "read_body"]


@dataclass
class ServerState:
    settings: ModelServerSettings
    metrics: ServerMetrics
    pipeline: ScoringPipeline | None = None
    error: str | None = field(default=None)

    def require_pipeline(self) -> ScoringPipeline:
        if self.pipeline is None:
            reason = f"model failed to load: {self.error}" if self.error else "model is loading"
            raise NotReadyError(f"model {self.settings.model_id} is not ready ({reason})")
        return self.pipeline


def get_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.model_server
    return state


StateDep = Annotated[ServerState, Depends(get_state)]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it grows past ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise LimitExceededError(f"body of {declared} bytes exceeds max_request_bytes={limit}")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise LimitExceededError(f"body exceeds max_request_bytes={limit}")
    return bytes(body)
