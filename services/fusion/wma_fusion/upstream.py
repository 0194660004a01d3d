"""Calls to one ensemble member over the shared client, in the member's protocol.

One call returns a :class:`MemberReply`, never raises for an upstream failure:
a timeout, a refused connection, an HTTP error or a malformed reply is a status
(``timeout`` | ``error`` | ``circuit_open``) that the fusion rule reads.

With ``fanout.shared_memory`` a request's pixels may be staged in shared memory
(:class:`~wma_fusion.pixels.SharedPixels`): an OIP call then registers the
region with the replica once and names the slot instead of sending the frames.
A replica that refuses the region (its ``shared_memory`` is off) gets the
encoded frames, and is asked again every :data:`SHARED_RETRY_S`; one that has
forgotten it (it restarted) registers it again within the same call.

:func:`call_replicas` is a model call over the model's replicas
(:class:`~wma_fusion.replicas.ReplicaSet`): it picks one per attempt, and when
the replica refuses the connection, resets it, times out or answers 5xx/429 it
tries another one of the same model, at most ``fanout.max_attempts`` attempts
and each replica once, all inside the request's deadline. While another replica
could still be tried, an attempt gets at most half of what is left of the
deadline (and never more than the model's ``timeout_s``), so a hung replica
leaves time for a second one. Each replica has its own circuit breaker; a 429
(the replica shedding load) does not count against it. A model with one replica
keeps the single-endpoint rule: at most ``connect_retries`` retry on a connect
error. :func:`call_member` is one endpoint behind one breaker (the rollout's
legacy model).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
from opentelemetry import propagate, trace
from wma_core.status import MemberStatus
from wma_wire.frames import sniff_format
from wma_wire.protocol import (
    UNSCORED,
    ProtocolError,
    decode_infer_response,
    encode_infer_request,
    parse_legacy_response,
)
from wma_wire.shm import UNKNOWN_REGION

from wma_fusion.breaker import CircuitBreaker
from wma_fusion.config import ModelEntry
from wma_fusion.pixels import SharedPixels
from wma_fusion.replicas import Replica, ReplicaSet
from wma_fusion.telemetry import Metrics

log = logging.getLogger("wma_fusion.upstream")

# Seconds before a replica that refused a shared-memory region is asked again.
SHARED_RETRY_S = 60.0
HTTP, SHARED_MEMORY = "http", "shared_memory"  # how a call's frames travelled

# What the old meeting client sent; the legacy server reads only these.
LEGACY_QUERY = {
    "model_type": "custom",
    "threshold": "0.75",
    "debug": "false",
    "yolo_conf_threshold": "0.8",
}


@dataclass(frozen=True)
class MemberReply:
    """What one member answered: the per-frame probabilities it scored, or why not."""

    model_id: str
    status: MemberStatus
    probs: tuple[float, ...] = ()
    latency_ms: float = 0.0
    error: str | None = None
    retried: bool = False
    replica: str | None = None  # host:port of the replica that answered (or failed last)
    attempts: int = 0

    @property
    def failed(self) -> bool:
        return self.status.failed


class UpstreamError(Exception):
    """An upstream reply that cannot be used (HTTP error status, malformed body);
    ``retryable`` when another replica may answer (5xx, 429)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code

    @property
    def retryable(self) -> bool:
        return self.status_code is not None and (self.status_code >= 500 or self.status_code == 429)


def _error_detail(response: httpx.Response) -> str:
    try:
        payload: Any = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        return f"HTTP {response.status_code}: {payload['error'][:200]}"
    return f"HTTP {response.status_code}"


@dataclass(frozen=True)
class OipBody:
    """A request's frames as one OIP infer body (binary extension), encoded once and
    sent to every OIP member: the frames are copied once per request, not per member."""

    body: bytes
    headers: tuple[tuple[str, str], ...]

    @classmethod
    def encode(cls, request_id: str, frames: list[bytes]) -> OipBody:
        body, headers = encode_infer_request(request_id, frames, binary=True)
        return cls(body, tuple(headers.items()))


async def _shared_ready(
    client: httpx.AsyncClient, replica: Replica, shared: SharedPixels, timeout: httpx.Timeout
) -> bool:
    """Whether ``replica`` has ``shared``'s region registered (registering it now if
    not); False while it refuses. A 5xx or 429 is the attempt's failure."""
    if replica.shared_region == shared.region:
        return True
    if time.monotonic() < replica.shared_retry_at:
        return False
    url = f"{replica.url}/v2/systemsharedmemory/region/{shared.region}/register"
    region = {"key": shared.key, "offset": 0, "byte_size": shared.region_bytes}
    response = await client.post(url, json=region, timeout=timeout)
    if response.status_code == 200:
        replica.shared_region = shared.region
        return True
    if response.status_code >= 500 or response.status_code == 429:
        raise UpstreamError(_error_detail(response), status_code=response.status_code)
    replica.shared_retry_at = time.monotonic() + SHARED_RETRY_S
    log.warning(
        "replica %s refused shared memory (%s): it gets encoded frames; asking again in %.0f s",
        replica.label,
        _error_detail(response),
        SHARED_RETRY_S,
    )
    return False


def _forgot_region(response: httpx.Response) -> bool:
    return response.status_code == 400 and UNKNOWN_REGION in _error_detail(response)


async def _post_oip(
    client: httpx.AsyncClient,
    entry: ModelEntry,
    replica: Replica,
    frames: list[bytes],
    request_id: str,
    timeout: httpx.Timeout,
    encoded: OipBody | None = None,
    shared: SharedPixels | None = None,
) -> tuple[list[float], str]:
    """The scored probabilities, and how the frames travelled (:data:`HTTP` or
    :data:`SHARED_MEMORY`)."""
    url = f"{replica.url}/v2/models/{entry.id}/infer"

    async def post(body: bytes, base: tuple[tuple[str, str], ...]) -> httpx.Response:
        headers = dict(base)  # the trace header is per call
        propagate.inject(headers)
        return await client.post(url, content=body, headers=headers, timeout=timeout)

    response = None
    transport = SHARED_MEMORY
    if shared is not None and await _shared_ready(client, replica, shared, timeout):
        response = await post(shared.body, shared.headers)
        if _forgot_region(response):  # it restarted: register again, once
            replica.shared_region = None
            response = None
            if await _shared_ready(client, replica, shared, timeout):
                response = await post(shared.body, shared.headers)
    if response is None:
        transport = HTTP
        encoded = encoded or OipBody.encode(request_id, frames)
        response = await post(encoded.body, encoded.headers)
    if response.status_code != 200:
        raise UpstreamError(_error_detail(response), status_code=response.status_code)
    try:
        reply = decode_infer_response(response.content, dict(response.headers))
        probs = reply.probs
    except ProtocolError as exc:
        raise UpstreamError(f"malformed OIP reply: {exc}") from None
    if probs.size != len(frames):
        raise UpstreamError(f"OIP reply has {probs.size} probabilities for {len(frames)} frames")
    # Only the exact sentinel means "not scored"; NaN (which no comparison
    # catches) or any other value outside [0, 1] is a broken member, not no face.
    scored = probs[probs != UNSCORED]
    if not np.all((scored >= 0.0) & (scored <= 1.0)):
        raise UpstreamError("OIP reply has a probability outside [0, 1] that is not UNSCORED (-1)")
    return [float(p) for p in scored], transport


async def _post_legacy(
    client: httpx.AsyncClient, base_url: str, frames: list[bytes], timeout: httpx.Timeout
) -> list[float]:
    files = [
        ("files", (f"frame{i}", frame, f"image/{sniff_format(frame) or 'jpeg'}"))
        for i, frame in enumerate(frames)
    ]
    headers: dict[str, str] = {}
    propagate.inject(headers)
    url = f"{base_url}/check_frame_batch"
    response = await client.post(
        url, params=LEGACY_QUERY, files=files, headers=headers, timeout=timeout
    )
    if response.status_code != 200:
        raise UpstreamError(_error_detail(response), status_code=response.status_code)
    try:
        probs: list[float] = parse_legacy_response(response.json())
    except ValueError as exc:  # JSONDecodeError and ProtocolError are both ValueErrors
        raise UpstreamError(f"malformed legacy reply: {exc}") from None
    return probs


@dataclass(frozen=True)
class _Attempt:
    status: MemberStatus
    probs: list[float]
    error: str | None = None
    retryable: bool = False
    retried: bool = False  # a connect retry on the same replica
    transport: str | None = None  # how the frames travelled, when they reached it


async def _attempt(
    client: httpx.AsyncClient,
    entry: ModelEntry,
    replica: Replica,
    frames: list[bytes],
    *,
    request_id: str,
    deadline: float,
    budget_cap: float,
    connect_retries: int,
    encoded: OipBody | None = None,
    shared: SharedPixels | None = None,
) -> _Attempt:
    """One replica, through its breaker (``allow`` already said yes); a connect
    error is retried on it ``connect_retries`` times (0 or 1)."""
    breaker = replica.breaker

    def failed(status: MemberStatus, error: str, retryable: bool, retried: bool) -> _Attempt:
        breaker.record_failure(f"{status}: {error}")
        return _Attempt(status, [], error, retryable, retried)

    retried = False
    replica.in_flight += 1
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return failed(MemberStatus.TIMEOUT, "request deadline passed", False, retried)
            budget = min(entry.timeout_s, remaining, budget_cap)
            timeout = httpx.Timeout(budget, connect=min(budget, 2.0))
            try:
                async with asyncio.timeout(budget):
                    if entry.protocol == "oip":
                        probs, transport = await _post_oip(
                            client, entry, replica, frames, request_id, timeout, encoded, shared
                        )
                    else:
                        probs = await _post_legacy(client, replica.url, frames, timeout)
                        transport = HTTP
            except httpx.ConnectError as exc:
                if retried or connect_retries < 1:
                    return failed(MemberStatus.ERROR, f"connect error: {exc}", True, retried)
                retried = True
                continue
            except (TimeoutError, httpx.TimeoutException):
                return failed(MemberStatus.TIMEOUT, f"no reply within {budget:.2f}s", True, retried)
            except UpstreamError as exc:
                if exc.status_code == 429:  # shedding load: healthy, just busy
                    return _Attempt(MemberStatus.ERROR, [], str(exc), True, retried)
                return failed(MemberStatus.ERROR, str(exc), exc.retryable, retried)
            except httpx.HTTPError as exc:  # reset, protocol error mid-reply
                return failed(MemberStatus.ERROR, str(exc) or type(exc).__name__, True, retried)
            breaker.record_success()
            status = MemberStatus.OK if probs else MemberStatus.NO_FACES
            return _Attempt(status, probs, retried=retried, transport=transport)
    except asyncio.CancelledError:
        breaker.record_failure("cancelled")
        raise
    finally:
        replica.in_flight -= 1


async def call_replicas(
    client: httpx.AsyncClient,
    entry: ModelEntry,
    replicas: ReplicaSet,
    frames: list[bytes],
    *,
    request_id: str,
    deadline: float,
    connect_retries: int,
    max_attempts: int = 3,
    tracer: trace.Tracer | None = None,
    metrics: Metrics | None = None,
    encoded: OipBody | None = None,
    shared: SharedPixels | None = None,
) -> MemberReply:
    """Ask one model (any of its replicas) to score ``frames`` before ``deadline``
    (a ``time.monotonic`` value); each attempt is a span naming its replica.
    ``encoded``: the frames' OIP body, when the caller made it once for all members;
    ``shared``: their pixels in shared memory, for the replicas that take them."""
    start = time.monotonic()
    tried: list[Replica] = []
    last: _Attempt | None = None
    last_replica: str | None = None
    single = len(replicas.replicas) == 1
    while len(tried) < max_attempts:
        if deadline - time.monotonic() <= 0:
            break
        replica = replicas.pick(exclude=tried)
        if replica is None:
            break
        tried.append(replica)
        another = len(tried) < max_attempts and replicas.has_candidate(tried)
        cap = (deadline - time.monotonic()) / 2 if another else entry.timeout_s
        t0 = time.monotonic()
        span_cm: AbstractContextManager[trace.Span | None] = (
            tracer.start_as_current_span(f"replica {replica.label}", kind=trace.SpanKind.CLIENT)
            if tracer is not None
            else contextlib.nullcontext()
        )
        with span_cm as span:
            outcome = await _attempt(
                client,
                entry,
                replica,
                frames,
                request_id=request_id,
                deadline=deadline,
                budget_cap=cap,
                connect_retries=connect_retries if single else 0,
                encoded=encoded,
                shared=shared,
            )
            if span is not None:
                span.set_attribute("wma.model.id", entry.id)
                span.set_attribute("wma.replica", replica.label)
                span.set_attribute("wma.replica.attempt", len(tried))
                span.set_attribute("wma.model.status", outcome.status)
                if outcome.transport is not None:
                    span.set_attribute("wma.frames.transport", outcome.transport)
                if outcome.status.failed:
                    span.set_status(trace.StatusCode.ERROR, outcome.error or outcome.status)
        if metrics is not None:
            labels = {"model": entry.id, "replica": replica.label}
            metrics.replica_seconds.labels(**labels).observe(time.monotonic() - t0)
            metrics.replica_calls.labels(**labels, status=outcome.status).inc()
            if outcome.transport is not None and entry.protocol == "oip":
                metrics.member_transport.labels(model=entry.id, transport=outcome.transport).inc()
        last, last_replica = outcome, replica.label
        if not outcome.status.failed:
            break
        if not outcome.retryable:
            break
        if metrics is not None and len(tried) < max_attempts and replicas.has_candidate(tried):
            metrics.model_retries.labels(model=entry.id, status=outcome.status).inc()
    latency = (time.monotonic() - start) * 1000.0
    if last is None:
        if not replicas.replicas:
            status, error = MemberStatus.ERROR, "no replica known (none discovered yet)"
        elif tried or deadline - time.monotonic() <= 0:
            status, error = MemberStatus.TIMEOUT, "request deadline passed"
        else:
            status, error = MemberStatus.CIRCUIT_OPEN, "circuit breaker is open"
            if not single:
                error = "the circuit breaker of every replica is open"
        return MemberReply(entry.id, status, (), latency, error, False, None, 0)
    retried = last.retried or len(tried) > 1
    return MemberReply(
        entry.id,
        last.status,
        tuple(last.probs),
        latency,
        last.error,
        retried,
        last_replica,
        len(tried),
    )


async def call_member(
    client: httpx.AsyncClient,
    entry: ModelEntry,
    breaker: CircuitBreaker,
    frames: list[bytes],
    *,
    request_id: str,
    deadline: float,
    connect_retries: int,
) -> MemberReply:
    """One endpoint (``entry.base_url``) behind one ``breaker``: the legacy model's call."""
    start = time.monotonic()
    if not breaker.allow():
        return MemberReply(entry.id, MemberStatus.CIRCUIT_OPEN, (), 0.0, "circuit breaker is open")
    outcome = await _attempt(
        client,
        entry,
        Replica(entry.base_url, breaker),
        frames,
        request_id=request_id,
        deadline=deadline,
        budget_cap=entry.timeout_s,
        connect_retries=connect_retries,
    )
    latency = (time.monotonic() - start) * 1000.0
    return MemberReply(
        entry.id, outcome.status, tuple(outcome.probs), latency, outcome.error, outcome.retried
    )
