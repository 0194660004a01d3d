"""Closing a member's open breaker as soon as the member is ready again.

Every replica of a member has its own breaker, probed on its own address.
A breaker that only waits out ``reset_timeout_s`` and then lets one request
through recovers slowly: a probe that meets a port still closed reopens it for the
full timeout, so answers stayed incomplete for 11 s after a member was ready in
3.8 s. :class:`BreakerRecovery` runs in the gateway's lifespan and, for each
member whose breaker is open or half-open, probes its readiness endpoint
(:func:`wma_fusion.health.probe_replica`: ``/v2/health/ready`` for OIP members)
with a backoff that starts at ``first_delay_s`` (0.25 s) and doubles up to
``max_delay_s`` (1 s, so that answers are complete within about a second of a
member being ready, even after a long outage; one GET a second per member that is
down costs nothing); the first ready answer closes the breaker. The fixed
half-open probe remains as a fallback. A member that is ready but fails its calls
reopens the breaker; the backoff is kept across such a cycle (reset only after
``5 * max_delay_s`` closed), so a flapping member costs a few failed calls every
``max_delay_s``, not a storm.

Every breaker transition (opened, half-open, closed) is counted in
``wma_gateway_breaker_transitions_total{model,to}``, sets ``wma_gateway_circuit_open``
(1 while no replica of the model is closed) and is an event on the current span
(the member call's, or the probe's own span).
The breakers of a reloaded state are listened to from the next tick on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from dataclasses import dataclass

import httpx
from opentelemetry import trace

from wma_fusion.breaker import BreakerState, CircuitBreaker
from wma_fusion.health import probe_replica
from wma_fusion.replicas import Replica, ReplicaSet
from wma_fusion.state import Member, StateHolder
from wma_fusion.telemetry import Metrics

__all__ = ["BreakerRecovery"]


@dataclass
class _Backoff:
    delay_s: float
    next_at: float
    closed_at: float | None = None


class BreakerRecovery:
    """Probe members whose breaker is open; close it as soon as the member is ready."""

    def __init__(
        self,
        holder: StateHolder,
        metrics: Metrics,
        tracer: trace.Tracer,
        *,
        first_delay_s: float = 0.25,
        max_delay_s: float = 1.0,
        tick_s: float = 0.05,
    ) -> None:
        self.holder = holder
        self.metrics = metrics
        self.tracer = tracer
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.tick_s = tick_s
        self._backoff: dict[CircuitBreaker, _Backoff] = {}
        self._probing: set[CircuitBreaker] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def transition(
        self, replicas: ReplicaSet, replica: str, old: BreakerState, new: BreakerState
    ) -> None:
        """The breakers' listener: count, gauge and span event of one transition."""
        model = replicas.model_id
        self.metrics.breaker_transitions.labels(model=model, to=new.value).inc()
        closed = new is BreakerState.CLOSED or replicas.state is BreakerState.CLOSED
        self.metrics.circuit_open.labels(model=model).set(0 if closed else 1)
        trace.get_current_span().add_event(
            "breaker transition",
            {
                "wma.model.id": model,
                "wma.replica": replica,
                "wma.breaker.from": old.value,
                "wma.breaker.to": new.value,
            },
        )

    async def run(self, client: httpx.AsyncClient) -> None:
        """Forever (until cancelled): listen to every breaker, probe the open ones."""
        try:
            while True:
                self._tick(client, time.monotonic())
                await asyncio.sleep(self.tick_s)
        finally:
            for task in list(self._tasks):
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _tick(self, client: httpx.AsyncClient, now: float) -> None:
        pairs = [(m, r) for m in self.holder.state.members for r in m.replicas.replicas]
        live = {r.breaker for _, r in pairs}
        for breaker in list(self._backoff):
            if breaker not in live:  # a reload or a discovery replaced it
                del self._backoff[breaker]
        for member, replica in pairs:
            breaker = replica.breaker
            if breaker.on_transition is None:
                breaker.on_transition = functools.partial(
                    self.transition, member.replicas, replica.label
                )
            backoff = self._backoff.get(breaker)
            if not breaker.is_open:
                forget = backoff is not None and (
                    backoff.closed_at is None or now - backoff.closed_at > 5 * self.max_delay_s
                )
                if forget:  # closed by a call, or closed long enough: start afresh
                    del self._backoff[breaker]
                continue
            if backoff is None:
                backoff = self._backoff[breaker] = _Backoff(
                    self.first_delay_s, now + self.first_delay_s
                )
            elif backoff.closed_at is not None:  # reopened soon after a probe closed it
                backoff.closed_at = None
                backoff.next_at = now + backoff.delay_s
            if now >= backoff.next_at and breaker not in self._probing:
                self._probing.add(breaker)
                task = asyncio.create_task(self._probe(client, member, replica, backoff))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _probe(
        self, client: httpx.AsyncClient, member: Member, replica: Replica, backoff: _Backoff
    ) -> None:
        breaker = replica.breaker
        try:
            with self.tracer.start_as_current_span(
                f"breaker probe {member.id}", kind=trace.SpanKind.CLIENT
            ) as span:
                result = await probe_replica(client, member, replica)
                span.set_attribute("wma.model.id", member.id)
                span.set_attribute("wma.replica", replica.label)
                span.set_attribute("wma.probe.reachable", bool(result["reachable"]))
                span.set_attribute("wma.probe.detail", str(result["detail"]))
                if result["reachable"] and breaker.is_open:
                    breaker.close_after_probe(str(result["detail"]))
                    backoff.closed_at = time.monotonic()
                backoff.delay_s = min(backoff.delay_s * 2, self.max_delay_s)
                backoff.next_at = time.monotonic() + backoff.delay_s
        finally:
            self._probing.discard(breaker)
