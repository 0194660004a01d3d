"""Replicas per model, with real processes: the gateway (real uvicorn on a thread)
and two mock model servers (``wma model-server --backend mock``) per model of the
four, on loopback ports. Calls spread over every replica; one replica of every
model killed, or hung (SIGSTOP), leaves every answer complete (all four members
``ok``, ``degraded: false``) inside the deadline; a replica that comes back is
used again. A ``discover`` name resolving to two loopback addresses (one port)
gives two replicas, and the set follows the name.

Which replica served is read from the model servers' own counters
(``wma_ms_requests_total`` of the infer route), not only from the gateway's.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_harness import post_frames, write_gateway_config
from wma_fusion.app import create_app
from wma_local.children import ModelProcess, start_model_server, wait_ready
from wma_local.samples import grey_frame, write_synthetic_bundle
from wma_local.stack import DEFAULT_BUNDLE, DEFAULT_MODEL_IDS, GatewayThread
from wma_local.threaded import free_port

pytestmark = pytest.mark.slow
FRAME = grey_frame(50)
DEADLINE_S = 3.0
BOUND_S = 5.0  # a restarted replica takes calls again within this
INFER = re.compile(
    r'^wma_ms_requests_total\{endpoint="[^"]*infer[^"]*",status="200"\} (\S+)$', re.M
)


def served(replica: ModelProcess) -> float:
    """Infer calls the replica answered 200 (its own counter; 0 for a fresh process)."""
    text = httpx.get(f"{replica.url}/metrics", timeout=2).text
    return sum(float(v) for v in INFER.findall(text))


def start(
    model_id: str, workdir: Path, *, port: int | None = None, host: str = "127.0.0.1"
) -> ModelProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    return start_model_server(model_id, workdir, port=port, host=host)


def signal_group(proc: ModelProcess, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.process.pid, sig)


class Fleet:
    """Two replicas of each of the four models; a test restores what it broke."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.replicas: dict[str, list[ModelProcess]] = {
            mid: [start(mid, workdir / f"{mid}-{i}") for i in range(2)] for mid in DEFAULT_MODEL_IDS
        }
        for pair in self.replicas.values():
            for proc in pair:
                wait_ready(proc)

    def restart(self, model_id: str, index: int) -> ModelProcess:
        old = self.replicas[model_id][index]
        old.stop()
        new = start(model_id, self.workdir / f"{model_id}-{index}", port=old.port)
        self.replicas[model_id][index] = new
        wait_ready(new)
        return new

    def stop(self) -> None:
        for pair in self.replicas.values():
            for proc in pair:
                signal_group(proc, signal.SIGCONT)
                proc.stop()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path_factory.mktemp("replicas"))
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture(scope="module")
def gateway(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    models = [
        {"id": mid, "endpoints": [p.url for p in pair], "timeout_s": 1.0}
        for mid, pair in fleet.replicas.items()
    ]
    config = write_gateway_config(
        tmp_path_factory.mktemp("gw") / "gw.yaml",
        models,
        DEFAULT_BUNDLE,
        fanout={"deadline_s": DEADLINE_S, "breaker": {"failure_threshold": 2}},
        reload={"enabled": False},
    )
    server = GatewayThread(create_app(config)).start()
    try:
        yield server.url
    finally:
        server.stop()


def complete_answer(url: str) -> float:
    """One request; asserts it is complete (four members ok, not degraded) and
    within the deadline; returns its latency in seconds."""
    t0 = time.monotonic()
    response = post_frames(url, [FRAME], participant_id="p")
    took = time.monotonic() - t0
    assert response.status_code == 200, response.text
    body = response.json()
    statuses = {m: v["status"] for m, v in body["models"].items()}
    assert statuses == dict.fromkeys(DEFAULT_MODEL_IDS, "ok"), body["models"]
    assert body["degraded"] is False
    assert took < DEADLINE_S, took
    return took


def wait_used_again(url: str, replica: ModelProcess) -> float:
    """Send requests until ``replica`` answers one; seconds it took (bounded)."""
    before = served(replica)
    t0 = time.monotonic()
    while served(replica) <= before:
        assert time.monotonic() - t0 < BOUND_S, f"{replica.url} not used again"
        complete_answer(url)
    return time.monotonic() - t0


def test_calls_spread_over_both_replicas_of_every_model(fleet: Fleet, gateway: str) -> None:
    before = {p.url: served(p) for pair in fleet.replicas.values() for p in pair}
    for _ in range(24):
        complete_answer(gateway)
    after = {p.url: served(p) for pair in fleet.replicas.values() for p in pair}
    assert all(after[u] > before[u] for u in before), (before, after)
    ready = httpx.get(f"{gateway}/readyz").json()["models"]
    assert {m: r["replicas_up"] for m, r in ready.items()} == dict.fromkeys(DEFAULT_MODEL_IDS, 2)
    metrics = httpx.get(f"{gateway}/metrics").text
    for mid, pair in fleet.replicas.items():
        for proc in pair:
            label = f"127.0.0.1:{proc.port}"
            series = f'model="{mid}",replica="{label}"'
            assert f'wma_gateway_replica_calls_total{{{series},status="ok"}}' in metrics
            assert f"wma_gateway_replica_in_flight{{{series}}} 0.0" in metrics
        assert f'wma_gateway_model_replicas{{model="{mid}",state="closed"}} 2.0' in metrics


def test_one_replica_of_every_model_killed_leaves_every_answer_complete(
    fleet: Fleet, gateway: str
) -> None:
    for pair in fleet.replicas.values():
        signal_group(pair[0], signal.SIGKILL)
        pair[0].process.wait(10)
    took = [complete_answer(gateway) for _ in range(12)]
    print(f"\none replica of each model killed: 12 answers complete, slowest {max(took):.3f} s")
    ready = httpx.get(f"{gateway}/readyz")
    assert ready.status_code == 200
    assert {m: r["replicas_up"] for m, r in ready.json()["models"].items()} == dict.fromkeys(
        DEFAULT_MODEL_IDS, 1
    )
    restarted = [fleet.restart(mid, 0) for mid in DEFAULT_MODEL_IDS]
    for proc in restarted:
        print(f"restarted {proc.model_id} used again after {wait_used_again(gateway, proc):.2f} s")


def test_one_replica_of_every_model_hung_leaves_every_answer_complete(
    fleet: Fleet, gateway: str
) -> None:
    hung = [pair[1] for pair in fleet.replicas.values()]
    for proc in hung:
        signal_group(proc, signal.SIGSTOP)
    try:
        took = [complete_answer(gateway) for _ in range(8)]
        print(f"\none replica of each model hung: 8 answers complete, slowest {max(took):.3f} s")
        models = httpx.get(f"{gateway}/readyz", timeout=5).json()["models"]
        for proc in hung:
            replica = models[proc.model_id]["replicas"][f"127.0.0.1:{proc.port}"]
            assert replica["circuit"] != "closed", replica  # its breaker opened
    finally:
        for proc in hung:
            signal_group(proc, signal.SIGCONT)
    for proc in hung:  # its breaker closes on a readiness probe; then it takes calls again
        label = f"127.0.0.1:{proc.port}"
        end = time.monotonic() + BOUND_S
        while circuit_of(gateway, proc.model_id, label) != "closed":
            assert time.monotonic() < end, f"{label} breaker still open"
            time.sleep(0.05)
    time.sleep(0.2)  # the calls queued while it was stopped are answered (and counted) now
    for proc in hung:
        print(f"resumed {proc.model_id} used again after {wait_used_again(gateway, proc):.2f} s")


def circuit_of(url: str, model_id: str, label: str) -> str:
    models = httpx.get(f"{url}/readyz", timeout=5).json()["models"]
    return str(models[model_id]["replicas"][label]["circuit"])


def test_a_discovered_name_gives_a_replica_per_address_and_follows_it(tmp_path: Path) -> None:
    mid = DEFAULT_MODEL_IDS[0]
    write_synthetic_bundle(tmp_path / "bundle.json", [mid])
    port = free_port()
    addresses = {"models.test": ["127.0.0.2", "127.0.0.3"]}
    procs = [start(mid, tmp_path / h, port=port, host=h) for h in addresses["models.test"]]

    async def resolve(name: str, port: int) -> list[str]:
        if name not in addresses:
            raise OSError(f"{name}: name not known")
        return list(addresses[name])

    try:
        for proc in procs:
            wait_ready(proc)
        config = write_gateway_config(
            tmp_path / "gw.yaml",
            [{"id": mid, "discover": f"dns://models.test:{port}"}],
            tmp_path / "bundle.json",
            fanout={"discovery_interval_s": 0.1},
            reload={"enabled": False},
        )
        server = GatewayThread(create_app(config, resolver=resolve)).start()
        try:

            def replicas() -> set[str]:
                return set(httpx.get(f"{server.url}/readyz").json()["models"][mid]["replicas"])

            assert replicas() == {f"127.0.0.2:{port}", f"127.0.0.3:{port}"}
            before = [served(p) for p in procs]
            for _ in range(16):
                assert post_frames(server.url, [FRAME], participant_id="p").status_code == 200
            assert all(served(p) > b for p, b in zip(procs, before, strict=True))
            addresses["models.test"] = ["127.0.0.3"]  # a pod left the headless Service
            deadline = time.monotonic() + 5
            while replicas() != {f"127.0.0.3:{port}"}:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            gone = served(procs[0])
            for _ in range(6):
                assert post_frames(server.url, [FRAME], participant_id="p").status_code == 200
            assert served(procs[0]) == gone
            del addresses["models.test"]  # the name fails to resolve: keep what is known
            time.sleep(0.3)
            assert replicas() == {f"127.0.0.3:{port}"}
        finally:
            server.stop()
    finally:
        for proc in procs:
            proc.stop()
