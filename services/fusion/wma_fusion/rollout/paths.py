"""The two paths as the analyze route runs them, and the legacy path's response.

:func:`ensemble_run` and :func:`legacy_run` wrap the gateway's ensemble pipeline
and the legacy client with a span and failure counting; a run that does not
serve turns every failure into a :class:`PathOutcome` instead of raising.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
from opentelemetry import trace
from wma_core import MemberStatus

from wma_fusion.breaker import BreakerState
from wma_fusion.errors import GatewayError, LegacyUnavailable
from wma_fusion.inputs import AnalyzeInput
from wma_fusion.pipeline import EnsembleResult, run_ensemble
from wma_fusion.pixels import PixelStager
from wma_fusion.rollout.legacy import LegacyResult, run_legacy
from wma_fusion.rollout.metrics import RolloutMetrics
from wma_fusion.rollout.records import PathOutcome
from wma_fusion.rollout.router import Route
from wma_fusion.state import RuntimeState
from wma_fusion.telemetry import Metrics

log = logging.getLogger("wma.rollout")
# The ``model`` label of the legacy path in ``wma_gateway_circuit_open``.
LEGACY_GAUGE_LABEL = "legacy"

EnsembleRun = EnsembleResult | PathOutcome  # a failed shadow run is only an outcome


async def ensemble_run(
    state: RuntimeState,
    client: httpx.AsyncClient,
    req: AnalyzeInput,
    *,
    tracer: trace.Tracer,
    metrics: Metrics,
    rollout: RolloutMetrics,
    served: bool,
    pixels: PixelStager | None = None,
) -> EnsembleRun:
    """The ensemble path; when it does not serve, a failure is returned, not raised."""
    start = time.monotonic()
    try:
        return await run_ensemble(
            state,
            client,
            req.frames,
            req.participant_id,
            meeting_id=req.meeting_id,
            tracer=tracer,
            metrics=metrics,
            pixels=pixels,
        )
    except Exception as exc:
        rollout.path_failures.labels(path="ensemble", status=MemberStatus.ERROR).inc()
        if served:
            raise
        if not isinstance(exc, GatewayError):
            # our own bug: keep the traceback, but never fail the served answer
            log.error("shadowed ensemble run failed", exc_info=True)
        return failure_outcome(exc, start)


def failure_outcome(exc: BaseException, start: float) -> PathOutcome:
    """The outcome of a path run that raised ``exc`` (``start``: its ``time.monotonic()``)."""
    if isinstance(exc, GatewayError):
        message = exc.message
    elif isinstance(exc, Exception):
        message = f"internal error ({type(exc).__name__})"
    else:  # cancelled, e.g. by the shutdown drain
        message = type(exc).__name__
    return PathOutcome(MemberStatus.ERROR, (time.monotonic() - start) * 1000.0, error=message)


async def legacy_run(
    state: RuntimeState,
    client: httpx.AsyncClient,
    req: AnalyzeInput,
    *,
    tracer: trace.Tracer,
    rollout: RolloutMetrics,
    metrics: Metrics | None = None,
) -> LegacyResult:
    """The legacy path; its failures are always values (see :class:`LegacyResult`).

    The call is bounded by ``min(legacy.timeout_s, fanout.deadline_s)`` and goes
    through the legacy model's own circuit breaker (kept across reloads).
    """
    path, breaker = state.config.rollout.legacy, state.legacy_breaker
    # The config refuses a non-ensemble mode without a legacy endpoint, and
    # build_state gives every legacy endpoint a breaker.
    if path is None or breaker is None:
        raise LegacyUnavailable("no legacy endpoint is configured")
    with tracer.start_as_current_span("legacy model", kind=trace.SpanKind.CLIENT) as span:
        result = await run_legacy(
            client,
            path,
            req.frames,
            breaker=breaker,
            deadline_s=state.config.fanout.deadline_s,
        )
        span.set_attribute("wma.legacy.status", result.status.value)
        span.set_attribute("wma.frames.sent", len(req.frames))
        span.set_attribute("wma.frames.scored", len(result.probs))
        span.set_attribute("wma.legacy.latency_ms", result.latency_ms)
        if not result.answered:
            span.set_status(trace.StatusCode.ERROR, result.error or result.status.value)
            rollout.path_failures.labels(path="legacy", status=result.status.value).inc()
    if metrics is not None:
        metrics.circuit_open.labels(model=LEGACY_GAUGE_LABEL).set(
            0 if breaker.state is BreakerState.CLOSED else 1
        )
    return result


def ensemble_outcome(run: EnsembleRun) -> PathOutcome:
    if isinstance(run, PathOutcome):
        return run
    return PathOutcome(
        status=MemberStatus.OK if run.fused.present else MemberStatus.NO_FACES,
        latency_ms=run.latency_ms,
        verdict=run.decision.verdict.value,
        banner=run.decision.banner.value,
        score=run.fused.score,
        interval=run.fused.interval,
        degraded=run.degraded,
    )


def answer_body(
    req: AnalyzeInput,
    plan: Route,
    latency_ms: float,
    *,
    verdict: str,
    banner: str,
    degraded: bool,
    detail: dict[str, Any],
) -> dict[str, Any]:
    """The ``/v1/analyze`` response body, whichever path served (fields may be added,
    never removed); ``detail`` holds the serving path's own fields."""
    body: dict[str, Any] = {
        "participant_id": req.participant_id,
        "verdict": verdict,
        "banner": banner,
        "degraded": degraded,
        "num_frames": len(req.frames),
        "latency_ms": round(latency_ms, 3),
        **detail,
        "mode": plan.mode.value,
        "served_by": plan.served_by.value,
    }
    if req.meeting_id is not None:
        body["meeting_id"] = req.meeting_id
    return body


def ensemble_body(
    run: EnsembleResult, req: AnalyzeInput, plan: Route, latency_ms: float
) -> dict[str, Any]:
    """The response served by the ensemble path."""
    return answer_body(
        req,
        plan,
        latency_ms,
        verdict=run.decision.verdict.value,
        banner=run.decision.banner.value,
        degraded=run.degraded,
        detail=run.detail(),
    )


def legacy_body(
    result: LegacyResult, req: AnalyzeInput, plan: Route, latency_ms: float
) -> dict[str, Any]:
    """The response served by the legacy path; a failed call is a 503."""
    if not result.answered or result.verdict is None or result.banner is None:
        raise LegacyUnavailable(
            result.error or "the legacy model gave no answer", legacy_status=result.status.value
        )
    return answer_body(
        req,
        plan,
        latency_ms,
        verdict=result.verdict.value,
        banner=result.banner.value,
        degraded=False,
        detail={"legacy": result.detail()},
    )
