"""The gateway's log says when members and shadowed paths fail, once per change.

A member that fails on every request must give a few WARNING lines (first
failure, circuit opened, probes, recovery), not one per request; the same for a
shadowed path. Members here: an in-process mock model server and a closed port.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from gateway_harness import post_frames
from wma_fusion.app import create_app
from wma_fusion.breaker import CircuitBreaker
from wma_local.samples import grey_frame
from wma_local.stack import DEFAULT_BUNDLE, GatewayThread, free_port

LIVE, DEAD = "9rfa62j1", "1mjgo9w1"
FRAME = grey_frame(60)


def warnings_of(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == logger and r.levelno == logging.WARNING
    ]


def test_the_breaker_logs_each_state_change_once(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    breaker = CircuitBreaker(3, 10.0, clock=lambda: now[0], name="model m1")
    with caplog.at_level(logging.WARNING, logger="wma_fusion.breaker"):
        for _ in range(5):  # 3 failures open it; 2 more calls are refused
            if breaker.allow():
                breaker.record_failure("timeout: no reply within 2.00s")
        now[0] = 11.0
        assert breaker.allow()  # the probe
        breaker.record_failure("error: HTTP 500")
        now[0] = 22.0
        assert breaker.allow()
        breaker.record_success()
        for _ in range(3):
            assert breaker.allow()
            breaker.record_success()
    lines = warnings_of(caplog, "wma_fusion.breaker")
    assert len(lines) == 6, lines
    assert "model m1 failing: timeout: no reply within 2.00s" in lines[0]
    assert "circuit opened after 3 consecutive failures" in lines[1]
    assert "half-open" in lines[2] and "half-open" in lines[4]
    assert "probe call failed (error: HTTP 500)" in lines[3]
    assert "model m1 recovered after 4 failed call(s); circuit closed" in lines[5]


def gateway_config(tmp_path: Path, live: str, **top: Any) -> Path:
    dead = f"http://127.0.0.1:{free_port()}"
    doc = {
        "models": [{"id": LIVE, "endpoint": live}, {"id": DEAD, "endpoint": dead}],
        "calibrators": {"path": str(DEFAULT_BUNDLE)},
        "fanout": {"breaker": {"failure_threshold": 3, "reset_timeout_s": 60}},
        "reload": {"enabled": False},
        **top,
    }
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def statuses(url: str, n: int) -> list[int]:
    """The statuses of ``n`` one-frame requests in a row."""
    return [post_frames(url, [FRAME], participant_id="p").status_code for _ in range(n)]


def test_a_dead_member_is_logged_when_it_starts_failing_not_per_request(
    mock_member: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = GatewayThread(create_app(gateway_config(tmp_path, mock_member))).start()
    try:
        with caplog.at_level(logging.INFO):
            assert statuses(server.url, 8) == [200] * 8
    finally:
        server.stop()
    lines = warnings_of(caplog, "wma_fusion.breaker")
    assert len(lines) == 2, lines
    assert f"model {DEAD} failing: error: connect error" in lines[0]
    assert f"model {DEAD}: circuit opened after 3 consecutive failures" in lines[1]
    assert not any(LIVE in line for line in lines)


def test_a_failing_shadowed_path_is_logged_once(
    mock_member: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rollout = {
        "mode": "shadow",
        "legacy": {"endpoint": mock_member},
        "records": {"log": False},
    }
    config = gateway_config(tmp_path, mock_member, rollout=rollout)
    doc = yaml.safe_load(config.read_text())
    doc["models"] = [doc["models"][1]]  # only the dead member: the ensemble always fails
    config.write_text(yaml.safe_dump(doc))
    server = GatewayThread(create_app(config, env={"WMA_RECORD_HASH_KEY": "k"})).start()
    try:
        with caplog.at_level(logging.INFO):
            assert statuses(server.url, 4) == [200] * 4  # legacy serves
    finally:
        server.stop()  # waits for the shadow runs
    lines = warnings_of(caplog, "wma.rollout")
    assert len(lines) == 1, lines
    assert "shadowed ensemble path failing: error (no ensemble member answered)" in lines[0]
