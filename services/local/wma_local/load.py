"""Sending the traffic of :mod:`wma_local.traffic` and judging each answer.

:func:`send` makes one call and returns its :class:`Outcome`: the status (or the
transport error), when it was sent and answered, and ``problem``, what is wrong
with it (None when the answer is what the call must get: for a good call the
oracle's answer, for a bad one its 4xx as a JSON ``{"error": ...}``).
:func:`percentiles` summarises latencies.

Each client is sequential on one kept-alive connection. When that connection
had been idle and the server closes it as the next request goes out (what a
server that shuts down does to its idle connections: uvicorn closes them
without reading what arrives), the request fails with no byte of answer; the
server never read it, so, as HTTP/1.1 allows for a request the client knows is
safe to repeat (RFC 9112 section 9.3.1; analyze has no side effect), :func:`send`
repeats it once on a new connection and marks the outcome ``retried``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
import numpy as np

from wma_local.oracle import Oracle
from wma_local.traffic import Call

__all__ = ["CLIENT_TIMEOUT_S", "ONE_CONNECTION", "Outcome", "percentiles", "send"]

# Longer than the gateway's fan-out deadline (4.5 s): a slow answer is an answer.
CLIENT_TIMEOUT_S = 30.0
# A client sends one request at a time on one connection (so it knows when it is reused).
ONE_CONNECTION = httpx.Limits(max_connections=1, max_keepalive_connections=1)


@dataclass(frozen=True)
class Outcome:
    """One call's result. ``refused``: the connection was refused (nothing was sent);
    ``lost``: the request may have reached the server but no answer came back."""

    call: Call
    sent: float
    done: float
    status: int | None = None
    error: str | None = None
    refused: bool = False
    degraded: bool = False
    verdict: str | None = None
    problem: str | None = None
    retried: bool = False  # repeated once: the idle connection it went out on was closed
    keep_alive: bool = False  # the answer left the connection open for the next request

    @property
    def lost(self) -> bool:
        return self.error is not None and not self.refused

    @property
    def complete(self) -> bool:
        """A correct, non-degraded answer to a good call."""
        return self.status == 200 and self.problem is None and not self.degraded

    @property
    def latency_ms(self) -> float:
        return (self.done - self.sent) * 1000.0


def _error_body(response: httpx.Response) -> str | None:
    """What is wrong with an error answer; None if it is a JSON {"error": "..."}."""
    if not response.headers.get("content-type", "").startswith("application/json"):
        return f"{response.status_code} answered as {response.headers.get('content-type')!r}"
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} with a body that is not JSON"
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return f"{response.status_code} without an 'error' string"
    return None


async def send(
    client: httpx.AsyncClient,
    urls: Mapping[str, str],
    call: Call,
    oracle: Oracle,
    *,
    also_allowed: frozenset[int] = frozenset(),
    reused: bool = False,
) -> Outcome:
    """Make ``call`` (``urls`` maps its target to a base URL) and judge the answer;
    ``also_allowed`` are error statuses the circumstances allow (e.g. 503 when no
    member is up), still as a JSON error. ``reused``: the client's connection is
    an idle kept-alive one (the previous answer's :attr:`Outcome.keep_alive`)."""
    sent = time.monotonic()
    retried = False
    url = urls[call.target] + call.path
    while True:
        try:
            response = await client.request(
                call.method, url, content=call.content, headers=call.headers
            )
            break
        except httpx.ConnectError as exc:
            done = time.monotonic()
            return Outcome(
                call, sent, done, error=type(exc).__name__, refused=True, retried=retried
            )
        except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
            if reused and not retried and _no_answer(exc):
                retried = True
                continue
            error = f"{type(exc).__name__}: {exc}"
            return Outcome(call, sent, time.monotonic(), error=error, retried=retried)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
            return Outcome(call, sent, time.monotonic(), error=error, retried=retried)
    done = time.monotonic()
    outcome = _judge(call, response, oracle, also_allowed, sent, done)
    keep_alive = response.headers.get("connection", "").lower() != "close"
    return dataclasses.replace(outcome, retried=retried, keep_alive=keep_alive)


def _no_answer(exc: httpx.HTTPError) -> bool:
    """The connection ended before any byte of the answer: a reset, or a close."""
    return isinstance(exc, httpx.ReadError) or "without sending a response" in str(exc)


def _judge(
    call: Call,
    response: httpx.Response,
    oracle: Oracle,
    also_allowed: frozenset[int],
    sent: float,
    done: float,
) -> Outcome:
    status = response.status_code
    if status == 200 and call.good:
        try:
            body = response.json()
        except ValueError:
            return Outcome(call, sent, done, status, problem="200 that is not JSON")
        problem = oracle.check(body, call.levels)
        degraded = bool(body.get("degraded")) if isinstance(body, dict) else False
        verdict = body.get("verdict") if isinstance(body, dict) else None
        return Outcome(
            call, sent, done, status, degraded=degraded, verdict=verdict, problem=problem
        )
    if status not in call.expect | also_allowed:
        want = sorted(call.expect)
        problem = f"{call.kind}: {status}, expected {want}: {response.text[:200]}"
        return Outcome(call, sent, done, status, problem=problem)
    problem = None if status == 200 else _error_body(response)
    return Outcome(call, sent, done, status, problem=problem and f"{call.kind}: {problem}")


def percentiles(values: list[float], points: tuple[int, ...] = (50, 99)) -> dict[int, float]:
    """The given percentiles of ``values`` (NaN when empty)."""
    if not values:
        return {p: float("nan") for p in points}
    found = np.percentile(np.asarray(values, dtype=np.float64), points)
    return {p: float(v) for p, v in zip(points, found, strict=True)}
