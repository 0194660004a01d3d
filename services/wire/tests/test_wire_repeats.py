"""Identical log lines are rate-limited with a count; different ones are not."""

from __future__ import annotations

import logging

import pytest
from wma_wire.repeats import RepeatLimiter


def test_identical_lines_go_out_once_per_interval_with_the_count_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    limiter = RepeatLimiter(10.0, clock=lambda: now[0])
    log = logging.getLogger("wma.test.repeats")
    with caplog.at_level(logging.INFO, logger="wma.test.repeats"):
        for _ in range(80):
            limiter.log(log, logging.WARNING, "POST %s -> %d: all down", "/v1/analyze", 503)
            now[0] += 0.25  # 80 lines over 20 s (exact in binary: no rounding at 10 s)
        limiter.log(log, logging.WARNING, "another line")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "POST /v1/analyze -> 503: all down",
        "POST /v1/analyze -> 503: all down (and 39 more like it since the last one)",
        "another line",
    ]


def test_a_line_below_the_logger_level_is_neither_logged_nor_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = RepeatLimiter(10.0, clock=lambda: 0.0)
    log = logging.getLogger("wma.test.repeats.quiet")
    with caplog.at_level(logging.WARNING, logger="wma.test.repeats.quiet"):
        limiter.log(log, logging.INFO, "hidden")
        limiter.log(log, logging.WARNING, "shown")
    assert [r.getMessage() for r in caplog.records] == ["shown"]


def test_the_counts_left_out_go_out_at_flush_and_when_a_line_is_forgotten(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = RepeatLimiter(10.0, max_lines=2, clock=lambda: 0.0)
    log = logging.getLogger("wma.test.repeats.flush")
    with caplog.at_level(logging.INFO, logger="wma.test.repeats.flush"):
        for _ in range(3):
            limiter.log(log, logging.WARNING, "first")
        limiter.log(log, logging.WARNING, "second")
        limiter.log(log, logging.WARNING, "second")
        limiter.log(log, logging.WARNING, "third")  # over max_lines: "first" is forgotten
        limiter.flush()  # as the app stops
        limiter.flush()  # nothing left
    assert [r.getMessage() for r in caplog.records] == [
        "first",
        "second",
        "2 more like this since the last one: first",
        "third",
        "1 more like this since the last one: second",
    ]
    assert {r.levelno for r in caplog.records} == {logging.WARNING}
