"""Traces and metrics of the gateway.

The tracer provider is injected into ``create_app`` (tests pass one with an
in-memory exporter); :func:`make_tracer_provider` builds the production one from
the ``telemetry`` config and the standard ``OTEL_*`` variables. :class:`Metrics`
holds a per-app Prometheus registry, so two apps in one process never collide.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from wma_fusion.config import TelemetryConfig

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 30.0)


def make_tracer_provider(
    telemetry: TelemetryConfig, env: Mapping[str, str] | None = None
) -> TracerProvider:
    """A provider exporting to console or OTLP/HTTP (``OTEL_EXPORTER_OTLP_*`` apply)."""
    environ = os.environ if env is None else env
    exporter = telemetry.traces_exporter or environ.get("OTEL_TRACES_EXPORTER", "none")
    provider = TracerProvider(resource=Resource.create({"service.name": telemetry.service_name}))
    if exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


class Metrics:
    """The gateway's Prometheus metrics, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_seconds = Histogram(
            "wma_gateway_request_seconds",
            "End-to-end latency of /v1/analyze, by HTTP status class.",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_seconds = Histogram(
            "wma_gateway_model_call_seconds",
            "Latency of one call to an ensemble member.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_outcomes = Counter(
            "wma_gateway_model_calls",
            "Calls to ensemble members by status (ok, no_faces, timeout, error, circuit_open).",
            ["model", "status"],
            registry=r,
        )
        self.verdicts = Counter(
            "wma_gateway_verdicts", "Answers by verdict.", ["verdict"], registry=r
        )
        self.banners = Counter("wma_gateway_banners", "Answers by banner.", ["banner"], registry=r)
        self.degraded = Counter(
            "wma_gateway_degraded_answers",
            "Answers given with at least one member missing.",
            registry=r,
        )
        self.reloads = Counter(
            "wma_gateway_config_reloads",
            "Config reloads by result (ok, failed).",
            ["result"],
            registry=r,
        )
        self.circuit_open = Gauge(
            "wma_gateway_circuit_open",
            "1 while a member's circuit breaker is open or half-open.",
            ["model"],
            registry=r,
        )

    def record_reload(self, ok: bool) -> None:
        self.reloads.labels(result="ok" if ok else "failed").inc()
