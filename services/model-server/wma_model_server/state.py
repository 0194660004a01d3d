"""Per-app runtime state (pipeline, load error) and request helpers for routes
(:func:`read_body` is :mod:`wma_wire.body`'s, shared with the gateway)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from wma_wire.body import read_body
from wma_wire.shm import RegionRegistry

from wma_model_server.exceptions import NotReadyError
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
    # the registered shared-memory regions; None: the extension is off
    regions: RegionRegistry | None = None

    def require_pipeline(self) -> ScoringPipeline:
        if self.pipeline is None:
            reason = f"model failed to load: {self.error}" if self.error else "model is loading"
            raise NotReadyError(f"model {self.settings.model_id} is not ready ({reason})")
        return self.pipeline


async def get_state(request: Request) -> ServerState:
    # async: FastAPI runs a plain ``def`` dependency in its thread pool (a hop per request)
    state: ServerState = request.app.state.model_server
    return state


StateDep = Annotated[ServerState, Depends(get_state)]
