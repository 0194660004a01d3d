"""The model server continues the gateway's trace: one trace id across both services.

Both run in-process (ASGI transports); the trace context crosses as the
``traceparent`` header of the member call, as over the network.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gateway_harness import (
    MOCK_MEMBER_HOST,
    Hosts,
    ServeGateway,
    WriteConfig,
    analyze_frames,
    running_mock_member,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from wma_local.samples import grey_frame
from wma_local.stack import DEFAULT_BUNDLE


def provider_with(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.mark.anyio
async def test_model_server_span_shares_the_gateway_trace(
    tmp_path: Path, write_config: WriteConfig, serve_gateway: ServeGateway
) -> None:
    ms_spans, gw_spans = InMemorySpanExporter(), InMemorySpanExporter()
    config = write_config(
        tmp_path / "g.yaml", {"9rfa62j1": f"http://{MOCK_MEMBER_HOST}"}, DEFAULT_BUNDLE
    )
    async with running_mock_member(tracer_provider=provider_with(ms_spans)) as model:
        members = Hosts({MOCK_MEMBER_HOST: model})
        async with serve_gateway(
            config, members=members, tracer_provider=provider_with(gw_spans)
        ) as gateway:
            ms_spans.clear()
            response = await analyze_frames(gateway, [grey_frame(80)], participant_id="t")
            assert response.status_code == 200, response.text
    (model_call,) = [s for s in gw_spans.get_finished_spans() if s.name == "model 9rfa62j1"]
    # the call's attempt at a replica is a child span naming it; the member's span its child
    (call,) = [s for s in gw_spans.get_finished_spans() if s.name == f"replica {MOCK_MEMBER_HOST}"]
    assert call.parent is not None and call.parent.span_id == model_call.context.span_id
    assert (call.attributes or {})["wma.replica"] == MOCK_MEMBER_HOST
    served = [
        s
        for s in ms_spans.get_finished_spans()
        if s.parent is not None and s.parent.span_id == call.context.span_id
    ]
    assert served, [s.name for s in ms_spans.get_finished_spans()]
    assert {s.context.trace_id for s in served} == {call.context.trace_id}
