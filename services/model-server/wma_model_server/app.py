"""The app factory: wires settings, backend, batcher, routes, errors and telemetry.

``create_app(settings)`` does no work itself; the lifespan builds the backend in
a thread (unless one is passed in), warms it up and only then reports ready, so
liveness answers at once while readiness waits for the model. Every error is
answered here, in one place, as ``{"error": message}`` with its status.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from opentelemetry import trace
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException
from wma_wire.auth import BearerAuth
from wma_wire.openapi import install_openapi, text_response
from wma_wire.protocol import ProtocolError
from wma_wire.repeats import RepeatLimiter
from wma_wire.server_errors import InternalErrorMiddleware
from wma_wire.shm import RegionRegistry

from wma_model_server import __version__, routes_legacy, routes_shm, routes_v2
from wma_model_server.backends import Backend, build_backend
from wma_model_server.batching import DynamicBatcher
from wma_model_server.exceptions import ModelServerError, OverloadedError
from wma_model_server.pipeline import ScoringPipeline
from wma_model_server.settings import ModelServerSettings
from wma_model_server.state import ServerState
from wma_model_server.telemetry import ServerMetrics, TelemetryMiddleware

__all__ = ["OPEN_PATHS", "create_app"]

# What a probe or a scraper reads without the token (WMA_MS_TOKEN): no frames, no scores.
OPEN_PATHS = ("/ping", "/v2/health/live", "/v2/health/ready", "/metrics")

log = logging.getLogger(__name__)

_DOC = (
    "One detector behind the legacy API (/check_frame_batch, /check_frame, /ping) and "
    'the Open Inference Protocol v2. Every error is {"error": message}.'
)


async def _load(
    state: ServerState,
    given: Backend | None,
    executor: ThreadPoolExecutor,
    decoder: ThreadPoolExecutor,
) -> None:
    settings = state.settings
    try:
        backend: Backend = (
            given if given is not None else await asyncio.to_thread(build_backend, settings)
        )
        await asyncio.get_running_loop().run_in_executor(executor, backend.warmup)
    except ModelServerError as exc:
        state.error = exc.message
        log.error("model %s refused: %s", settings.model_id, exc.message)
        return
    except Exception as exc:  # our bug or the hardware: keep serving /health/live
        state.error = f"{type(exc).__name__}: {exc}"
        log.exception("model %s failed to load", settings.model_id)
        return
    batcher = DynamicBatcher(
        backend,
        executor,
        state.metrics,
        max_batch=settings.max_batch,
        max_delay_s=settings.max_delay_ms / 1000.0,
        max_queue_frames=settings.max_queue_frames,
    )
    batcher.start()
    state.pipeline = ScoringPipeline(
        backend,
        batcher,
        settings.frame_limits,
        state.metrics,
        settings.debug_dir,
        decoder,
        decode_threads=decode_threads(settings),
    )
    log.info("model %s ready (%s backend)", settings.model_id, backend.kind)


def decode_threads(settings: ModelServerSettings) -> int:
    """The decode pool's threads: ``decode_threads``, or one per CPU."""
    return settings.decode_threads or os.cpu_count() or 1


# Overload and not-ready are states of the server, not bugs: WARNING; client errors INFO.
_LOG_LEVELS = {429: logging.WARNING, 500: logging.ERROR, 503: logging.WARNING}


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI, repeats: RepeatLimiter) -> None:
    """``repeats``: an overload gives one 429 line per 10 s, with a count."""

    @app.exception_handler(ModelServerError)
    async def domain_error(request: Request, exc: ModelServerError) -> JSONResponse:
        level = _LOG_LEVELS.get(exc.status_code, logging.INFO)
        line = ("%s %s -> %d: %s", request.method, request.url.path, exc.status_code, exc)
        if level >= logging.WARNING:
            repeats.log(log, level, *line)
        else:
            log.log(level, *line)
        headers = None
        if isinstance(exc, OverloadedError):
            headers = {"Retry-After": str(exc.retry_after_s)}
        return _error(exc.status_code, exc.message, headers)

    @app.exception_handler(ProtocolError)
    async def protocol_error(request: Request, exc: ProtocolError) -> JSONResponse:
        log.info("%s %s -> 400: %s", request.method, request.url.path, exc)
        return _error(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in exc.errors()
        ]
        return _error(400, "; ".join(problems) or "invalid request")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), exc.headers)


def create_app(
    settings: ModelServerSettings,
    *,
    backend: Backend | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    """A model-server app; ``backend`` overrides the one the settings would build."""
    metrics = ServerMetrics(registry)
    state = ServerState(settings, metrics)
    if settings.shared_memory:
        # one read is at most the largest pixels input the limits admit
        state.regions = RegionRegistry(max_read_bytes=3 * settings.max_request_pixels)
    repeats = RepeatLimiter()  # flushed as the lifespan ends: no count is lost

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One inference thread: forward passes are serialised, batching does the rest.
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wma-infer")
        # One decode job per request, on as many threads as there are cores (OpenCV
        # releases the GIL while it decodes): requests finish in turn instead of all
        # sharing a core slice each, as on asyncio's default pool of cpu_count + 4.
        decoder = ThreadPoolExecutor(
            max_workers=decode_threads(settings),
            thread_name_prefix="wma-decode",
        )
        loading = asyncio.create_task(_load(state, backend, executor, decoder))
        try:
            yield
        finally:
            loading.cancel()
            with suppress(asyncio.CancelledError):
                await loading
            if state.pipeline is not None:
                await state.pipeline.batcher.stop()
            executor.shutdown(wait=False, cancel_futures=True)
            decoder.shutdown(wait=False, cancel_futures=True)
            if state.regions is not None:
                state.regions.close()
            repeats.flush()

    app = FastAPI(
        title=f"wma model server {settings.model_id}", version=__version__, lifespan=lifespan
    )
    app.state.model_server = state
    app.include_router(routes_legacy.router)
    app.include_router(routes_v2.router)
    app.include_router(routes_shm.router)

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses=text_response("Prometheus metrics, text exposition format"),
    )
    async def metrics_endpoint() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    _install_error_handlers(app, repeats)
    # Our own bugs: a 500 JSON answered inside Starlette's error middleware, which
    # would re-raise and close the kept-alive connection; telemetry sees the 500.
    app.add_middleware(InternalErrorMiddleware, logger=log)
    token = settings.bearer_token
    install_openapi(app, open_paths=OPEN_PATHS, bearer=token is not None, description=_DOC)
    if token is not None:  # checked before any body is read; telemetry counts the 401s
        app.add_middleware(BearerAuth, token=token, open_paths=OPEN_PATHS, logger=log)
    tracer = trace.get_tracer("wma_model_server", __version__, tracer_provider=tracer_provider)
    app.add_middleware(TelemetryMiddleware, metrics=metrics, tracer=tracer)
    return app
