"""Readiness probes of the ensemble members (and of the rollout's legacy model).

An OIP replica is reachable when ``GET /v2/health/ready`` answers 200; a legacy
one (which has no health route) when its server answers any HTTP response; a
member is reachable when one of its replicas is, and ``/readyz`` lists each
replica (reachable, circuit, calls in flight) and ``replicas_up``.
Probes run in parallel with a short timeout and never touch the breakers. The
gateway is ready while at least one model that can serve is reachable: a member,
or the legacy model when the rollout mode lets it serve (not ``ensemble``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from wma_fusion.breaker import BreakerState
from wma_fusion.replicas import Replica
from wma_fusion.rollout.config import RolloutMode
from wma_fusion.state import Member, RuntimeState

PROBE_TIMEOUT = httpx.Timeout(1.0)


async def probe(client: httpx.AsyncClient, base_url: str, protocol: str) -> dict[str, Any]:
    url = f"{base_url}/v2/health/ready" if protocol == "oip" else f"{base_url}/"
    try:
        response = await client.get(url, timeout=PROBE_TIMEOUT)
    except httpx.HTTPError as exc:
        return {"reachable": False, "detail": f"{type(exc).__name__}: {exc}"[:200]}
    reachable = response.status_code == 200 if protocol == "oip" else True
    return {"reachable": reachable, "detail": f"HTTP {response.status_code}"}


async def probe_replica(
    client: httpx.AsyncClient, member: Member, replica: Replica
) -> dict[str, Any]:
    return await probe(client, replica.url, member.entry.protocol)


async def probe_member(client: httpx.AsyncClient, member: Member) -> dict[str, Any]:
    """Every replica probed in parallel: the member is reachable when one is."""
    replicas = list(member.replicas.replicas)
    results = await asyncio.gather(*(probe_replica(client, member, r) for r in replicas))
    report = {
        r.label: {**p, "circuit": r.breaker.state.value, "in_flight": r.in_flight}
        for r, p in zip(replicas, results, strict=True)
    }
    up = [p for p in results if p["reachable"]]
    if results:
        detail = (up or results)[0]["detail"]
    else:
        detail = "no replica known (none discovered yet)"
    return {
        "reachable": bool(up),
        "detail": detail,
        "replicas_up": len(up),
        "replicas": report,
    }


async def _probe_legacy(client: httpx.AsyncClient, state: RuntimeState) -> dict[str, Any] | None:
    legacy = state.config.rollout.legacy
    if legacy is None:
        return None
    result = await probe(client, legacy.base_url, "legacy")
    breaker = state.legacy_breaker
    return {**result, "circuit": (breaker.state if breaker else BreakerState.CLOSED).value}


async def readiness(client: httpx.AsyncClient, state: RuntimeState) -> tuple[bool, dict[str, Any]]:
    """Whether at least one model that can serve is reachable, and the report."""
    legacy, *probes = await asyncio.gather(
        _probe_legacy(client, state), *(probe_member(client, m) for m in state.members)
    )
    models = {
        m.id: {**p, "protocol": m.entry.protocol, "circuit": m.replicas.state.value}
        for m, p in zip(state.members, probes, strict=True)
    }
    ready = any(p["reachable"] for p in probes)
    if legacy is not None and state.config.rollout.mode is not RolloutMode.ENSEMBLE:
        ready = ready or legacy["reachable"]
    body = {
        "ready": ready,
        "config_sha256": state.config_sha256,
        "calibrators_sha256": state.bundle.sha256,
        "thresholds_source": state.thresholds_source,
        "rollout_mode": state.config.rollout.mode.value,
        "models": models,
    }
    if legacy is not None:
        body["legacy"] = legacy
    return ready, body
