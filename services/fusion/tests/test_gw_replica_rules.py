"""The replica rules in-process: the config's replica sources, the choice of a
replica per call, and the retry on another replica after a 5xx/429 (the gateway
and a mock model server over ASGI transports; the failing replica answers the
status the test gives)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from gateway_harness import MOCK_MEMBER_HOST, Hosts, ServeGateway, WriteConfig, analyze_frames
from wma_fusion.breaker import CircuitBreaker
from wma_fusion.config import GatewayConfig, parse_config
from wma_fusion.errors import ConfigError
from wma_fusion.replicas import Replica, ReplicaSet, resolve_addresses
from wma_fusion.state import RuntimeState, breakers_of, build_state, replica_sets_of
from wma_local.samples import grey_frame, write_synthetic_bundle

MEMBER = "9rfa62j1"


def config_with(entry: dict[str, Any], env: dict[str, str] | None = None) -> GatewayConfig:
    doc = {"models": [{"id": MEMBER, **entry}], "calibrators": {"path": "b.json"}}
    return parse_config(yaml.safe_dump(doc), base_dir=Path("."), env=env or {})


def test_a_model_takes_one_endpoint_a_list_or_a_dns_name() -> None:
    one = config_with({"endpoint": "http://a:8000/"}).models[0]
    assert one.static_urls == ("http://a:8000",)
    two = config_with({"endpoints": ["http://a:8000", "http://b:8000"]}).models[0]
    assert two.static_urls == ("http://a:8000", "http://b:8000")
    dns = config_with({"discover": "dns://ms-x-headless.ns.svc.cluster.local:8000"}).models[0]
    assert dns.discover_target == ("ms-x-headless.ns.svc.cluster.local", 8000)
    assert dns.static_urls == ()


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({}, "exactly one of endpoint, endpoints, discover"),
        ({"endpoint": "http://a:1", "endpoints": ["http://b:1"]}, "(got endpoint, endpoints)"),
        ({"endpoints": []}, "at least 1 item"),
        ({"endpoints": ["http://a:1", "http://a:1/"]}, "lists a URL twice"),
        ({"discover": "http://a:1"}, "should match pattern"),
        ({"discover": "dns://a:99999"}, "no valid port"),
    ],
)
def test_a_bad_replica_source_is_refused_naming_the_model(
    entry: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as err:
        config_with(entry)
    assert str(err.value).startswith("models.0"), err.value
    assert problem in str(err.value)


def test_the_host_override_refuses_a_model_with_several_replicas() -> None:
    with pytest.raises(ConfigError, match="MODEL1_HOST: models.0 has several replicas"):
        config_with({"endpoints": ["http://a:1", "http://b:1"]}, env={"MODEL1_HOST": "c"})


def replica_set(n: int) -> ReplicaSet:
    def make(url: str) -> CircuitBreaker:
        return CircuitBreaker(1, 60.0)

    return ReplicaSet(MEMBER, "x", [Replica(f"http://r{i}:1", make("")) for i in range(n)], make)


def test_the_replica_with_fewest_calls_in_flight_is_picked_and_an_open_one_never() -> None:
    rs = replica_set(3)
    rs.replicas[0].in_flight, rs.replicas[1].in_flight, rs.replicas[2].in_flight = 2, 0, 1
    assert rs.pick() is rs.replicas[1]
    assert rs.pick(exclude=[rs.replicas[1]]) is rs.replicas[2]
    rs.replicas[1].breaker.record_failure("down")  # threshold 1: open
    assert rs.pick() is rs.replicas[2]
    for r in rs.replicas:
        r.breaker.record_failure("down")
    assert rs.pick() is None
    assert rs.state.value == "open" and rs.up == 0


def test_idle_replicas_share_sequential_calls() -> None:
    rs = replica_set(2)
    picks = [rs.pick() for _ in range(64)]
    assert {id(p) for p in picks} == {id(r) for r in rs.replicas}


def test_a_discovered_set_follows_the_names_addresses() -> None:
    rs = replica_set(2)
    kept = rs.replicas[1]
    assert rs.update(["http://r1:1", "http://r9:1"]) is True
    assert rs.replicas[0] is kept  # same replica, same breaker
    assert [r.url for r in rs.replicas] == ["http://r1:1", "http://r9:1"]
    assert rs.update(["http://r1:1", "http://r9:1"]) is False


def test_the_system_resolver_gives_the_addresses_of_a_name() -> None:
    assert "127.0.0.1" in asyncio.run(resolve_addresses("localhost", 8000))


class Failing(httpx.AsyncBaseTransport):
    """Hosts ``bad*`` answer ``status``; other hosts go to the in-process members."""

    def __init__(self, inner: httpx.AsyncBaseTransport, status: int) -> None:
        self.inner, self.status, self.calls = inner, status, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host.startswith("bad") and request.url.path.endswith("/infer"):
            self.calls += 1
            return httpx.Response(self.status, json={"error": "busy or broken"})
        return await self.inner.handle_async_request(request)


@pytest.mark.anyio
@pytest.mark.parametrize("status", [500, 503, 429])
async def test_a_5xx_or_429_is_retried_on_another_replica_and_the_answer_is_complete(
    status: int,
    tmp_path: Path,
    write_config: WriteConfig,
    serve_gateway: ServeGateway,
    mock_member_app: Any,
) -> None:
    write_synthetic_bundle(tmp_path / "bundle.json", [MEMBER])
    config = write_config(
        tmp_path / "gw.yaml",
        [{"id": MEMBER, "endpoints": ["http://bad", f"http://{MOCK_MEMBER_HOST}"]}],
        tmp_path / "bundle.json",
        reload={"enabled": False},
    )
    members = Failing(Hosts({MOCK_MEMBER_HOST: mock_member_app}), status)
    async with serve_gateway(config, members=members) as client:
        for _ in range(12):
            response = await analyze_frames(client, [grey_frame(50)], participant_id="p")
            assert response.status_code == 200
            body = response.json()
            assert body["models"][MEMBER]["status"] == "ok"
            assert body["degraded"] is False
        metrics = (await client.get("/metrics")).text
    assert members.calls >= 1  # the bad replica was tried, and the call moved on
    assert f'wma_gateway_model_retries_total{{model="{MEMBER}",status="error"}}' in metrics


@pytest.mark.anyio
async def test_a_4xx_is_not_retried(
    tmp_path: Path, write_config: WriteConfig, serve_gateway: ServeGateway, mock_member_app: Any
) -> None:
    write_synthetic_bundle(tmp_path / "bundle.json", [MEMBER])
    config = write_config(
        tmp_path / "gw.yaml",
        [{"id": MEMBER, "endpoints": ["http://bad", "http://bad2"]}],
        tmp_path / "bundle.json",
        reload={"enabled": False},
    )
    members = Failing(Hosts({}), 400)
    async with serve_gateway(config, members=members) as client:
        response = await analyze_frames(client, [grey_frame(50)], participant_id="p")
    assert response.status_code == 503
    assert members.calls == 1  # a refusal of the request itself: no second replica asked


def test_a_reload_keeps_a_members_replicas_while_their_source_holds(tmp_path: Path) -> None:
    write_synthetic_bundle(tmp_path / "bundle.json", [MEMBER])

    def state_with(entry: dict[str, Any], previous: RuntimeState | None = None) -> RuntimeState:
        doc = {"models": [{"id": MEMBER, **entry}], "calibrators": {"path": "bundle.json"}}
        config = parse_config(yaml.safe_dump(doc), base_dir=tmp_path, env={})
        if previous is None:
            return build_state(config)
        return build_state(config, b"", breakers_of(previous), replica_sets_of(previous))

    first = state_with({"endpoints": ["http://a:1", "http://b:1"]})
    again = state_with({"endpoints": ["http://a:1", "http://b:1"], "timeout_s": 2.0}, first)
    assert again.members[0].replicas is first.members[0].replicas
    moved = state_with({"endpoints": ["http://a:1", "http://c:1"]}, again)
    old, new = first.members[0].replicas.replicas, moved.members[0].replicas.replicas
    assert new[0].breaker is old[0].breaker  # a:1 stays, with its breaker
    assert new[1].breaker is not old[1].breaker
    found = state_with({"discover": "dns://models.test:1"}, moved)
    assert found.members[0].replicas.replicas == []  # nothing resolved yet
    found.members[0].replicas.update(["http://10.0.0.1:1"])
    kept = state_with({"discover": "dns://models.test:1", "timeout_s": 1.0}, found)
    assert [r.url for r in kept.members[0].replicas.replicas] == ["http://10.0.0.1:1"]
