"""Metrics per app registry and server spans that continue the caller's trace."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

pytestmark = pytest.mark.anyio
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


async def test_span_continues_incoming_w3c_trace_context(serve: Any, png: Any, form: Any) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with serve(app_kwargs={"tracer_provider": provider}) as client:
        exporter.clear()
        await client.post(
            "/check_frame_batch",
            files=form([png(1)]),
            headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
        )
    (span,) = [s for s in exporter.get_finished_spans() if "check_frame_batch" in s.name]
    assert span.name == "POST /check_frame_batch"
    assert span.kind is SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT_ID
    assert span.attributes is not None and span.attributes["http.response.status_code"] == 200


async def test_metrics_count_requests_by_endpoint_and_status(
    serve: Any, png: Any, form: Any
) -> None:
    async with serve() as client, serve() as other:  # two apps, two registries
        await client.post("/check_frame_batch", files=form([png(1)]))
        await client.post("/check_frame_batch", files=[("files", ("a", b"x", "text/plain"))])
        await client.get("/no/such/path")
        text = (await client.get("/metrics")).text
        other_text = (await other.get("/metrics")).text
    assert 'wma_ms_requests_total{endpoint="/check_frame_batch",status="200"} 1.0' in text
    assert 'wma_ms_requests_total{endpoint="/check_frame_batch",status="415"} 1.0' in text
    assert 'wma_ms_requests_total{endpoint="unmatched",status="404"} 1.0' in text
    assert 'wma_ms_frames_total{status="ok"} 1.0' in text
    assert "wma_ms_inference_seconds_count 1.0" in text
    assert "check_frame_batch" not in other_text
