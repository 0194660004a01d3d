"""The legacy path's circuit breaker and time budget, as a member's.

A test-local legacy server that can fail (HTTP 500) or hold its answer until the
test releases it, and a mock model server as the ensemble; the gateway and both
run in-process (ASGI transports).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from gateway_harness import (
    MOCK_MEMBER_HOST,
    Hosts,
    ServeGateway,
    analyze_frames,
    write_gateway_config,
)
from legacy_server import LegacyServer
from wma_core import MemberStatus
from wma_fusion.breaker import BreakerState, CircuitBreaker
from wma_fusion.rollout.config import LegacyPath
from wma_fusion.rollout.legacy import run_legacy
from wma_fusion.state import StateHolder, load_state
from wma_local.samples import grey_frame
from wma_local.stack import DEFAULT_BUNDLE

FRAMES = [grey_frame(60)]
MEMBER = "9rfa62j1"
KEY_ENV = {"WMA_RECORD_HASH_KEY": "k"}


LEGACY_HOST = "legacy"


@pytest.fixture
def legacy() -> Iterator[LegacyServer]:
    server = LegacyServer()  # in-process: its app, behind Hosts
    yield server
    server.release.set()


@pytest.fixture
def members(mock_member_app: Any, legacy: LegacyServer) -> Hosts:
    return Hosts({MOCK_MEMBER_HOST: mock_member_app, LEGACY_HOST: legacy.app})


MEMBER_URL, LEGACY_URL = f"http://{MOCK_MEMBER_HOST}", f"http://{LEGACY_HOST}"


def legacy_config(path: Path, member: str, legacy: str, **rollout: Any) -> Path:
    """Legacy mode (unless ``rollout`` says otherwise), breakers that open after 2 failures."""
    return write_gateway_config(
        path,
        {MEMBER: member},
        DEFAULT_BUNDLE,
        fanout={"deadline_s": 10.0, "breaker": {"failure_threshold": 2, "reset_timeout_s": 1}},
        reload={"enabled": False},
        rollout={"mode": "legacy", "legacy": {"endpoint": legacy, "timeout_s": 10.0}, **rollout},
    )


async def metric(client: httpx.AsyncClient, prefix: str) -> float:
    lines = (await client.get("/metrics")).text.splitlines()
    return sum(float(x.split()[-1]) for x in lines if x.startswith(prefix))


@pytest.mark.anyio
async def test_failing_legacy_model_opens_its_breaker_and_recovers(
    tmp_path: Path, legacy: LegacyServer, members: Hosts, serve_gateway: ServeGateway
) -> None:
    legacy.failing = True
    config = legacy_config(tmp_path / "g.yaml", MEMBER_URL, LEGACY_URL)
    async with serve_gateway(config, members=members, env=KEY_ENV) as client:
        statuses = [await analyze_frames(client, FRAMES, participant_id="p") for _ in range(3)]
        assert [r.status_code for r in statuses] == [503, 503, 503]
        assert [r.json()["legacy_status"] for r in statuses] == ["error", "error", "circuit_open"]
        assert "circuit breaker is open" in statuses[2].json()["error"]
        assert legacy.calls == 2  # the open breaker did not call the model
        assert await metric(client, 'wma_gateway_circuit_open{model="legacy"}') == 1.0
        failures = 'wma_rollout_path_failures_total{path="legacy",status="circuit_open"}'
        assert await metric(client, failures) == 1.0
        legacy.failing = False
        end = time.monotonic() + 20  # after reset_timeout_s one probe goes through
        while (
            response := await analyze_frames(client, FRAMES, participant_id="p")
        ).status_code != 200:
            assert response.json()["legacy_status"] == "circuit_open"
            assert time.monotonic() < end, "the breaker never let a probe through"
            await asyncio.sleep(0.1)
        assert response.json()["served_by"] == "legacy"
        assert await metric(client, 'wma_gateway_circuit_open{model="legacy"}') == 0.0


@pytest.mark.anyio
async def test_a_slow_shadowed_legacy_model_does_not_hold_the_ensemble_answer(
    tmp_path: Path, legacy: LegacyServer, members: Hosts, serve_gateway: ServeGateway
) -> None:
    legacy.hold = True
    records = tmp_path / "records.jsonl"
    config = legacy_config(
        tmp_path / "g.yaml",
        MEMBER_URL,
        LEGACY_URL,
        mode="canary",
        canary_percent=100.0,
        records={"log": False, "file": str(records)},
    )
    async with serve_gateway(config, members=members, env=KEY_ENV) as client:
        response = await analyze_frames(client, FRAMES, participant_id="p")
        assert response.status_code == 200, response.text
        assert response.json()["served_by"] == "ensemble"
        # the shadow call reaches the legacy model and waits there
        end = time.monotonic() + 10
        while legacy.held < 1:
            assert time.monotonic() < end, "the shadow legacy call never arrived"
            await asyncio.sleep(0.02)
        legacy.release.set()  # only now can the legacy model answer
    # leaving the lifespan drained the shadow task: the record is written
    (record,) = [json.loads(line) for line in records.read_text().splitlines()]
    # The legacy answer ("ok") came after the release, which came after the served
    # answer: the ensemble answer did not wait for the legacy model.
    assert record["legacy"]["status"] == "ok" and record["ensemble"]["status"] == "ok"


@pytest.mark.anyio
async def test_a_serving_legacy_call_is_bounded_by_the_fanout_deadline(
    tmp_path: Path, legacy: LegacyServer, members: Hosts, serve_gateway: ServeGateway
) -> None:
    legacy.hold = True
    config = legacy_config(tmp_path / "g.yaml", MEMBER_URL, LEGACY_URL)
    doc = yaml.safe_load(config.read_text())
    doc["fanout"]["deadline_s"] = 0.5  # smaller than legacy.timeout_s (10 s)
    config.write_text(yaml.safe_dump(doc))
    async with serve_gateway(config, members=members, env=KEY_ENV) as client:
        try:
            response = await analyze_frames(client, FRAMES, participant_id="p")
        finally:
            legacy.release.set()
    assert response.status_code == 503
    assert response.json()["legacy_status"] == "timeout"
    assert "no reply within 0.50s" in response.json()["error"]


def test_the_legacy_timeout_applies_when_it_is_below_the_deadline() -> None:
    async def slow(_request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(10)
        return httpx.Response(200, json={"probs": [0.1]})

    path = LegacyPath.model_validate({"endpoint": "http://l.test", "timeout_s": 0.2})

    async def go() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as client:
            breaker = CircuitBreaker(5, 10.0)
            return await run_legacy(client, path, [grey_frame(1)], breaker=breaker, deadline_s=30.0)

    result = asyncio.run(go())
    assert result.status is MemberStatus.TIMEOUT and "within 0.20s" in (result.error or "")


def test_the_legacy_breaker_survives_a_reload_while_its_endpoint_is_unchanged(
    tmp_path: Path,
) -> None:
    config = legacy_config(tmp_path / "g.yaml", "http://127.0.0.1:9", "http://127.0.0.1:10")
    holder = StateHolder(load_state(config), config)
    breaker = holder.state.legacy_breaker
    assert isinstance(breaker, CircuitBreaker)
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN

    doc = yaml.safe_load(config.read_text())
    doc["rollout"]["legacy"]["threshold"] = 0.6  # same endpoint, other setting
    config.write_text(yaml.safe_dump(doc))
    assert holder.reload_if_changed() is True
    assert holder.state.legacy_breaker is breaker
    assert holder.state.config.rollout.legacy is not None
    assert holder.state.config.rollout.legacy.threshold == 0.6

    doc["rollout"]["legacy"]["endpoint"] = "http://127.0.0.1:11"  # a new legacy server
    config.write_text(yaml.safe_dump(doc))
    assert holder.reload_if_changed() is True
    fresh = holder.state.legacy_breaker
    assert fresh is not None and fresh is not breaker and fresh.state is BreakerState.CLOSED
