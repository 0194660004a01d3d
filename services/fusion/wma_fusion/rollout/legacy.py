"""The legacy single-model path: the old client's call and banding, as a value.

One ``POST /check_frame_batch`` to the configured legacy model server with the
old client's query, the mean of the per-frame probabilities it returns, and the
old banding (RED at ``>= thr + margin``, YELLOW at ``>= thr - margin``, else
GREEN). Failures are values (:class:`LegacyStatus`), never exceptions, so a
shadowed legacy call cannot fail the request it rides along with; the caller
decides what a failure means (503 when legacy serves). Like an ensemble member,
the legacy model sits behind a circuit breaker (``circuit_open``: not called),
and a call's budget is the smaller of its own ``timeout_s`` and the fan-out
deadline the caller passes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx
from wma_core import Banner, Verdict, legacy_banner
from wma_model_server.imaging import sniff_format
from wma_model_server.protocol import ProtocolError, parse_legacy_response

from wma_fusion.breaker import CircuitBreaker
from wma_fusion.rollout.config import LegacyPath

# Exactly what the old meeting client sent; it read only ``probs``.
LEGACY_QUERY = {
    "model_type": "custom",
    "threshold": "0.75",
    "debug": "false",
    "yolo_conf_threshold": "0.8",
}

_VERDICT_OF_BANNER = {
    Banner.RED: Verdict.FAKE,
    Banner.YELLOW: Verdict.UNCERTAIN,
    Banner.GREEN: Verdict.REAL,
    Banner.NONE: Verdict.NO_FACE,
}


class LegacyStatus(StrEnum):
    OK = "ok"
    NO_FACES = "no_faces"
    TIMEOUT = "timeout"
    ERROR = "error"
    CIRCUIT_OPEN = "circuit_open"


@dataclass(frozen=True)
class LegacyResult:
    """The outcome of one legacy call; ``banner``/``verdict`` are ``None`` on failure."""

    status: LegacyStatus
    latency_ms: float
    threshold: float
    margin: float
    probs: tuple[float, ...] = field(default=(), repr=False)
    mean_prob: float | None = None
    banner: Banner | None = None
    verdict: Verdict | None = None
    error: str | None = None

    @property
    def answered(self) -> bool:
        """The legacy model gave an answer (possibly with no scored frame)."""
        return self.status in (LegacyStatus.OK, LegacyStatus.NO_FACES)

    def detail(self) -> dict[str, Any]:
        """The ``legacy`` object of a response served by this path."""
        return {
            "mean_prob": self.mean_prob,
            "probs_scored": len(self.probs),
            "threshold": self.threshold,
            "margin": self.margin,
        }


def band(probs: Sequence[float], threshold: float, margin: float) -> tuple[Banner, float | None]:
    """The old banding of the mean probability; no scored frame -> ``NONE``."""
    if not probs:
        return Banner.NONE, None
    mean_prob = sum(probs) / len(probs)
    return legacy_banner(mean_prob, threshold, margin), mean_prob


def verdict_of(banner: Banner) -> Verdict:
    """RED -> FAKE, YELLOW -> UNCERTAIN, GREEN -> REAL, NONE -> NO_FACE."""
    return _VERDICT_OF_BANNER[banner]


def _files(frames: Sequence[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    files = []
    for i, frame in enumerate(frames):
        fmt = sniff_format(frame) or "jpeg"
        files.append(
            ("files", (f"frame{i}.{'png' if fmt == 'png' else 'jpg'}", frame, f"image/{fmt}"))
        )
    return files


async def _call(
    client: httpx.AsyncClient, path: LegacyPath, frames: Sequence[bytes], budget_s: float
) -> list[float]:
    url = f"{str(path.endpoint).rstrip('/')}/check_frame_batch"
    response = await client.post(
        url, params=LEGACY_QUERY, files=_files(frames), timeout=httpx.Timeout(budget_s)
    )
    if response.status_code != 200:
        raise ProtocolError(
            f"legacy model answered HTTP {response.status_code}: {response.text[:200]}"
        )
    try:
        payload = response.json()
    except ValueError:
        raise ProtocolError("legacy model answered with a body that is not JSON") from None
    return parse_legacy_response(payload)


async def run_legacy(
    client: httpx.AsyncClient,
    path: LegacyPath,
    frames: Sequence[bytes],
    *,
    breaker: CircuitBreaker | None = None,
    deadline_s: float | None = None,
) -> LegacyResult:
    """Call the legacy model on ``frames`` and band its answer.

    The call gets ``min(path.timeout_s, deadline_s)`` seconds; ``breaker`` (if any)
    may refuse it at once (``circuit_open``) and learns from its outcome.
    """
    start = time.perf_counter()
    budget_s = path.timeout_s if deadline_s is None else min(path.timeout_s, deadline_s)

    def result(status: LegacyStatus, **kwargs: Any) -> LegacyResult:
        latency_ms = (time.perf_counter() - start) * 1000.0
        if breaker is not None and status is not LegacyStatus.CIRCUIT_OPEN:
            if status in (LegacyStatus.OK, LegacyStatus.NO_FACES):
                breaker.record_success()
            else:
                breaker.record_failure(f"{status.value}: {kwargs.get('error')}")
        return LegacyResult(status, latency_ms, path.threshold, path.margin, **kwargs)

    if breaker is not None and not breaker.allow():
        return result(LegacyStatus.CIRCUIT_OPEN, error="legacy model's circuit breaker is open")
    try:
        async with asyncio.timeout(budget_s):
            probs = await _call(client, path, frames, budget_s)
    except (TimeoutError, httpx.TimeoutException):
        return result(LegacyStatus.TIMEOUT, error=f"legacy model timed out after {budget_s:g} s")
    except httpx.HTTPError as exc:
        return result(LegacyStatus.ERROR, error=f"legacy model unreachable: {type(exc).__name__}")
    except ProtocolError as exc:
        return result(LegacyStatus.ERROR, error=str(exc))
    except asyncio.CancelledError:
        # A half-open probe that never reports would keep the breaker shut for good.
        if breaker is not None:
            breaker.record_failure("cancelled")
        raise
    banner, mean_prob = band(probs, path.threshold, path.margin)
    status = LegacyStatus.OK if probs else LegacyStatus.NO_FACES
    return result(
        status, probs=tuple(probs), mean_prob=mean_prob, banner=banner, verdict=verdict_of(banner)
    )
