"""The ensemble path: fan out, aggregate, calibrate, fuse, decide, answer.

:func:`run_ensemble` is the whole path for one batch of frames, callable next to
the legacy path by the rollout; :meth:`EnsembleResult.detail` gives the ensemble's
fields of the response body. Every number comes from :mod:`wma_core`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from opentelemetry import trace
from wma_core import Decision, FusedScore, MemberStatus, decide, fuse, is_degraded

from wma_fusion.breaker import BreakerState
from wma_fusion.errors import EnsembleUnavailable
from wma_fusion.pixels import PixelStager, SharedPixels
from wma_fusion.state import Member, RuntimeState
from wma_fusion.telemetry import Metrics
from wma_fusion.upstream import MemberReply, OipBody, call_replicas


@dataclass(frozen=True)
class MemberResult:
    reply: MemberReply
    aggregator: str
    aggregated: float | None
    calibrated: float | None

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.reply.status,
            "frames_scored": len(self.reply.probs),
            "aggregator": self.aggregator,
            "aggregated": self.aggregated,
            "calibrated": self.calibrated,
            "latency_ms": round(self.reply.latency_ms, 3),
        }
        if self.reply.error is not None:
            out["error"] = self.reply.error
        return out


@dataclass(frozen=True)
class EnsembleResult:
    participant_id: str
    meeting_id: str | None
    num_frames: int
    members: dict[str, MemberResult]
    fused: FusedScore
    decision: Decision
    state: RuntimeState
    latency_ms: float

    @property
    def degraded(self) -> bool:
        any_failed = any(m.reply.failed for m in self.members.values())
        return is_degraded(self.fused, any_failed=any_failed)

    def detail(self) -> dict[str, Any]:
        """The ensemble's own fields of a served ``/v1/analyze`` answer
        (:func:`wma_fusion.rollout.answer.answer_body` builds the whole body)."""
        thresholds = self.state.thresholds
        return {
            "confidence": self.decision.confidence.value,
            "fusion_score": self.fused.score,
            "fusion_interval": list(self.fused.interval),
            "thresholds": {
                "t_low": thresholds.t_low,
                "t_high": thresholds.t_high,
                "source": self.state.thresholds_source,
            },
            "calibrators_sha256": self.state.bundle.sha256,
            "models": {mid: m.body() for mid, m in self.members.items()},
        }


def _score(member: Member, reply: MemberReply) -> MemberResult:
    aggregated = member.aggregator(reply.probs) if reply.status is MemberStatus.OK else None
    calibrated = member.curve(aggregated) if aggregated is not None else None
    return MemberResult(reply, member.aggregator.name, aggregated, calibrated)


async def _traced_call(
    tracer: trace.Tracer,
    client: httpx.AsyncClient,
    state: RuntimeState,
    member: Member,
    frames: list[bytes],
    request_id: str,
    deadline: float,
    metrics: Metrics | None,
    encoded: OipBody | None = None,
    shared: SharedPixels | None = None,
) -> MemberReply:
    entry = member.entry
    fanout = state.config.fanout
    with tracer.start_as_current_span(f"model {entry.id}", kind=trace.SpanKind.CLIENT) as span:
        span.set_attribute("wma.model.id", entry.id)
        span.set_attribute("wma.model.protocol", entry.protocol)
        span.set_attribute("wma.frames.sent", len(frames))
        reply = await call_replicas(
            client,
            entry,
            member.replicas,
            frames,
            request_id=request_id,
            deadline=deadline,
            connect_retries=fanout.connect_retries,
            max_attempts=fanout.max_attempts,
            tracer=tracer,
            metrics=metrics,
            encoded=encoded,
            shared=shared,
        )
        span.set_attribute("wma.frames.scored", len(reply.probs))
        span.set_attribute("wma.model.status", reply.status)
        span.set_attribute("wma.model.retried", reply.retried)
        span.set_attribute("wma.model.attempts", reply.attempts)
        span.set_attribute("wma.model.latency_ms", reply.latency_ms)
        if reply.replica is not None:
            span.set_attribute("wma.replica", reply.replica)
        if reply.failed:
            span.set_status(trace.StatusCode.ERROR, reply.error or reply.status)
    if metrics is not None:
        metrics.model_seconds.labels(model=entry.id).observe(reply.latency_ms / 1000.0)
        metrics.model_outcomes.labels(model=entry.id, status=reply.status).inc()
        metrics.circuit_open.labels(model=entry.id).set(
            0 if member.replicas.state is BreakerState.CLOSED else 1
        )
    return reply


async def run_ensemble(
    state: RuntimeState,
    client: httpx.AsyncClient,
    frames: list[bytes],
    participant_id: str,
    *,
    meeting_id: str | None = None,
    tracer: trace.Tracer | None = None,
    metrics: Metrics | None = None,
    pixels: PixelStager | None = None,
) -> EnsembleResult:
    """Score ``frames`` with every member and decide; frames must already be validated.
    ``pixels``: the gateway's shared-memory stager (``fanout.shared_memory``).

    Raises :class:`EnsembleUnavailable` (503) when every member failed.
    """
    tracer = tracer or trace.get_tracer(__name__)
    start = time.monotonic()
    deadline = start + state.config.fanout.deadline_s
    request_id = uuid.uuid4().hex
    # Encoded once for every OIP member (one copy of the frames per request, not four).
    oip = any(m.entry.protocol == "oip" for m in state.members)
    shared = None
    if oip and pixels is not None:
        with tracer.start_as_current_span("stage pixels") as span:
            shared, outcome = await pixels.stage(frames, state.limits, request_id)
            span.set_attribute("wma.shared_memory.outcome", outcome)
        if metrics is not None:
            metrics.pixel_staging.labels(outcome=outcome).inc()
    # Encoded once for every OIP member that needs the frames themselves (one copy
    # per request, not four): all of them without shared memory.
    encoded = OipBody.encode(request_id, frames) if oip and shared is None else None
    try:
        replies = await asyncio.gather(
            *(
                _traced_call(
                    tracer, client, state, m, frames, request_id, deadline, metrics, encoded, shared
                )
                for m in state.members
            )
        )
    finally:
        if pixels is not None and shared is not None:  # every call has ended
            pixels.release(shared)
    members = {m.id: _score(m, r) for m, r in zip(state.members, replies, strict=True)}
    if all(r.failed for r in replies):
        raise EnsembleUnavailable(
            "no ensemble member answered",
            models={mid: m.body() for mid, m in members.items()},
        )
    with tracer.start_as_current_span("fusion") as span:
        # Every member has its calibrator in the bundle (build_state checks it);
        # a few curve ends per request: not worth caching.
        calibrated = {mid: m.calibrated for mid, m in members.items()}
        fused = fuse(calibrated, state.bundle.output_ranges(), state.bundle.fusion)
        decision = decide(fused, state.thresholds)
        span.set_attribute("wma.fusion.rule", state.bundle.fusion.kind)
        span.set_attribute("wma.fusion.present", fused.present)
        span.set_attribute("wma.fusion.interval", list(fused.interval))
        span.set_attribute("wma.verdict", decision.verdict.value)
    latency_ms = (time.monotonic() - start) * 1000.0
    result = EnsembleResult(
        participant_id, meeting_id, len(frames), members, fused, decision, state, latency_ms
    )
    return result
