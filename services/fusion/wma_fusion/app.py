"""The gateway's HTTP surface: ``create_app`` builds it, nothing runs at import.

Routes: ``POST /v1/analyze``, ``GET /livez``, ``GET /readyz``, ``GET /metrics``.
The shared ``httpx.AsyncClient``, the config-reload task, the breaker recovery
task (:mod:`wma_fusion.recovery`) and the replica discovery
(:class:`~wma_fusion.replicas.ReplicaDiscovery`, for ``discover`` entries) live in
the lifespan.
Every :class:`~wma_fusion.errors.GatewayError` becomes ``{"error": ...}`` here, in
one place, logged without a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from wma_core import Banner, Verdict
from wma_wire.auth import BearerAuth
from wma_wire.http1 import Http1Transport
from wma_wire.openapi import (
    error_responses,
    install_openapi,
    json_response,
    multipart_body,
    text_response,
)
from wma_wire.repeats import RepeatLimiter
from wma_wire.server_errors import InternalErrorMiddleware

from wma_fusion.auth import OPEN_PATHS, MemberTokens, gateway_token
from wma_fusion.errors import GatewayError
from wma_fusion.health import readiness
from wma_fusion.inputs import read_analyze_request
from wma_fusion.pixels import PixelStager, check_stager_dependencies
from wma_fusion.recovery import BreakerRecovery
from wma_fusion.replicas import ReplicaDiscovery, ReplicaSet, Resolver, resolve_addresses
from wma_fusion.rollout.config import RolloutMode
from wma_fusion.rollout.router import ServedBy
from wma_fusion.rollout.serve import RolloutRuntime, serve_analyze
from wma_fusion.state import RuntimeState, StateHolder, load_state
from wma_fusion.telemetry import Metrics, make_tracer_provider

log = logging.getLogger("wma_fusion.app")

_DOC = (
    "The fusion gateway: POST /v1/analyze fans a participant's frames out to the "
    "ensemble's model servers and answers the fused verdict. Every error is "
    '{"error": message}.'
)
_ID = {"type": "string", "pattern": r"^[A-Za-z0-9._:@-]{1,128}$"}
_ANALYZE_BODY = multipart_body(
    {
        "files": {
            "type": "array",
            "items": {"type": "string", "format": "binary", "description": "a JPEG or PNG crop"},
        },
        "participant_id": {**_ID, "description": "or the query parameter participant_id"},
        "meeting_id": _ID,
    },
    ["files"],
    {"files": "image/jpeg, image/png"},
)
# ... or the frames as an OIP v2 infer request (input "images", BYTES [N]; JSON with
# base64 strings, or the binary tensor extension), the ids then in the query
_IMAGES = {
    "type": "object",
    "required": ["name", "datatype", "shape", "data"],
    "properties": {
        "name": {"type": "string", "enum": ["images"]},
        "datatype": {"type": "string", "enum": ["BYTES"]},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 1}},
        "data": {"type": "array", "items": {"type": "string", "description": "base64 JPEG/PNG"}},
        "parameters": {"type": "object", "description": "binary_data_size with the extension"},
    },
}
_ANALYZE_BODY["requestBody"]["content"].update(
    {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "id": {"type": "string"},
                    "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": _IMAGES},
                },
            }
        },
        "application/octet-stream": {
            "schema": {
                "type": "string",
                "format": "binary",
                "description": "the infer request's JSON header, then the frames' bytes "
                "(binary tensor data extension; header Inference-Header-Content-Length)",
            }
        },
    }
)
_ANALYZE_BODY["parameters"] = [
    {"name": name, "in": "query", "required": False, "schema": _ID}
    for name in ("participant_id", "meeting_id")
]
# The fields every answer has, whichever path served (more may be added, never removed).
_ANALYZE_REPLY = json_response(
    "the fused verdict and banner; 'models' holds each member's status and scores",
    {
        "type": "object",
        "required": [
            "participant_id",
            "verdict",
            "banner",
            "degraded",
            "num_frames",
            "latency_ms",
            "mode",
            "served_by",
        ],
        "properties": {
            "participant_id": _ID,
            "meeting_id": _ID,
            "verdict": {"type": "string", "enum": [v.value for v in Verdict]},
            "banner": {"type": "string", "enum": [b.value for b in Banner]},
            "degraded": {"type": "boolean"},
            "num_frames": {"type": "integer", "minimum": 1},
            "latency_ms": {"type": "number", "minimum": 0},
            "mode": {"type": "string", "enum": [m.value for m in RolloutMode]},
            "served_by": {"type": "string", "enum": [s.value for s in ServedBy]},
            "models": {"type": "object"},
        },
    },
)
_ANALYZE_ERRORS = error_responses(
    400,
    413,
    415,
    500,
    503,
    s400="malformed form, participant_id missing or invalid, or a frame that does not decode",
    s503="no model could answer (every member failed: 'models' holds each one's status), "
    "or the legacy model failed while it serves",
)
_READY = {
    "description": "ready: at least one model that can serve is reachable",
    "content": {"application/json": {"schema": {"type": "object", "required": ["ready"]}}},
}


@dataclass
class Gateway:
    """Everything a request handler needs; one per app, stored on ``app.state``."""

    holder: StateHolder
    tracer: trace.Tracer
    metrics: Metrics
    rollout: RolloutRuntime
    client: httpx.AsyncClient | None = None
    pixels: PixelStager | None = None  # fanout.shared_memory, made at start

    def stager(self, state: RuntimeState) -> PixelStager | None:
        """The stager, while ``state`` has shared memory on (a reload can turn it off)."""
        return self.pixels if state.config.fanout.shared_memory.enabled else None

    @property
    def http(self) -> httpx.AsyncClient:
        if self.client is None:
            raise RuntimeError("the gateway's HTTP client is only open inside the lifespan")
        return self.client


async def get_gateway(request: Request) -> Gateway:
    # async: FastAPI runs a plain ``def`` dependency in its thread pool (a hop per request)
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def _make_client(
    state: RuntimeState, transport: httpx.AsyncBaseTransport | None, auth: MemberTokens
) -> httpx.AsyncClient:
    n = state.config.fanout.max_connections
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
        timeout=httpx.Timeout(state.config.fanout.deadline_s),
        # members are plain http:// in the cluster: the lean transport (wma_wire.http1)
        transport=transport or Http1Transport(max_idle=n),
        auth=auth,  # each member's bearer token, on every call to it (wma_fusion.auth)
    )


def create_app(
    config_path: str | Path | None = None,
    *,
    state: RuntimeState | None = None,
    tracer_provider: TracerProvider | None = None,
    env: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    resolver: Resolver = resolve_addresses,
) -> FastAPI:
    """Build the gateway from a config file (reloaded on change) or a ready state.

    ``transport`` replaces the network under the shared client to the members and
    the legacy model (tests: ``httpx.ASGITransport`` of in-process members, or
    ``httpx.MockTransport``); ``resolver`` resolves ``discover`` names (the
    system's resolver; tests map names to loopback addresses)."""
    path = Path(config_path) if config_path is not None else None
    if state is None:
        if path is None:
            raise ValueError("create_app needs a config_path or a state")
        state = load_state(path, env)
    metrics = Metrics()
    holder = StateHolder(state, path, env, on_reload=metrics.record_reload)
    provider = tracer_provider or make_tracer_provider(state.config.telemetry, env)
    rollout = RolloutRuntime(metrics.registry, holder, env)
    gw = Gateway(holder, provider.get_tracer("wma_fusion"), metrics, rollout)
    recovery = BreakerRecovery(holder, metrics, gw.tracer)  # closes breakers of ready members
    metrics.watch_replicas(lambda: holder.state.members)

    def discovered() -> list[tuple[tuple[str, int], ReplicaSet]]:
        return [
            (m.entry.discover_target, m.replicas)
            for m in holder.state.members
            if m.entry.discover is not None
        ]

    discovery = ReplicaDiscovery(
        discovered, lambda: holder.state.config.fanout.discovery_interval_s, resolver
    )
    # read now: a missing or empty token file refuses the start, naming the variable
    tokens_env = os.environ if env is None else env
    door = gateway_token(tokens_env)
    member_tokens = MemberTokens(lambda: holder.state, tokens_env)
    shared_memory = state.config.fanout.shared_memory
    if shared_memory.enabled:
        check_stager_dependencies()  # refused now, not at the first request

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gw.client = _make_client(holder.state, transport, member_tokens)
        if shared_memory.enabled:
            gw.pixels = PixelStager(shared_memory)
        await discovery.refresh()  # the first request has replicas to call
        watcher = asyncio.create_task(holder.watch()) if path is not None else None
        recovering = asyncio.create_task(recovery.run(gw.client))
        discovering = asyncio.create_task(discovery.run())
        try:
            yield
        finally:
            for task in (discovering, recovering):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await gw.rollout.drain()  # shadow runs still use the client
            await gw.client.aclose()
            if gw.pixels is not None:  # after the drain: no call reads a slot now
                gw.pixels.close()
            repeats.flush()  # the count of 503 lines left out since the last one
            if tracer_provider is None:
                provider.shutdown()

    app = FastAPI(title="wma fusion gateway", lifespan=lifespan)
    app.state.gateway = gw

    # With every member down each request is a 503: one line per 10 s, with a count
    # (flushed as the lifespan ends).
    repeats = RepeatLimiter()

    @app.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        level = logging.WARNING if exc.status_code >= 500 else logging.INFO
        line = ("%s %s -> %d: %s", request.method, request.url.path, exc.status_code, exc)
        if level >= logging.WARNING:
            repeats.log(log, level, *line)
        else:
            log.log(level, *line)
        return JSONResponse(exc.body(), status_code=exc.status_code)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        log.info("%s %s -> %d: %s", request.method, request.url.path, exc.status_code, exc.detail)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    # Our own bugs: a 500 JSON that keeps the connection usable (wma_wire.server_errors).
    app.add_middleware(InternalErrorMiddleware, logger=log)
    if door is not None:  # WMA_GATEWAY_TOKEN: checked before the body is read
        refused = metrics.unauthorized
        app.add_middleware(
            BearerAuth,
            token=door,
            open_paths=OPEN_PATHS,
            logger=log,
            on_refused=lambda reason: refused.labels(reason=reason).inc(),
        )

    @app.post(
        "/v1/analyze",
        responses={**_ANALYZE_REPLY, **_ANALYZE_ERRORS},
        openapi_extra=_ANALYZE_BODY,
    )
    async def analyze(request: Request, gw: GatewayDep) -> JSONResponse:
        start = time.monotonic()
        state = gw.holder.state  # once: a reload mid-request must not mix two states
        slo_ms = state.config.telemetry.slo_ms
        with gw.tracer.start_as_current_span(
            "POST /v1/analyze",
            context=propagate.extract(request.headers),
            kind=trace.SpanKind.SERVER,
        ) as span:
            span.set_attribute("http.request.method", "POST")
            span.set_attribute("url.path", "/v1/analyze")
            span.set_attribute("wma.slo.target_ms", slo_ms)
            status = 500
            try:
                analyze = await read_analyze_request(request, state.limits)
                span.set_attribute("wma.frames", len(analyze.frames))
                # the rollout routes on this state snapshot, runs the paths, answers, records
                body = await serve_analyze(
                    gw.rollout,
                    state,
                    gw.http,
                    analyze,
                    tracer=gw.tracer,
                    metrics=gw.metrics,
                    start=start,
                    pixels=gw.stager(state),
                )
                status = 200
                return JSONResponse(body)
            except GatewayError as exc:
                status = exc.status_code
                raise
            finally:
                elapsed = time.monotonic() - start
                span.set_attribute("http.response.status_code", status)
                span.set_attribute("wma.latency_ms", elapsed * 1000.0)
                span.set_attribute("wma.slo.exceeded", elapsed * 1000.0 > slo_ms)
                gw.metrics.request_seconds.labels(outcome=f"{status // 100}xx").observe(elapsed)

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "alive"}

    @app.get(
        "/readyz",
        responses={
            200: _READY,
            503: {**_READY, "description": "not ready: no model that can serve is reachable"},
        },
    )
    async def readyz(gw: GatewayDep) -> JSONResponse:
        ready, body = await readiness(gw.http, gw.holder.state)
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get(
        "/metrics",
        response_class=Response,
        responses=text_response("Prometheus metrics, text exposition format"),
    )
    async def metrics_route(gw: GatewayDep) -> Response:
        return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    install_openapi(app, open_paths=OPEN_PATHS, bearer=door is not None, description=_DOC)
    return app
