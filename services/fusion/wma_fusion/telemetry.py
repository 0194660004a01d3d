"""Traces and metrics of the gateway.

The tracer provider is injected into ``create_app`` (tests pass one with an
in-memory exporter); :func:`make_tracer_provider` builds the production one from
the ``telemetry`` config and the standard ``OTEL_*`` variables with the model
server's exporter rules, and refuses values it cannot honour (an unknown
exporter, an OTLP protocol other than HTTP/protobuf) so that a typo never
silently turns tracing off. The app's lifespan shuts the
provider down, which flushes queued spans before the process exits.
:class:`Metrics` holds a per-app Prometheus registry, so two apps in one process
never collide.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from wma_wire.tracing import tracer_provider_from_env

from wma_fusion.config import TelemetryConfig
from wma_fusion.errors import ConfigError

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 30.0)


def make_tracer_provider(
    telemetry: TelemetryConfig, env: Mapping[str, str] | None = None
) -> TracerProvider:
    """A provider exporting to console and/or OTLP/HTTP (``OTEL_EXPORTER_OTLP_*`` apply),
    built by :func:`wma_wire.tracing.tracer_provider_from_env` (the model server's too).

    ``telemetry.traces_exporter`` wins over ``OTEL_TRACES_EXPORTER`` (a comma-separated
    list, default ``none``); ``telemetry.service_name``, when set in the config, wins
    over ``OTEL_SERVICE_NAME`` (default ``wma-gateway``). Raises :class:`ConfigError`
    for an unsupported exporter or OTLP protocol.
    """
    environ = os.environ if env is None else env
    explicit = "service_name" in telemetry.model_fields_set
    name = telemetry.service_name if explicit else environ.get("OTEL_SERVICE_NAME") or "wma-gateway"
    # The config's settings win over the variables: hand them over as the variables.
    resolved = {**environ, "OTEL_SERVICE_NAME": name}
    if telemetry.traces_exporter:
        resolved["OTEL_TRACES_EXPORTER"] = telemetry.traces_exporter
    try:
        provider = tracer_provider_from_env(name, resolved)
    except ValueError as exc:  # "VARIABLE='value' is not supported; ..."
        variable, _, problem = str(exc).partition("=")
        raise ConfigError(variable, problem) from None
    # No exporter: still an SDK provider (the spans are made and go nowhere).
    return provider or TracerProvider(resource=Resource.create({"service.name": name}))


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
        self.breaker_transitions = Counter(
            "wma_gateway_breaker_transitions",
            "A member's circuit breaker changing state, by the state it moved to.",
            ["model", "to"],
            registry=r,
        )

    def record_reload(self, ok: bool) -> None:
        self.reloads.labels(result="ok" if ok else "failed").inc()
