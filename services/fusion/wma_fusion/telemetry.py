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
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from wma_wire.tracing import tracer_provider_from_env

from wma_fusion.config import TelemetryConfig
from wma_fusion.errors import ConfigError


class ReplicaView(Protocol):
    """What the replica gauges read of a member: its id and (url label, breaker
    state, calls in flight) per replica (:meth:`wma_fusion.state.Member.replica_view`)."""

    @property
    def id(self) -> str: ...

    def replica_view(self) -> list[tuple[str, str, int]]: ...


BREAKER_STATES = ("closed", "half_open", "open")


class _ReplicaCollector(Collector):
    def __init__(self, members: Callable[[], Iterable[ReplicaView]]) -> None:
        self._members = members

    def collect(self) -> Iterator[Metric]:
        count = GaugeMetricFamily(
            "wma_gateway_model_replicas",
            "Replicas of an ensemble member by the state of their circuit breaker.",
            labels=["model", "state"],
        )
        in_flight = GaugeMetricFamily(
            "wma_gateway_replica_in_flight",
            "Calls in flight to one replica of an ensemble member.",
            labels=["model", "replica"],
        )
        circuit = GaugeMetricFamily(
            "wma_gateway_replica_circuit_open",
            "1 while a replica's circuit breaker is open or half-open.",
            labels=["model", "replica"],
        )
        for member in self._members():
            view = member.replica_view()
            for state in BREAKER_STATES:
                count.add_metric([member.id, state], sum(s == state for _, s, _ in view))
            for label, state, n in view:
                in_flight.add_metric([member.id, label], n)
                circuit.add_metric([member.id, label], 0 if state == "closed" else 1)
        yield from (count, in_flight, circuit)


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
            "1 while no replica of a member has a closed circuit breaker (every one is "
            "open or half-open).",
            ["model"],
            registry=r,
        )
        self.unauthorized = Counter(
            "wma_gateway_unauthorized",
            "Requests refused for their bearer token (WMA_GATEWAY_TOKEN), by reason:"
            " missing (no header), scheme (not Bearer), token (wrong), header (repeated).",
            ["reason"],
            registry=r,
        )
        self.breaker_transitions = Counter(
            "wma_gateway_breaker_transitions",
            "A member's circuit breaker changing state, by the state it moved to.",
            ["model", "to"],
            registry=r,
        )

        self.replica_seconds = Histogram(
            "wma_gateway_replica_call_seconds",
            "Latency of one attempt at one replica of an ensemble member.",
            ["model", "replica"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.replica_calls = Counter(
            "wma_gateway_replica_calls",
            "Attempts at one replica of an ensemble member, by status.",
            ["model", "replica", "status"],
            registry=r,
        )
        self.model_retries = Counter(
            "wma_gateway_model_retries",
            "A model call retried on another replica, by the failed attempt's status.",
            ["model", "status"],
            registry=r,
        )
        self.pixel_staging = Counter(
            "wma_gateway_shared_memory_staging",
            "Requests under fanout.shared_memory, by outcome: staged (decoded into a slot), "
            "or sent encoded because slots_full, too_large, mixed_sizes or undecodable.",
            ["outcome"],
            registry=r,
        )
        self.member_transport = Counter(
            "wma_gateway_member_frames_transport",
            "OIP member calls by how the frames travelled: shared_memory or http.",
            ["model", "transport"],
            registry=r,
        )

    def watch_replicas(self, members: Callable[[], Iterable[ReplicaView]]) -> None:
        """Export the replicas of ``members()`` (read at each scrape, so a replica
        that is gone leaves no stale series): ``wma_gateway_model_replicas{model,state}``,
        ``wma_gateway_replica_in_flight`` and ``wma_gateway_replica_circuit_open``."""
        self.registry.register(_ReplicaCollector(members))

    def record_reload(self, ok: bool) -> None:
        self.reloads.labels(result="ok" if ok else "failed").inc()
