"""Hostile input over a real uvicorn connection: every bad request is a 4xx JSON,
and the next request on the same kept-alive connection is answered.

A client (``httpx.Client``) keeps one connection alive across requests; after the
bad one, ``/livez`` on that same connection must succeed (before the fix a 500
closed it without ``Connection: close`` and the next request met a reset).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_harness import WriteConfig, refuse_connections
from wma_fusion.app import create_app
from wma_local.samples import write_synthetic_bundle
from wma_local.threaded import GatewayThread

IDS = ("9rfa62j1", "1mjgo9w1")


@pytest.fixture
def config(tmp_path: Path, write_config: WriteConfig) -> Path:
    bundle = tmp_path / "bundle.json"
    write_synthetic_bundle(bundle, IDS)
    return write_config(tmp_path / "gw.yaml", {m: f"http://{m}:8000" for m in IDS}, bundle)


@pytest.fixture
def gateway(config: Path) -> Iterator[httpx.Client]:
    app = create_app(config, transport=httpx.MockTransport(refuse_connections))
    server = GatewayThread(app).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            yield client
    finally:
        server.stop()


def _next_request_on_the_same_connection_succeeds(client: httpx.Client) -> None:
    r = client.get("/livez")
    assert r.status_code == 200 and r.json() == {"status": "alive"}


def _local_ports(client: httpx.Client) -> set[Any]:
    # the connection pool's sockets, to show the same connection served both requests
    pool = client._transport._pool  # type: ignore[attr-defined]
    return {id(c) for c in pool.connections}


def test_a_boundary_over_256_characters_is_a_400_json_and_the_connection_lives(
    gateway: httpx.Client,
) -> None:
    r = gateway.post(
        "/v1/analyze?participant_id=p",
        content=b"x",
        headers={"Content-Type": f"multipart/form-data; boundary={'b' * 257}"},
    )
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/json"
    assert "malformed multipart body" in r.json()["error"]
    before = _local_ports(gateway)
    _next_request_on_the_same_connection_succeeds(gateway)
    assert _local_ports(gateway) == before


def test_an_unexpected_error_is_a_500_json_and_the_connection_lives(
    gateway: httpx.Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in the gateway")

    monkeypatch.setattr("wma_fusion.app.read_analyze_request", broken)
    with caplog.at_level(logging.ERROR, logger="wma_fusion.app"):
        r = gateway.post("/v1/analyze?participant_id=p", files=[("files", ("f.png", b"x"))])
    assert r.status_code == 500 and r.json() == {"error": "internal error"}
    assert "a bug in the gateway" not in r.text
    (record,) = [x for x in caplog.records if "unexpected error" in x.getMessage()]
    assert record.exc_info is not None
    before = _local_ports(gateway)
    _next_request_on_the_same_connection_succeeds(gateway)
    assert _local_ports(gateway) == before
