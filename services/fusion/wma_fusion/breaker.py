"""A per-model circuit breaker: closed -> open -> half-open (one probe) -> closed.

After ``failure_threshold`` consecutive failures the breaker opens and calls are
refused at once (status ``circuit_open``) for ``reset_timeout_s``; then exactly
one probe call is let through. Its success closes the breaker, its failure opens
it again. The clock is injectable so tests need no sleeps. Not thread-safe: it
lives on the gateway's event loop.

It also logs its member's health as state *changes*, at WARNING, so a member that
fails on every request gives a handful of lines, not one per call: the first
failure after a success (with its status and error), the circuit opening, each
half-open probe and its failure, and the recovery. ``on_transition`` (set by
:class:`wma_fusion.recovery.BreakerRecovery`) hears every change of state, and
:meth:`close_after_probe` closes it when the member's readiness probe answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


log = logging.getLogger("wma_fusion.breaker")


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int,
        reset_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        name: str = "upstream",
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.name = name
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self.on_transition: Callable[[BreakerState, BreakerState], None] | None = None

    def _move(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        if old is not new and self.on_transition is not None:
            self.on_transition(old, new)

    @property
    def is_open(self) -> bool:
        """Open or half-open (calls refused, or one probe at a time): not closed."""
        return self._state is not BreakerState.CLOSED

    @property
    def state(self) -> BreakerState:
        if (
            self._state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self.reset_timeout_s
        ):
            return BreakerState.HALF_OPEN
        return self._state

    def allow(self) -> bool:
        """Whether a call may go out now; in half-open only one probe at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN or self._probe_in_flight:
            return False
        self._move(BreakerState.HALF_OPEN)
        self._probe_in_flight = True
        log.warning("%s: circuit half-open, letting one probe call through", self.name)
        return True

    def record_success(self) -> None:
        if self._failures:
            closed = "; circuit closed" if self._state is not BreakerState.CLOSED else ""
            log.warning("%s recovered after %d failed call(s)%s", self.name, self._failures, closed)
        self._failures = 0
        self._probe_in_flight = False
        self._move(BreakerState.CLOSED)

    def close_after_probe(self, detail: str) -> None:
        """The member's readiness probe answered (``detail``): close the breaker now."""
        if self._state is BreakerState.CLOSED:
            return
        log.warning(
            "%s ready again (readiness probe: %s) after %d failed call(s); circuit closed",
            self.name,
            detail,
            self._failures,
        )
        self._failures = 0
        self._probe_in_flight = False
        self._move(BreakerState.CLOSED)

    def record_failure(self, detail: str = "") -> None:
        """Count a failed call; ``detail`` (status and short error) goes to the log."""
        self._failures += 1
        detail = detail[:200] or "failed"
        if self._state is BreakerState.HALF_OPEN:
            log.warning(
                "%s: probe call failed (%s); circuit open again for %gs",
                self.name,
                detail,
                self.reset_timeout_s,
            )
        elif self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold:
            log.warning(
                "%s: circuit opened after %d consecutive failures (last: %s); calls are "
                "refused for %gs",
                self.name,
                self._failures,
                detail,
                self.reset_timeout_s,
            )
        elif self._failures == 1:
            log.warning(
                "%s failing: %s (further failures are counted, not logged)", self.name, detail
            )
        if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
            self._move(BreakerState.OPEN)
        self._probe_in_flight = False
