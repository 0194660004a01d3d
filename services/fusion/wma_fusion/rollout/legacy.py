"""The legacy single-model path: the old client's call and banding, as a value.

One ``POST /check_frame_batch`` to the configured legacy model server, made by
the gateway's own member call (:func:`wma_fusion.upstream.call_member` with the
legacy protocol: the old client's query, the request's trace context, the
member's error handling), the mean of the per-frame probabilities it returns,
and the old banding (RED at ``>= thr + margin``, YELLOW at ``>= thr - margin``,
else GREEN). Failures are values (a failed :class:`~wma_core.MemberStatus`), never exceptions, so a
shadowed legacy call cannot fail the request it rides along with; the caller
decides what a failure means (503 when legacy serves). Like an ensemble member,
the legacy model sits behind a circuit breaker (``circuit_open``: not called),
and a call's budget is the smaller of its own ``timeout_s`` and the fan-out
deadline the caller passes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from wma_core import Banner, MemberStatus, Verdict, banner_for, legacy_banner

from wma_fusion.breaker import CircuitBreaker
from wma_fusion.config import ModelEntry
from wma_fusion.rollout.config import LegacyPath
from wma_fusion.upstream import call_member

# The id under which the legacy model is called (never a member's: it is not in ``models``).
LEGACY_MODEL_ID = "legacy"

# The inverse of the ensemble's verdict -> banner map, so both paths agree on it.
_VERDICT_OF_BANNER = {banner_for(verdict): verdict for verdict in Verdict}


@dataclass(frozen=True)
class LegacyResult:
    """The outcome of one legacy call; ``banner``/``verdict`` are ``None`` on failure."""

    status: MemberStatus
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
        return self.status.answered

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


def legacy_entry(path: LegacyPath) -> ModelEntry:
    """The legacy endpoint as a member entry of the legacy protocol."""
    return ModelEntry(
        id=LEGACY_MODEL_ID, endpoint=path.endpoint, protocol="legacy", timeout_s=path.timeout_s
    )


async def run_legacy(
    client: httpx.AsyncClient,
    path: LegacyPath,
    frames: Sequence[bytes],
    *,
    breaker: CircuitBreaker,
    deadline_s: float | None = None,
) -> LegacyResult:
    """Call the legacy model on ``frames`` and band its answer.

    The call gets ``min(path.timeout_s, deadline_s)`` seconds and no connect
    retry; ``breaker`` may refuse it at once (``circuit_open``) and learns from
    its outcome.
    """
    budget_s = path.timeout_s if deadline_s is None else deadline_s
    reply = await call_member(
        client,
        legacy_entry(path),
        breaker,
        list(frames),
        request_id="",  # only the OIP protocol sends one
        deadline=time.monotonic() + budget_s,
        connect_retries=0,
    )
    status = reply.status
    if reply.failed:
        error = f"legacy model: {reply.error or status.value}"
        return LegacyResult(status, reply.latency_ms, path.threshold, path.margin, error=error)
    banner, mean_prob = band(reply.probs, path.threshold, path.margin)
    return LegacyResult(
        status,
        reply.latency_ms,
        path.threshold,
        path.margin,
        probs=reply.probs,
        mean_prob=mean_prob,
        banner=banner,
        verdict=verdict_of(banner),
    )
