"""Recovery in about a second, with real member processes: the gateway probes a
member whose breaker is open and closes the breaker as soon as the member is ready,
instead of waiting out ``reset_timeout_s`` (10 s here, the default).

The bound asserted (complete answers within 2 s of the member being ready) is the
behaviour the issue asks for; the measured figure is printed (``-s``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_harness import post_frames, write_gateway_config
from wma_fusion.app import create_app
from wma_local.children import ModelProcess, start_model_server, wait_ready
from wma_local.samples import grey_frame
from wma_local.stack import DEFAULT_BUNDLE, GatewayThread

pytestmark = pytest.mark.slow
IDS = ("9rfa62j1", "1mjgo9w1")
FRAME = grey_frame(50)
BOUND_S = 2.0


@pytest.fixture
def members(tmp_path: Path) -> Iterator[list[ModelProcess]]:
    procs = [start_model_server(mid, tmp_path) for mid in IDS]
    try:
        for proc in procs:
            wait_ready(proc)
        yield procs  # a test replaces a process when it restarts it on the same port
    finally:
        for proc in procs:
            proc.stop()


@pytest.fixture
def gateway(tmp_path: Path, members: list[ModelProcess]) -> Iterator[str]:
    config = write_gateway_config(
        tmp_path / "gw.yaml",
        {p.model_id: p.url for p in members},
        DEFAULT_BUNDLE,
        fanout={"deadline_s": 3.0, "breaker": {"failure_threshold": 2, "reset_timeout_s": 10.0}},
        reload={"enabled": False},
    )
    server = GatewayThread(create_app(config)).start()
    try:
        yield server.url
    finally:
        server.stop()


def statuses(url: str) -> tuple[int, dict[str, str]]:
    response = post_frames(url, [FRAME], participant_id="p")
    models = response.json().get("models", {}) if response.status_code in (200, 503) else {}
    return response.status_code, {m: str(v.get("status")) for m, v in models.items()}


def open_breakers(url: str, down: set[str]) -> None:
    # enough failed calls to open every down member's breaker (threshold 2)
    for _ in range(4):
        statuses(url)
    circuits = httpx.get(f"{url}/readyz").json()["models"]
    assert {m for m in down if circuits[m]["circuit"] != "closed"} == down, circuits


def seconds_to_complete_answers(url: str) -> float:
    """From now until an answer has every member ``ok``; fails past the bound + slack."""
    start = time.monotonic()
    while True:
        code, models = statuses(url)
        if code == 200 and set(models.values()) == {"ok"} and len(models) == len(IDS):
            return time.monotonic() - start
        assert time.monotonic() - start < BOUND_S + 8.0, (code, models)
        time.sleep(0.05)


def restart(members: list[ModelProcess], index: int, workdir: Path) -> None:
    old = members[index]
    members[index] = start_model_server(old.model_id, workdir, port=old.port)


def test_a_restarted_member_is_answering_again_within_2s_of_being_ready(
    gateway: str, members: list[ModelProcess], tmp_path: Path
) -> None:
    assert seconds_to_complete_answers(gateway) < BOUND_S
    members[0].stop()
    open_breakers(gateway, {IDS[0]})
    time.sleep(3.0)  # a while down: the probes' backoff has reached its cap
    restart(members, 0, tmp_path)
    wait_ready(members[0])
    took = seconds_to_complete_answers(gateway)
    print(f"\ncomplete answers {took:.2f} s after the restarted member was ready")
    assert took < BOUND_S
    metrics = httpx.get(f"{gateway}/metrics").text
    assert f'wma_gateway_breaker_transitions_total{{model="{IDS[0]}",to="open"}}' in metrics
    assert f'wma_gateway_breaker_transitions_total{{model="{IDS[0]}",to="closed"}}' in metrics


def test_after_all_members_are_down_answers_are_complete_within_2s_of_their_return(
    gateway: str, members: list[ModelProcess], tmp_path: Path
) -> None:
    for proc in members:
        proc.stop()
    open_breakers(gateway, set(IDS))
    assert statuses(gateway)[0] == 503
    time.sleep(3.0)
    for index in range(len(members)):
        restart(members, index, tmp_path)
    for proc in members:
        wait_ready(proc)
    took = seconds_to_complete_answers(gateway)
    print(f"\ncomplete answers {took:.2f} s after every member was ready again")
    assert took < BOUND_S
