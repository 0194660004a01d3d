"""The gateway's log says when members and shadowed paths fail, once per change.

A member that fails on every request must give a few WARNING lines (first
failure, circuit opened, probes, recovery), not one per request; the same for a
shadowed path. In-process: the gateway, a mock model server and a member that
refuses connections.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from gateway_harness import (
    MOCK_MEMBER_HOST,
    Hosts,
    ServeGateway,
    WriteConfig,
    analyze_frames,
    refuse_connections,
)
from wma_fusion.breaker import CircuitBreaker
from wma_local.samples import grey_frame
from wma_local.stack import DEFAULT_BUNDLE

LIVE, DEAD = "9rfa62j1", "1mjgo9w1"
FRAME = grey_frame(60)
MEMBER_URL = f"http://{MOCK_MEMBER_HOST}"


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


def logs_config(tmp_path: Path, write_config: WriteConfig, **top: Any) -> Path:
    return write_config(
        tmp_path / "gw.yaml",
        {LIVE: MEMBER_URL, DEAD: "http://down:8000"},  # down: connection refused
        DEFAULT_BUNDLE,
        fanout={"breaker": {"failure_threshold": 3, "reset_timeout_s": 60}},
        reload={"enabled": False},
        **top,
    )


async def statuses(client: httpx.AsyncClient, n: int) -> list[int]:
    """The statuses of ``n`` one-frame requests in a row."""
    return [
        (await analyze_frames(client, [FRAME], participant_id="p")).status_code for _ in range(n)
    ]


@pytest.mark.anyio
async def test_a_dead_member_is_logged_when_it_starts_failing_not_per_request(
    mock_member_app: Any,
    tmp_path: Path,
    write_config: WriteConfig,
    serve_gateway: ServeGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = logs_config(tmp_path, write_config)
    members = Hosts({MOCK_MEMBER_HOST: mock_member_app})
    with caplog.at_level(logging.INFO):
        async with serve_gateway(config, members=members) as client:
            assert await statuses(client, 8) == [200] * 8
    lines = warnings_of(caplog, "wma_fusion.breaker")
    assert len(lines) == 2, lines
    assert f"model {DEAD} failing: error: connect error" in lines[0]
    assert f"model {DEAD}: circuit opened after 3 consecutive failures" in lines[1]
    assert not any(LIVE in line for line in lines)


@pytest.mark.anyio
async def test_a_failing_shadowed_path_is_logged_once(
    mock_member_app: Any,
    tmp_path: Path,
    write_config: WriteConfig,
    serve_gateway: ServeGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rollout = {
        "mode": "shadow",
        "legacy": {"endpoint": MEMBER_URL},
        "records": {"log": False},
    }
    config = logs_config(tmp_path, write_config, rollout=rollout)
    doc = yaml.safe_load(config.read_text())
    doc["models"] = [doc["models"][1]]  # only the dead member: the ensemble always fails
    config.write_text(yaml.safe_dump(doc))
    members = Hosts({MOCK_MEMBER_HOST: mock_member_app})
    env = {"WMA_RECORD_HASH_KEY": "k"}
    with caplog.at_level(logging.INFO):
        async with serve_gateway(config, members=members, env=env) as client:
            assert await statuses(client, 4) == [200] * 4  # legacy serves
    # (leaving the gateway's lifespan waited for the shadow runs)
    lines = warnings_of(caplog, "wma.rollout")
    assert len(lines) == 1, lines
    assert "shadowed ensemble path failing: error (no ensemble member answered)" in lines[0]


@pytest.mark.anyio
async def test_with_every_member_down_the_503_warning_is_logged_once_with_later_counts(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    write_config: WriteConfig,
    serve_gateway: ServeGateway,
) -> None:
    config = write_config(
        tmp_path / "gw.yaml", {DEAD: "http://down:8000"}, DEFAULT_BUNDLE, reload={"enabled": False}
    )
    files = [("files", ("f.png", grey_frame(50), "image/png"))]
    with caplog.at_level(logging.INFO, logger="wma_fusion.app"):
        async with serve_gateway(config, members=httpx.MockTransport(refuse_connections)) as gw:
            codes = [
                (await gw.post("/v1/analyze?participant_id=p", files=files)).status_code
                for _ in range(20)
            ]
    assert codes == [503] * 20
    lines = [m for m in warnings_of(caplog, "wma_fusion.app") if "-> 503" in m]
    line = "POST /v1/analyze -> 503: no ensemble member answered"
    # the 19 left out are counted when the gateway stops (its lifespan flushes the limiter)
    assert lines == [line, f"19 more like this since the last one: {line}"]
