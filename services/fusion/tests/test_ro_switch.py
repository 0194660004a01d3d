"""Rollback is a config change: hot-reloading the mode under load fails no request."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from wma_fusion.app import create_app
from wma_fusion.rollout.canary import in_canary
from wma_local.samples import grey_frame
from wma_local.stack import GatewayThread, LocalStack

pytestmark = pytest.mark.slow
SALT = "switch-salt"
ORDER = ["canary", "legacy", "ensemble"]


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(legacy=True) as running:
        yield running


def write_mode(stack: LocalStack, path: Path, mode: str) -> None:
    assert stack.config_path is not None
    doc = yaml.safe_load(stack.config_path.read_text())
    doc["rollout"] = {
        "mode": mode,
        "canary_percent": 50.0,
        "canary_salt": SALT,
        "legacy": doc["rollout"]["legacy"],
        "records": {"log": False},
    }
    doc["reload"] = {"enabled": True, "interval_s": 0.2}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(doc))
    tmp.replace(path)  # an atomic swap, like a ConfigMap update


def client_loop(url: str, client_no: int, stop: threading.Event) -> list[tuple[str, int, Any]]:
    seen = []
    frame = grey_frame(90)
    with httpx.Client(timeout=30) as client:
        n = 0
        while not stop.is_set():
            pid = f"c{client_no}-u{n % 20}"
            r = client.post(
                f"{url}/v1/analyze",
                data={"participant_id": pid},
                files=[("files", ("f.png", frame, "image/png"))] * 2,
            )
            seen.append((pid, r.status_code, r.json()))
            n += 1
    return seen


def test_mode_switch_under_load_fails_no_request_and_takes_effect(
    stack: LocalStack, tmp_path: Path
) -> None:
    config = tmp_path / "gw.yaml"
    write_mode(stack, config, "canary")
    server = GatewayThread(create_app(config, env={"WMA_RECORD_HASH_KEY": "k"})).start()
    stop = threading.Event()
    try:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(client_loop, server.url, i, stop) for i in range(4)]
            time.sleep(1.0)
            write_mode(stack, config, "legacy")
            time.sleep(1.0)
            write_mode(stack, config, "ensemble")
            time.sleep(1.0)
            stop.set()
            results = [f.result(timeout=60) for f in futures]
        final = httpx.post(
            f"{server.url}/v1/analyze",
            data={"participant_id": "late"},
            files=[("files", ("f.png", grey_frame(90), "image/png"))],
            timeout=30,
        ).json()
    finally:
        stop.set()
        server.stop()
    assert final["mode"] == "ensemble" and final["served_by"] == "ensemble"
    modes_seen = set()
    for seen in results:
        assert seen, "each client made requests"
        assert [status for _, status, _ in seen] == [200] * len(seen), seen
        order = [ORDER.index(body["mode"]) for _, _, body in seen]
        assert order == sorted(order)  # each client sees the modes in the order written
        for pid, _, body in seen:
            modes_seen.add(body["mode"])
            if body["mode"] == "canary":
                want = "ensemble" if in_canary(pid, 50.0, SALT) else "legacy"
            else:
                want = body["mode"]
            assert body["served_by"] == want, (pid, body["mode"])
    assert modes_seen == set(ORDER)
