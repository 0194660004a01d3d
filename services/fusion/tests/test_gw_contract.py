"""The gateway's contract with its callers and operators, driven in-process.

Members are one test-local legacy-protocol app (one path per member) whose
per-frame probabilities, or failure, each test sets, reached in-process
(``gateway_harness.Hosts``); the gateway runs in-process too (``httpx.ASGITransport``)
with a synthetic bundle, except where a test needs a real socket (a client that
disconnects mid-body: uvicorn on a thread). Checked here: the metrics the issue names exist and
move, ``/readyz`` semantics, ``participant_id`` validation (form or query), client
errors as logged 4xx ``{"error"}`` without traceback, the SDK's drop-in fields.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import yaml
from fastapi import FastAPI, Request, Response
from gateway_harness import GATEWAY_URL, Hosts, ServeGateway, WriteConfig, analyze_frames
from wma_core import Thresholds, decide, fuse
from wma_fusion.app import create_app
from wma_fusion.client import FusionClient
from wma_local.samples import grey_frame, synthetic_bundle, write_synthetic_bundle
from wma_local.stack import GatewayThread

pytestmark = pytest.mark.anyio
IDS = ("9rfa62j1", "1mjgo9w1")
MEMBERS_HOST = "members"
DEAD = "http://down:8000"  # a host no member answers on: connection refused
THRESHOLDS = Thresholds(0.3, 0.6)
FRAME = grey_frame(10)


class Members:
    """``/m/{id}/check_frame_batch`` answers ``probs[id]`` per frame, or 500."""

    def __init__(self) -> None:
        self.probs: dict[str, float] = dict.fromkeys(IDS, 0.1)
        self.failing: set[str] = set()
        self.calls = 0
        app = FastAPI()

        @app.post("/m/{model}/check_frame_batch")
        async def check(model: str, request: Request) -> Response:
            form = await request.form()
            n = len(form.getlist("files"))
            await form.close()
            self.calls += 1
            if model in self.failing:
                return Response(b'{"error": "boom"}', 500, media_type="application/json")
            body = {"pred_label": "REAL", "confidence": 0.0, "probs": [self.probs[model]] * n}
            return Response(json.dumps(body), media_type="application/json")

        self.app = app
        self.url = f"http://{MEMBERS_HOST}"

    def endpoint(self, model: str) -> str:
        return f"{self.url}/m/{model}"

    def transport(self) -> Hosts:
        return Hosts({MEMBERS_HOST: self.app})


@pytest.fixture
def members() -> Members:
    return Members()


@pytest.fixture
def config_of(tmp_path: Path, write_config: WriteConfig) -> Callable[..., Path]:
    """``config_of(name, {id: endpoint}, **top)``: a legacy-protocol config file."""
    bundle = tmp_path / "bundle.json"
    write_synthetic_bundle(bundle, IDS, thresholds=THRESHOLDS)

    def write(name: str, endpoints: dict[str, str], **top: Any) -> Path:
        models = [{"id": m, "endpoint": url, "protocol": "legacy"} for m, url in endpoints.items()]
        top.setdefault("fanout", {"breaker": {"failure_threshold": 1000}})
        top.setdefault("reload", {"enabled": True, "interval_s": 0.1})
        return write_config(tmp_path / name, models, bundle, **top)

    return write


@pytest.fixture
async def gateway(
    members: Members, config_of: Callable[..., Path], serve_gateway: ServeGateway
) -> AsyncIterator[tuple[httpx.AsyncClient, Path]]:
    config = config_of("gw.yaml", {m: members.endpoint(m) for m in IDS})
    async with serve_gateway(config, members=members.transport()) as client:
        yield client, config


async def scrape(client: httpx.AsyncClient) -> dict[str, float]:
    samples = {}
    for line in (await client.get("/metrics")).text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def expected_decision(p: float) -> Any:
    bundle = synthetic_bundle(IDS, thresholds=THRESHOLDS)
    calibrated: dict[str, float | None] = {m: bundle.models[m].curve(p) for m in IDS}
    return decide(fuse(calibrated, bundle.output_ranges()), THRESHOLDS)


async def test_the_issues_metrics_exist_and_move(
    members: Members, gateway: tuple[httpx.AsyncClient, Path]
) -> None:
    client, config = gateway
    before = await scrape(client)
    members.probs = dict.fromkeys(IDS, 0.9)
    fake = (await analyze_frames(client, [FRAME] * 2, participant_id="a")).json()
    members.probs = dict.fromkeys(IDS, 0.1)
    real = (await analyze_frames(client, [FRAME] * 2, participant_id="b")).json()
    members.failing = {IDS[1]}
    degraded = (await analyze_frames(client, [FRAME] * 2, participant_id="c")).json()
    assert (await analyze_frames(client, [FRAME] * 2, participant_id="bad id")).status_code == 400
    assert (fake["verdict"], real["verdict"]) == ("FAKE", "REAL")
    assert fake["verdict"] == expected_decision(0.9).verdict.value
    assert degraded["degraded"] is True and degraded["models"][IDS[1]]["status"] == "error"

    after = await scrape(client)

    def moved(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert moved('wma_gateway_request_seconds_count{outcome="2xx"}') == 3
    assert moved('wma_gateway_request_seconds_count{outcome="4xx"}') == 1
    assert moved('wma_gateway_model_call_seconds_count{model="9rfa62j1"}') == 3
    assert moved(f'wma_gateway_model_calls_total{{model="{IDS[0]}",status="ok"}}') == 3
    assert moved(f'wma_gateway_model_calls_total{{model="{IDS[1]}",status="ok"}}') == 2
    assert moved(f'wma_gateway_model_calls_total{{model="{IDS[1]}",status="error"}}') == 1
    assert moved('wma_gateway_verdicts_total{verdict="FAKE"}') == 1
    assert moved('wma_gateway_verdicts_total{verdict="REAL"}') >= 1
    assert moved('wma_gateway_banners_total{banner="RED"}') == 1
    assert moved("wma_gateway_degraded_answers_total") == 1

    doc = yaml.safe_load(config.read_text())
    doc["fanout"]["deadline_s"] = 3.0  # a valid change
    config.write_text(yaml.safe_dump(doc))
    reloads = 'wma_gateway_config_reloads_total{result="%s"}'
    await wait_until(lambda: reloaded(client, reloads % "ok"))
    config.write_text("models: []\n")  # refused; the old config keeps serving
    await wait_until(lambda: reloaded(client, reloads % "failed"))
    assert (await analyze_frames(client, [FRAME] * 2, participant_id="d")).status_code == 200


async def reloaded(client: httpx.AsyncClient, sample: str) -> bool:
    return (await scrape(client)).get(sample, 0) == 1


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < end, "condition not reached"
        await asyncio.sleep(0.05)


def wait_for(condition: Any, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.05)


async def test_readyz_is_503_only_when_no_model_is_reachable(
    members: Members, config_of: Callable[..., Path], serve_gateway: ServeGateway
) -> None:
    half = config_of("half.yaml", {IDS[0]: members.endpoint(IDS[0]), IDS[1]: DEAD})
    none = config_of("none.yaml", dict.fromkeys(IDS, DEAD))
    async with (
        serve_gateway(half, members=members.transport()) as first,
        serve_gateway(none, members=members.transport()) as second,
    ):
        ready = await first.get("/readyz")
        not_ready = await second.get("/readyz")
        alive = await second.get("/livez")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    models = ready.json()["models"]
    assert (models[IDS[0]]["reachable"], models[IDS[1]]["reachable"]) == (True, False)
    assert {m["circuit"] for m in models.values()} == {"closed"}
    assert not_ready.status_code == 503 and not_ready.json()["ready"] is False
    assert not any(m["reachable"] for m in not_ready.json()["models"].values())
    assert alive.status_code == 200


async def test_readyz_counts_the_legacy_model_only_where_it_can_serve(
    members: Members, config_of: Callable[..., Path], serve_gateway: ServeGateway
) -> None:
    legacy = {"endpoint": members.url}
    codes = {}
    for mode in ("legacy", "ensemble"):
        rollout = {"mode": mode, "legacy": legacy, "records": {"log": False}}
        config = config_of(f"{mode}.yaml", dict.fromkeys(IDS, DEAD), rollout=rollout)
        env = {"WMA_RECORD_HASH_KEY": "k"}
        async with serve_gateway(config, members=members.transport(), env=env) as client:
            response = await client.get("/readyz")
        assert response.json()["legacy"]["reachable"] is True
        codes[mode] = response.status_code
    assert codes == {"legacy": 200, "ensemble": 503}


@pytest.mark.parametrize(
    ("fields", "query", "status"),
    [
        ({"participant_id": "p" * 128}, "", 200),
        ({"participant_id": "a.b_c:d@e-F9"}, "", 200),
        ({}, "?participant_id=" + "q" * 128, 200),
        ({"participant_id": "p" * 129}, "", 400),
        ({}, "?participant_id=" + "q" * 129, 400),
        ({"participant_id": "has space"}, "", 400),
        ({"participant_id": "slash/id"}, "", 400),
        ({"participant_id": "semi;colon"}, "", 400),
        ({"participant_id": "caf\u00e9"}, "", 400),
        ({}, "?participant_id=a%0Ab", 400),
        ({}, "?participant_id=trailing-newline%0A", 400),
        ({"participant_id": "trailing-newline\n"}, "", 400),
        ({}, "", 400),
    ],
)
async def test_participant_id_is_1_to_128_safe_characters_from_form_or_query(
    members: Members,
    gateway: tuple[httpx.AsyncClient, Path],
    caplog: pytest.LogCaptureFixture,
    fields: dict[str, str],
    query: str,
    status: int,
) -> None:
    client, _ = gateway
    calls = members.calls
    with caplog.at_level(logging.INFO):
        response = await analyze_frames(client, [FRAME] * 2, query, **fields)
    assert response.status_code == status, response.text
    if status == 200:
        assert len(response.json()["participant_id"]) <= 128
        return
    assert "participant_id" in response.json()["error"]
    assert members.calls == calls  # refused before any fan-out
    (record,) = [r for r in caplog.records if "/v1/analyze -> 400" in r.getMessage()]
    assert record.levelno == logging.INFO and record.exc_info is None
    assert "Traceback" not in caplog.text


async def test_unknown_routes_and_methods_are_json_errors(
    gateway: tuple[httpx.AsyncClient, Path],
) -> None:
    client, _ = gateway
    missing = await client.get("/v1/nothing")
    wrong = await client.get("/v1/analyze")
    assert (missing.status_code, wrong.status_code) == (404, 405)
    assert missing.json() == {"error": "Not Found"}
    assert wrong.json() == {"error": "Method Not Allowed"}


@pytest.mark.parametrize("wire", ["oip", "multipart"])
async def test_fusion_client_gives_the_old_clients_fields(
    members: Members, config_of: Callable[..., Path], wire: Literal["oip", "multipart"]
) -> None:
    # the same answer whether the frames travel as an OIP infer body or a form
    members.probs = {IDS[0]: 0.3, IDS[1]: 0.2}
    app = create_app(
        config_of("gw.yaml", {m: members.endpoint(m) for m in IDS}), transport=members.transport()
    )
    sent: list[str] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request.headers["content-type"].split(";")[0])

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with FusionClient(GATEWAY_URL, transport=transport, wire=wire) as client:
            client._http.event_hooks["request"].append(record)
            result: dict[str, Any] = await client.process_frames([FRAME] * 3, "erin@m1", "Erin")
    assert sent == [{"oip": "application/octet-stream", "multipart": "multipart/form-data"}[wire]]
    bundle = synthetic_bundle(IDS, thresholds=THRESHOLDS)
    calibrated: dict[str, float | None] = {
        m: bundle.models[m].curve(p) for m, p in members.probs.items()
    }
    fused = fuse(calibrated, bundle.output_ranges())
    decision = decide(fused, THRESHOLDS)
    assert result["verdict"] == decision.verdict.value
    assert result["confidence"] == decision.confidence.value
    assert fused.score is not None
    assert result["fusion_score"] == pytest.approx(fused.score, abs=1e-12)
    assert result["calibrated_scores"] == pytest.approx(calibrated, abs=1e-12)
    assert result["predictions"] == pytest.approx(members.probs, abs=1e-6)
    assert result["participant_name"] == "Erin"
    assert result["num_frames"] == 3
    assert result["thresholds"] == {"t_low": 0.3, "t_high": 0.6, "source": "bundle"}


def test_a_client_that_disconnects_mid_body_is_no_server_error(
    members: Members, config_of: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    # A real socket: the client goes away in the middle of the body it announced.
    config = config_of("gw.yaml", {m: members.endpoint(m) for m in IDS})
    server = GatewayThread(create_app(config, transport=members.transport())).start()
    try:
        _disconnect_mid_body(server.url, caplog)
    finally:
        server.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text


def _disconnect_mid_body(url: str, caplog: pytest.LogCaptureFixture) -> None:
    host, port = url.removeprefix("http://").split(":")
    head = (
        "POST /v1/analyze?participant_id=p HTTP/1.1\r\n"
        f"Host: {host}\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        "Content-Length: 100000\r\n\r\n"
    )
    with caplog.at_level(logging.INFO):
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(head.encode() + b"--x\r\n")
        wait_for(lambda: "disconnected before sending the whole body" in caplog.text)
