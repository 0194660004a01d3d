"""Calls to one ensemble member over the shared client, in the member's protocol.

One call returns a :class:`MemberReply`, never raises for an upstream failure:
a timeout, a refused connection, an HTTP error or a malformed reply is a status
(``timeout`` | ``error`` | ``circuit_open``) that the fusion rule reads. The call
respects the member's own timeout and the request's overall deadline, retries
at most once on a connect error, and goes through the member's circuit breaker.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
from opentelemetry import propagate
from wma_core.status import MemberStatus
from wma_wire.frames import sniff_format
from wma_wire.protocol import (
    UNSCORED,
    ProtocolError,
    decode_infer_response,
    encode_infer_request,
    parse_legacy_response,
)

from wma_fusion.breaker import CircuitBreaker
from wma_fusion.config import ModelEntry

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

    @property
    def failed(self) -> bool:
        return self.status.failed


class UpstreamError(Exception):
    """An upstream reply that cannot be used (HTTP error status, malformed body)."""


def _error_detail(response: httpx.Response) -> str:
    try:
        payload: Any = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        return f"HTTP {response.status_code}: {payload['error'][:200]}"
    return f"HTTP {response.status_code}"


async def _post_oip(
    client: httpx.AsyncClient,
    entry: ModelEntry,
    frames: list[bytes],
    request_id: str,
    timeout: httpx.Timeout,
) -> list[float]:
    body, headers = encode_infer_request(request_id, frames, binary=True)
    propagate.inject(headers)
    url = f"{entry.base_url}/v2/models/{entry.id}/infer"
    response = await client.post(url, content=body, headers=headers, timeout=timeout)
    if response.status_code != 200:
        raise UpstreamError(_error_detail(response))
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
    return [float(p) for p in scored]


async def _post_legacy(
    client: httpx.AsyncClient, entry: ModelEntry, frames: list[bytes], timeout: httpx.Timeout
) -> list[float]:
    files = [
        ("files", (f"frame{i}", frame, f"image/{sniff_format(frame) or 'jpeg'}"))
        for i, frame in enumerate(frames)
    ]
    headers: dict[str, str] = {}
    propagate.inject(headers)
    url = f"{entry.base_url}/check_frame_batch"
    response = await client.post(
        url, params=LEGACY_QUERY, files=files, headers=headers, timeout=timeout
    )
    if response.status_code != 200:
        raise UpstreamError(_error_detail(response))
    try:
        probs: list[float] = parse_legacy_response(response.json())
    except ValueError as exc:  # JSONDecodeError and ProtocolError are both ValueErrors
        raise UpstreamError(f"malformed legacy reply: {exc}") from None
    return probs


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
    """Ask one member to score ``frames`` before ``deadline`` (a ``time.monotonic`` value)."""
    start = time.monotonic()

    def reply(
        status: MemberStatus,
        probs: list[float] | None = None,
        error: str | None = None,
        retried: bool = False,
    ) -> MemberReply:
        latency = (time.monotonic() - start) * 1000.0
        if status in (MemberStatus.TIMEOUT, MemberStatus.ERROR):
            breaker.record_failure(f"{status}: {error}")
        return MemberReply(entry.id, status, tuple(probs or ()), latency, error, retried)

    if not breaker.allow():
        return reply(MemberStatus.CIRCUIT_OPEN, error="circuit breaker is open")
    retried = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return reply(MemberStatus.TIMEOUT, error="request deadline passed", retried=retried)
            budget = min(entry.timeout_s, remaining)
            timeout = httpx.Timeout(budget, connect=min(budget, 2.0))
            try:
                async with asyncio.timeout(budget):
                    if entry.protocol == "oip":
                        probs = await _post_oip(client, entry, frames, request_id, timeout)
                    else:
                        probs = await _post_legacy(client, entry, frames, timeout)
            except httpx.ConnectError as exc:
                if retried or connect_retries < 1:
                    return reply(MemberStatus.ERROR, error=f"connect error: {exc}", retried=retried)
                retried = True
                continue
            except (TimeoutError, httpx.TimeoutException):
                return reply(
                    MemberStatus.TIMEOUT, error=f"no reply within {budget:.2f}s", retried=retried
                )
            except (httpx.HTTPError, UpstreamError) as exc:
                return reply(
                    MemberStatus.ERROR, error=str(exc) or type(exc).__name__, retried=retried
                )
            breaker.record_success()
            return reply(
                MemberStatus.OK if probs else MemberStatus.NO_FACES, probs, retried=retried
            )
    except asyncio.CancelledError:
        breaker.record_failure("cancelled")
        raise
