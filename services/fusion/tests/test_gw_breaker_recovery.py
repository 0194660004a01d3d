"""The breaker recovery in-process: a member that comes back is probed on its
readiness endpoint and its breaker closed at once; each transition is counted and
is an event on a span. The gateway and a mock model server run in-process; the
member is "down" (connection refused) while the test says so."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_harness import MOCK_MEMBER_HOST, Hosts, ServeGateway, WriteConfig
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from wma_local.samples import grey_frame, write_synthetic_bundle

pytestmark = pytest.mark.anyio
MEMBER = "9rfa62j1"


class Switchable(httpx.AsyncBaseTransport):
    """The member's transport; refuses every connection while ``down``."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.down = False
        self.readiness_probes = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/health/ready":
            self.readiness_probes += 1
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


async def test_an_open_breaker_closes_once_the_member_is_ready_and_transitions_show(
    tmp_path: Path, write_config: WriteConfig, serve_gateway: ServeGateway, mock_member_app: Any
) -> None:
    write_synthetic_bundle(tmp_path / "bundle.json", [MEMBER])
    config = write_config(
        tmp_path / "gw.yaml",
        {MEMBER: f"http://{MOCK_MEMBER_HOST}"},
        tmp_path / "bundle.json",
        fanout={"connect_retries": 0, "breaker": {"failure_threshold": 1, "reset_timeout_s": 60}},
        reload={"enabled": False},
    )
    members = Switchable(Hosts({MOCK_MEMBER_HOST: mock_member_app}))
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    files = [("files", ("f.png", grey_frame(50), "image/png"))]
    async with serve_gateway(config, members=members, tracer_provider=provider) as client:
        members.down = True
        down = await client.post("/v1/analyze?participant_id=p", files=files)
        assert down.status_code == 503
        circuit = (await client.get("/readyz")).json()["models"][MEMBER]["circuit"]
        assert circuit == "open"
        await asyncio.sleep(0.6)  # probes at 0.25 s and 0.75 s... meet a refused port
        members.down = False
        start = time.monotonic()
        while (await client.get("/readyz")).json()["models"][MEMBER]["circuit"] != "closed":
            assert time.monotonic() - start < 5.0, "the breaker never closed"
            await asyncio.sleep(0.02)
        closed_in = time.monotonic() - start
        ok = await client.post("/v1/analyze?participant_id=p", files=files)
        metrics = (await client.get("/metrics")).text
    print(f"\nbreaker closed {closed_in:.2f} s after the member came back")
    assert closed_in < 2.0  # the backoff is capped at 1 s; reset_timeout_s is 60
    assert ok.status_code == 200 and ok.json()["models"][MEMBER]["status"] == "ok"
    assert members.readiness_probes >= 2
    for to in ("open", "closed"):
        line = f'wma_gateway_breaker_transitions_total{{model="{MEMBER}",to="{to}"}} 1.0'
        assert line in metrics
    assert f'wma_gateway_circuit_open{{model="{MEMBER}"}} 0.0' in metrics
    events = [
        (s.name, dict(e.attributes or {}))
        for s in spans.get_finished_spans()
        for e in s.events
        if e.name == "breaker transition"
    ]
    opened = [n for n, a in events if a["wma.breaker.to"] == "open"]
    closed = [n for n, a in events if a["wma.breaker.to"] == "closed"]
    # on the span of the member call's attempt at its (only) replica
    assert opened == [f"replica {MOCK_MEMBER_HOST}"]
    assert {a["wma.replica"] for _, a in events} == {MOCK_MEMBER_HOST}
    assert closed == [f"breaker probe {MEMBER}"]  # on the probe's own span
