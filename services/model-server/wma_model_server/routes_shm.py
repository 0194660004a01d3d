"""The system shared memory extension of OIP v2 (Triton's API), when it is enabled.

With ``shared_memory`` on, a caller on this host registers a POSIX shared-memory
region once and then sends infer inputs by reference (``shared_memory_region``,
``shared_memory_offset``, ``shared_memory_byte_size`` in the input's parameters);
:class:`wma_wire.shm.RegionRegistry` maps the regions. Off (the default), every
route here answers 404 saying so, and an infer input by reference is a 400.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from wma_wire.openapi import error_responses
from wma_wire.shm import NAME_PATTERN, RegionRegistry

from wma_model_server.exceptions import ModelNotFoundError
from wma_model_server.state import ServerState, StateDep

__all__ = ["router"]

router = APIRouter(prefix="/v2/systemsharedmemory")

RegionName = Annotated[str, PathParam(pattern=NAME_PATTERN, description="the region's name")]


class RegionRegistration(BaseModel):
    """Where the region is: ``byte_size`` bytes at ``offset`` of the file ``/dev/shm/{key}``."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=NAME_PATTERN)
    offset: int = Field(default=0, ge=0)
    byte_size: int = Field(ge=1)


class SharedMemoryOff(ModelNotFoundError):
    """The extension is not enabled on this server (a 404, as for an unknown route)."""


def _regions(state: ServerState) -> RegionRegistry:
    if state.regions is None:
        raise SharedMemoryOff(
            "system shared memory is not enabled on this server "
            "(WMA_MS_SHARED_MEMORY=true or --shared-memory)"
        )
    return state.regions


@router.get("/status", responses=error_responses(404))
async def status(state: StateDep) -> list[dict[str, Any]]:
    return _regions(state).status()


@router.get("/region/{name}/status", responses=error_responses(400, 404))
async def region_status(name: RegionName, state: StateDep) -> list[dict[str, Any]]:
    found = _regions(state).status(name)
    if not found:
        raise ModelNotFoundError(f"shared memory region {name!r} is not registered")
    return found


@router.post("/region/{name}/register", responses=error_responses(400, 404))
async def register(name: RegionName, region: RegionRegistration, state: StateDep) -> dict[str, Any]:
    _regions(state).register(name, region.key, region.offset, region.byte_size)
    return {"registered": name}


@router.post("/region/{name}/unregister", responses=error_responses(400, 404))
async def unregister(name: RegionName, state: StateDep) -> dict[str, Any]:
    return {"unregistered": _regions(state).unregister(name)}


@router.post("/unregister", responses=error_responses(404))
async def unregister_all(state: StateDep) -> dict[str, Any]:
    return {"unregistered": _regions(state).unregister(None)}
