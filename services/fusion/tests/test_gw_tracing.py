"""The model server continues the gateway's trace: one trace id across both services."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import yaml
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from wma_fusion.app import create_app
from wma_local.samples import grey_frame
from wma_local.stack import DEFAULT_BUNDLE, GatewayThread
from wma_model_server.app import create_app as create_model_server
from wma_model_server.settings import ModelServerSettings


def provider_with(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def test_model_server_span_shares_the_gateway_trace(tmp_path: Path) -> None:
    ms_spans, gw_spans = InMemorySpanExporter(), InMemorySpanExporter()
    settings = ModelServerSettings(model_id="9rfa62j1", backend="mock")
    model = GatewayThread(create_model_server(settings, tracer_provider=provider_with(ms_spans)))
    model.start()
    config = tmp_path / "g.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "models": [{"id": "9rfa62j1", "endpoint": model.url}],
                "calibrators": {"path": str(DEFAULT_BUNDLE)},
            }
        )
    )
    gateway = GatewayThread(create_app(config, tracer_provider=provider_with(gw_spans))).start()
    try:
        deadline = time.monotonic() + 30
        while httpx.get(f"{model.url}/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ms_spans.clear()
        files = [("files", ("a.png", grey_frame(80), "image/png"))]
        response = httpx.post(
            f"{gateway.url}/v1/analyze", data={"participant_id": "t"}, files=files, timeout=30
        )
        assert response.status_code == 200, response.text
    finally:
        gateway.stop()
        model.stop()
    (call,) = [s for s in gw_spans.get_finished_spans() if s.name == "model 9rfa62j1"]
    served = [
        s
        for s in ms_spans.get_finished_spans()
        if s.parent is not None and s.parent.span_id == call.context.span_id
    ]
    assert served, [s.name for s in ms_spans.get_finished_spans()]
    assert {s.context.trace_id for s in served} == {call.context.trace_id}
