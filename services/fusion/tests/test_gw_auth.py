"""A token on the gateway's door (WMA_GATEWAY_TOKEN) and on its members' doors
(WMA_MS_TOKEN, WMA_MS_TOKEN_<ID>), over real uvicorn servers on loopback ports:
no analyze request without the right token is served, probes stay open, the
members get their tokens and answer completely, and a member whose token is
wrong is a named member error in a degraded answer."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from gateway_harness import WriteConfig, post_frames, serving_members
from wma_fusion.app import create_app
from wma_fusion.errors import ConfigError
from wma_local.samples import grey_frame, write_synthetic_bundle
from wma_local.threaded import GatewayThread

IDS = ("9rfa62j1", "1mjgo9w1")
GW_TOKEN = "gw-door-token"
MS_TOKEN = "ms-door-token"
FRAMES = [grey_frame(40), grey_frame(200)]


@contextmanager
def _members() -> Iterator[dict[str, str]]:
    with serving_members(IDS, token=MS_TOKEN) as urls:
        yield urls


@pytest.fixture(scope="module")
def members() -> Iterator[dict[str, str]]:
    with _members() as urls:
        yield urls


@pytest.fixture
def config(tmp_path: Path, write_config: WriteConfig, members: dict[str, str]) -> Path:
    bundle = tmp_path / "bundle.json"
    write_synthetic_bundle(bundle, IDS)
    return write_config(tmp_path / "gw.yaml", members, bundle)


@contextmanager
def _gateway(config: Path, env: dict[str, str]) -> Iterator[str]:
    thread = GatewayThread(create_app(config, env=env)).start()
    try:
        yield thread.url
    finally:
        thread.stop()


@pytest.fixture
def gateway(config: Path) -> Iterator[str]:
    with _gateway(config, {"WMA_GATEWAY_TOKEN": GW_TOKEN, "WMA_MS_TOKEN": MS_TOKEN}) as url:
        yield url


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({}, "missing Authorization header"),
        ({"Authorization": f"Basic {GW_TOKEN}"}, "must use the Bearer scheme"),
        ({"Authorization": "Bearer"}, "invalid bearer token"),
        ({"Authorization": f"Bearer {GW_TOKEN[:-3]}"}, "invalid bearer token"),
        ({"Authorization": f"Bearer {MS_TOKEN}"}, "invalid bearer token"),  # the members'
    ],
)
def test_analyze_without_the_right_token_is_a_401_json(
    gateway: str, headers: dict[str, str], problem: str
) -> None:
    with httpx.Client(headers=headers) as client:
        r = post_frames(gateway, FRAMES, client=client, participant_id="p1")
        assert r.status_code == 401, r.text
        assert r.json() == {"error": r.json()["error"]} and problem in r.json()["error"]
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert GW_TOKEN[:-3] not in r.text
        assert client.get(f"{gateway}/openapi.json").status_code == 401
        assert client.get(f"{gateway}/livez").status_code == 200  # same connection


def test_refusals_are_counted_by_reason(gateway: str) -> None:
    for headers in ({}, {"Authorization": "Basic x"}, {"Authorization": "Bearer x"}):
        assert httpx.post(f"{gateway}/v1/analyze", headers=headers).status_code == 401
    text = httpx.get(f"{gateway}/metrics").text
    for reason in ("missing", "scheme", "token"):
        assert f'wma_gateway_unauthorized_total{{reason="{reason}"}} 1.0' in text


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/metrics"])
def test_probes_and_metrics_stay_open(gateway: str, path: str) -> None:
    r = httpx.get(f"{gateway}{path}")
    assert r.status_code == 200
    assert GW_TOKEN not in r.text and MS_TOKEN not in r.text


def test_with_both_tokens_every_member_answers(
    gateway: str, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.DEBUG),
        httpx.Client(headers={"Authorization": f"Bearer {GW_TOKEN}"}) as client,
    ):
        r = post_frames(gateway, FRAMES, client=client, participant_id="p1")
    assert r.status_code == 200, r.text
    body = r.json()
    assert {mid: m["status"] for mid, m in body["models"].items()} == dict.fromkeys(IDS, "ok")
    assert body["degraded"] is False
    assert all(
        GW_TOKEN not in rec.getMessage() and MS_TOKEN not in rec.getMessage()
        for rec in caplog.records
    )


def test_a_member_with_the_wrong_token_is_a_named_member_error(config: Path) -> None:
    env = {"WMA_MS_TOKEN": MS_TOKEN, "WMA_MS_TOKEN_1MJGO9W1": "not-the-member-token"}
    with _gateway(config, env) as url:  # and no door on the gateway itself
        r = post_frames(url, FRAMES, participant_id="p1")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["models"]["9rfa62j1"]["status"] == "ok"
    failed = body["models"]["1mjgo9w1"]
    assert failed["status"] == "error"
    assert failed["error"] == "HTTP 401: invalid bearer token"
    assert body["degraded"] is True
    assert "not-the-member-token" not in r.text


def test_without_member_tokens_every_member_refuses_and_the_gateway_says_so(
    config: Path,
) -> None:
    with _gateway(config, {}) as url:
        r = post_frames(url, FRAMES, participant_id="p1")
    assert r.status_code == 503, r.text
    statuses = {mid: m["status"] for mid, m in r.json()["models"].items()}
    assert statuses == dict.fromkeys(IDS, "error")


def test_an_unreadable_token_file_refuses_the_start_naming_the_variable(
    config: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as caught:
        create_app(config, env={"WMA_GATEWAY_TOKEN_FILE": str(tmp_path / "absent")})
    assert caught.value.field == "WMA_GATEWAY_TOKEN_FILE"
    assert "cannot read" in caught.value.problem


@pytest.mark.anyio
async def test_each_replica_and_the_legacy_model_get_their_own_token(
    tmp_path: Path, write_config: WriteConfig
) -> None:
    seen: dict[str, str | None] = {}

    def member(request: httpx.Request) -> httpx.Response:
        seen[request.url.host] = request.headers.get("authorization")
        return httpx.Response(200, json={"ready": True})

    bundle = tmp_path / "bundle.json"
    write_synthetic_bundle(bundle, IDS)
    models = [
        {"id": IDS[0], "endpoints": ["http://a1:8000", "http://a2:8000"]},
        {"id": IDS[1], "endpoint": "http://b:8000"},
    ]
    rollout = {"mode": "shadow", "legacy": {"endpoint": "http://legacy:9000"}}
    config = write_config(tmp_path / "gw.yaml", models, bundle, rollout=rollout)
    env = {
        "WMA_MS_TOKEN": "shared-token",
        "WMA_MS_TOKEN_1MJGO9W1": "own-token",
        "WMA_LEGACY_TOKEN": "legacy-token",
    }
    app = create_app(config, env=env, transport=httpx.MockTransport(member))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            r = await client.get("/readyz")  # probes every replica and the legacy model
    assert r.status_code == 200, r.text
    assert seen == {
        "a1": "Bearer shared-token",
        "a2": "Bearer shared-token",
        "b": "Bearer own-token",
        "legacy": "Bearer legacy-token",
    }
    for token in env.values():
        assert token not in r.text
