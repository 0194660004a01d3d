"""Real ``wma gateway`` processes: replicas agree on the canary, shutdown drains.

The gateways are separate processes started as an operator would
(``python -m wma_cli.main gateway --config ... --port ...``); their upstreams are
an in-process mock model server (it serves both the OIP member and the legacy
``/check_frame_batch`` path) or a test-local member that holds its answers until
the test releases them.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from gateway_harness import post_frames
from legacy_server import LegacyServer
from live_processes import GatewayProcess, wait_for
from wma_fusion.rollout.canary import in_canary
from wma_local.samples import grey_frame
from wma_local.stack import DEFAULT_BUNDLE

pytestmark = pytest.mark.slow
MEMBER = "9rfa62j1"
SALT = "replica-salt"
FRAME = grey_frame(60)


def gateway_process(config: Path, log: Path, hash_seed: str = "0") -> GatewayProcess:
    """One ``wma gateway`` child process on a free loopback port."""
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OTEL_TRACES_EXPORTER": "none"}
    env["WMA_RECORD_HASH_KEY"] = "k"
    return GatewayProcess(config, log, env)


def served_by(url: str, ids: list[str]) -> list[str]:
    def one(pid: str) -> str:
        with httpx.Client(timeout=30) as client:
            response = post_frames(url, [FRAME], client=client, participant_id=pid)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["mode"] == "canary" and body["participant_id"] == pid
        return str(body["served_by"])

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, ids))


def test_two_gateway_processes_route_every_participant_alike_across_a_restart(
    mock_member: str, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.yaml"
    doc = {
        "models": [{"id": MEMBER, "endpoint": mock_member}],
        "calibrators": {"path": str(DEFAULT_BUNDLE)},
        "reload": {"enabled": False},
        "rollout": {
            "mode": "canary",
            "canary_percent": 30.0,
            "canary_salt": SALT,
            "shadow_other_path": False,
            "legacy": {"endpoint": mock_member},
            "records": {"log": False},
        },
    }
    config.write_text(yaml.safe_dump(doc))
    ids = [f"meeting-7:participant-{i}@example.org" for i in range(200)]
    expected = ["ensemble" if in_canary(pid, 30.0, SALT) else "legacy" for pid in ids]
    assert 30 < expected.count("ensemble") < 90  # the sample has both sides
    # Different hash seeds: Python's hash() would route differently in each process.
    first = gateway_process(config, tmp_path / "a.log", hash_seed="1")
    second = gateway_process(config, tmp_path / "b.log", hash_seed="2")
    try:
        assert served_by(first.url, ids) == expected
        assert served_by(second.url, ids) == expected
        second.terminate()
        assert second.process.wait(30) == 0
        restarted = gateway_process(config, tmp_path / "b2.log", hash_seed="3")
        try:
            assert served_by(restarted.url, ids) == expected
        finally:
            restarted.kill()
    finally:
        first.kill()
        second.kill()


def test_sigterm_drains_in_flight_requests_then_refuses_connections(tmp_path: Path) -> None:
    member = LegacyServer(prob=0.2, hold=True, hold_s=30).start()  # answers when released
    config = tmp_path / "gateway.yaml"
    doc = {
        "models": [{"id": MEMBER, "endpoint": member.url, "protocol": "legacy", "timeout_s": 30}],
        "calibrators": {"path": str(DEFAULT_BUNDLE)},
        "fanout": {"deadline_s": 30},
        "reload": {"enabled": False},
    }
    config.write_text(yaml.safe_dump(doc))
    gateway = gateway_process(config, tmp_path / "gw.log")
    in_flight = 4
    try:
        with ThreadPoolExecutor(in_flight) as pool:

            def one(i: int) -> httpx.Response:
                with httpx.Client(timeout=60) as client:
                    return post_frames(gateway.url, [FRAME], client=client, participant_id=f"p{i}")

            futures = [pool.submit(one, i) for i in range(in_flight)]
            wait_for(  # every request is waiting on the member
                lambda: member.held >= in_flight, "requests never reached the member", 30, 0.02
            )
            gateway.terminate()
            refused = False
            end = time.monotonic() + 30
            while not refused:  # the listening socket closes at once...
                try:
                    httpx.get(f"{gateway.url}/livez", timeout=2)
                except httpx.ConnectError:
                    refused = True
                assert time.monotonic() < end, "still accepting connections after SIGTERM"
                time.sleep(0.05)
            # ...while the requests in flight still wait on the member
            assert not any(f.done() for f in futures)
            assert gateway.process.poll() is None
            member.release.set()
            responses: list[Any] = [f.result(timeout=60) for f in futures]
        assert [r.status_code for r in responses] == [200] * in_flight
        assert {r.json()["verdict"] for r in responses} <= {"REAL", "UNCERTAIN", "FAKE"}
        assert all(r.json()["models"][MEMBER]["status"] == "ok" for r in responses)
        assert gateway.process.wait(30) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{gateway.url}/livez", timeout=2)
        assert "Traceback" not in gateway.output()
        assert "INFO httpx" not in gateway.output()  # upstream calls are not logged one by one
    finally:
        member.release.set()
        gateway.kill()
        member.stop()
