"""The rollout inside ``/v1/analyze``: route, run the paths, answer, record.

:func:`serve_analyze` is called by the gateway's analyze route with the state
snapshot the request read once at its start, so a hot reload (e.g. a rollback
from canary to legacy) changes the next request, never one in flight. One path
is awaited directly; when both run they start at once, the serving one is
awaited and the shadowed one finishes in a background task that writes the
comparison record, so it never delays or fails the served answer. The answer is
counted in the metrics here, once. :class:`RolloutRuntime` (one per app) owns the record
writer, the rollout metrics and those background tasks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Coroutine, Mapping
from typing import Any

import httpx
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from wma_fusion.inputs import AnalyzeInput
from wma_fusion.pipeline import EnsembleResult
from wma_fusion.pixels import PixelStager
from wma_fusion.rollout.config import RolloutMode
from wma_fusion.rollout.legacy import LegacyResult
from wma_fusion.rollout.metrics import RolloutMetrics
from wma_fusion.rollout.paths import (
    EnsembleRun,
    ensemble_body,
    ensemble_outcome,
    ensemble_run,
    failure_outcome,
    legacy_body,
    legacy_run,
)
from wma_fusion.rollout.records import PathOutcome, RecordWriter, build_record, legacy_outcome
from wma_fusion.rollout.router import Route, ServedBy, route
from wma_fusion.state import RuntimeState, StateHolder
from wma_fusion.telemetry import Metrics

log = logging.getLogger("wma.rollout")


class RolloutRuntime:
    """Per-app rollout state: metrics, the record writer, in-flight shadow tasks."""

    def __init__(
        self,
        registry: CollectorRegistry,
        holder: StateHolder,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.metrics = RolloutMetrics(registry)
        self._holder = holder
        self._environ = environ
        self._writer: RecordWriter | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._shadow_failing: set[str] = set()
        if holder.state.config.rollout.mode in (RolloutMode.SHADOW, RolloutMode.CANARY):
            self.writer()  # warns about a missing hash key at startup

    def writer(self) -> RecordWriter:
        """The writer of the current config's ``records`` sink.

        Built once per sink: the first record after a reload that changed the sink
        closes the old writer and opens the new one, and a shadow task still running
        under the old config writes there too. The id hasher is kept while
        ``hash_key_env`` and ``raw_participant_ids`` are unchanged, so hashes (even
        under a random per-process key) stay comparable across reloads.
        """
        sink = self._holder.state.config.rollout.records
        old = self._writer
        if old is not None and old.sink == sink:
            return old
        hasher = None
        if old is not None:
            same_ids = (old.sink.hash_key_env, old.sink.raw_participant_ids) == (
                sink.hash_key_env,
                sink.raw_participant_ids,
            )
            hasher = old.hasher if same_ids else None
            old.close()
        self._writer = RecordWriter(sink, environ=self._environ, hasher=hasher)
        return self._writer

    def note_shadow(self, path: str, outcome: PathOutcome) -> None:
        """Log a shadowed path's health changes (WARNING): first failure, recovery."""
        if not outcome.answered and path not in self._shadow_failing:
            self._shadow_failing.add(path)
            log.warning(
                "shadowed %s path failing: %s (%s); further failures are counted in "
                "wma_rollout_path_failures_total, not logged",
                path,
                outcome.status,
                (outcome.error or "")[:200],
            )
        elif outcome.answered and path in self._shadow_failing:
            self._shadow_failing.discard(path)
            log.warning("shadowed %s path recovered", path)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Let shadow runs finish (each is bounded by its own deadline), then close."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in set(self._tasks):
            task.cancel()
        self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


async def _compare(
    rt: RolloutRuntime,
    state: RuntimeState,
    req: AnalyzeInput,
    plan: Route,
    tasks: tuple[asyncio.Task[LegacyResult], asyncio.Task[EnsembleRun]],
    start: float,
) -> None:
    """Wait for both paths, then count the banner pair and write the record."""
    leg, ens = await asyncio.gather(*tasks, return_exceptions=True)
    try:
        leg_out = (
            legacy_outcome(leg) if isinstance(leg, LegacyResult) else failure_outcome(leg, start)
        )
        ens_out = (
            failure_outcome(ens, start) if isinstance(ens, BaseException) else ensemble_outcome(ens)
        )
        shadowed = plan.shadow  # not None: both paths ran
        rt.note_shadow(str(shadowed), ens_out if shadowed is ServedBy.ENSEMBLE else leg_out)
        rt.metrics.observe_comparison(leg_out.banner, ens_out.banner)
        writer = rt.writer()
        writer.write(
            build_record(
                writer.hasher,
                mode=plan.mode.value,
                served_by=plan.served_by.value,
                participant_id=req.participant_id,
                meeting_id=req.meeting_id,
                num_frames=len(req.frames),
                legacy=leg_out,
                ensemble=ens_out,
                config_sha256=state.config_sha256,
                calibrators_sha256=state.bundle.sha256,
            )
        )
    except Exception:
        log.error("could not write the comparison record", exc_info=True)


async def serve_analyze(
    rt: RolloutRuntime,
    state: RuntimeState,
    client: httpx.AsyncClient,
    req: AnalyzeInput,
    *,
    tracer: trace.Tracer,
    metrics: Metrics,
    start: float,
    pixels: PixelStager | None = None,
) -> dict[str, Any]:
    """Answer one validated request under ``state``'s rollout mode; returns the body
    (``pixels``: the shared-memory stager, when ``fanout.shared_memory`` is on)."""
    plan = route(state.config.rollout, req.participant_id)
    span = trace.get_current_span()
    span.set_attribute("wma.rollout.mode", plan.mode.value)
    span.set_attribute("wma.rollout.served_by", plan.served_by.value)
    serve_legacy = plan.served_by is ServedBy.LEGACY
    rt.metrics.served.labels(mode=plan.mode.value, served_by=plan.served_by.value).inc()

    def legacy() -> Coroutine[Any, Any, LegacyResult]:
        return legacy_run(state, client, req, tracer=tracer, rollout=rt.metrics, metrics=metrics)

    def ensemble() -> Coroutine[Any, Any, EnsembleRun]:
        return ensemble_run(
            state,
            client,
            req,
            tracer=tracer,
            metrics=metrics,
            rollout=rt.metrics,
            served=not serve_legacy,
            pixels=pixels,
        )

    if plan.compared:  # both start at once; the shadowed one finishes in the background
        tasks = (asyncio.create_task(legacy()), asyncio.create_task(ensemble()))
        rt.spawn(_compare(rt, state, req, plan, tasks, start))
        served: Awaitable[LegacyResult | EnsembleRun] = tasks[0] if serve_legacy else tasks[1]
    else:  # one path: awaited directly
        served = legacy() if serve_legacy else ensemble()
    result = await served
    latency_ms = (time.monotonic() - start) * 1000.0
    if isinstance(result, LegacyResult):
        body = legacy_body(result, req, plan, latency_ms)
    else:
        assert isinstance(result, EnsembleResult)  # a serving run raises instead
        body = ensemble_body(result, req, plan, latency_ms)
    # the served answer is counted here, and only here
    metrics.verdicts.labels(verdict=body["verdict"]).inc()
    metrics.banners.labels(banner=body["banner"]).inc()
    if body["degraded"]:
        metrics.degraded.inc()
    span.set_attribute("wma.verdict", body["verdict"])
    span.set_attribute("wma.degraded", bool(body["degraded"]))
    return body
