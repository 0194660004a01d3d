"""Prometheus metrics (one registry per app) and the ASGI middleware that records
request metrics and opens an OpenTelemetry server span continuing the caller's
W3C trace context (``traceparent``), as ``opentelemetry-instrumentation-fastapi`` would.

:class:`FlushTracesAtShutdown` shuts the process's tracer provider
(:func:`wma_wire.tracing.tracer_provider_from_env`) down at the end of the app's
lifespan, so queued spans leave the process before uvicorn re-raises the SIGTERM it drained on.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = [
    "FlushTracesAtShutdown",
    "ServerMetrics",
    "TelemetryMiddleware",
]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServerMetrics:
    """The model server's instruments, registered in their own ``CollectorRegistry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "wma_ms_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "wma_ms_request_seconds",
            "HTTP request latency by endpoint and status",
            ["endpoint", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "wma_ms_batch_frames", "frames per forward pass", buckets=_BATCH_BUCKETS, registry=r
        )
        self.queue_frames = Gauge(
            "wma_ms_queue_frames", "frames admitted to the batcher and not yet scored", registry=r
        )
        self.inference = Histogram(
            "wma_ms_inference_seconds",
            "duration of one forward pass",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.frames = Counter(
            "wma_ms_frames", "frames by outcome (ok, undecodable, no_face)", ["status"], registry=r
        )


class TelemetryMiddleware:
    """Per-request span (child of the incoming trace context) and request metrics."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, tracer: trace.Tracer) -> None:
        self.app = app
        self.metrics = metrics
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method: str = scope["method"]
        status = 500
        start = time.perf_counter()

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        with self.tracer.start_as_current_span(
            method, context=propagate.extract(carrier), kind=SpanKind.SERVER
        ) as span:
            try:
                await self.app(scope, receive, send_and_record)
            finally:
                endpoint = _route_of(scope)
                span.update_name(f"{method} {endpoint}")
                span.set_attribute("http.request.method", method)
                span.set_attribute("http.route", endpoint)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                labels = {"endpoint": endpoint, "status": str(status)}
                self.metrics.requests.labels(**labels).inc()
                self.metrics.latency.labels(**labels).observe(time.perf_counter() - start)


def _route_of(scope: Scope) -> str:
    # The route template, not the raw path, keeps label cardinality bounded.
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class FlushTracesAtShutdown:
    """Wraps an ASGI app: when its lifespan has shut down, shut the tracer provider
    down too (in a thread), which exports every queued span.

    uvicorn re-raises the SIGTERM it drained on once serving ends, which kills a
    process with the default handler before any ``finally`` or ``atexit`` runs:
    flushing inside the lifespan is what makes spans survive a plain SIGTERM.
    """

    def __init__(self, app: ASGIApp, provider: TracerProvider) -> None:
        self.app = app
        self.provider = provider

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_then_flush(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await asyncio.to_thread(self.provider.shutdown)
            await send(message)

        await self.app(scope, receive, send_then_flush)
