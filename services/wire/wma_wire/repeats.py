"""Rate-limiting identical log lines, with a count: one app's, never global.

With every member down the gateway answered 558 requests with 503 in 20 s and
logged one identical WARNING for each. :class:`RepeatLimiter` lets the first of
identical records (same logger, level and text) through, then at most one per
``interval_s``, which says how many were left out since the last one. A line that
stops repeating has its count go out with its next occurrence, when it is dropped
from the limiter's memory (``max_lines``), or at :meth:`RepeatLimiter.flush` (each
app flushes as its lifespan ends), so no count is lost.
Each app holds its own limiter (no module-level state for tests to reset).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["RepeatLimiter"]


class RepeatLimiter:
    """``limiter.log(logger, level, msg, *args)``: ``logger.log`` unless the same
    line went out less than ``interval_s`` ago (then it is only counted)."""

    def __init__(
        self,
        interval_s: float = 10.0,
        *,
        max_lines: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self.max_lines = max_lines
        self._clock = clock
        # (logger, level, text) -> [time it last went out, times left out since]
        self._lines: OrderedDict[tuple[str, int, str], list[float]] = OrderedDict()

    def log(self, logger: logging.Logger, level: int, msg: str, *args: Any) -> None:
        if not logger.isEnabledFor(level):
            return
        text = msg % args if args else msg
        key = (logger.name, level, text)
        now = self._clock()
        seen = self._lines.get(key)
        if seen is not None and now - seen[0] < self.interval_s:
            seen[1] += 1
            return
        left_out = int(seen[1]) if seen is not None else 0
        self._lines[key] = [now, 0]
        self._lines.move_to_end(key)
        while len(self._lines) > self.max_lines:
            (name, old_level, old_text), (_, count) = self._lines.popitem(last=False)
            _emit(logging.getLogger(name), old_level, old_text, int(count))
        logger.log(level, "%s", _counted(text, left_out))

    def flush(self) -> None:
        """Log the count of every line left out since it last went out, and forget them."""
        for (name, level, text), (_, count) in self._lines.items():
            _emit(logging.getLogger(name), level, text, int(count))
        self._lines.clear()


def _counted(text: str, left_out: int) -> str:
    return f"{text} (and {left_out} more like it since the last one)" if left_out else text


def _emit(logger: logging.Logger, level: int, text: str, left_out: int) -> None:
    """The count of a line that no later occurrence will carry (none: nothing)."""
    if left_out:
        logger.log(level, "%s", f"{left_out} more like this since the last one: {text}")
