"""Readiness probes of the ensemble members.

An OIP member is reachable when ``GET /v2/health/ready`` answers 200; a legacy
member (which has no health route) when its server answers any HTTP response.
Probes run in parallel with a short timeout and never touch the breakers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from wma_fusion.state import Member, RuntimeState

PROBE_TIMEOUT = httpx.Timeout(1.0)


async def probe_member(client: httpx.AsyncClient, member: Member) -> dict[str, Any]:
    entry = member.entry
    url = f"{entry.base_url}/v2/health/ready" if entry.protocol == "oip" else f"{entry.base_url}/"
    try:
        response = await client.get(url, timeout=PROBE_TIMEOUT)
    except httpx.HTTPError as exc:
        return {"reachable": False, "detail": f"{type(exc).__name__}: {exc}"[:200]}
    reachable = response.status_code == 200 if entry.protocol == "oip" else True
    return {"reachable": reachable, "detail": f"HTTP {response.status_code}"}


async def readiness(client: httpx.AsyncClient, state: RuntimeState) -> tuple[bool, dict[str, Any]]:
    """Whether at least one member is reachable, and the per-member report."""
    probes = await asyncio.gather(*(probe_member(client, m) for m in state.members))
    models = {
        m.id: {**probe, "protocol": m.entry.protocol, "circuit": m.breaker.state.value}
        for m, probe in zip(state.members, probes, strict=True)
    }
    ready = any(p["reachable"] for p in probes)
    body = {
        "ready": ready,
        "config_sha256": state.config_sha256,
        "calibrators_sha256": state.bundle.sha256,
        "thresholds_source": state.thresholds_source,
        "models": models,
    }
    return ready, body
