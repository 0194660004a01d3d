"""The gateway's contract with its callers and operators, over real HTTP on loopback.

Members are one test-local legacy-protocol server (one path per member) whose
per-frame probabilities, or failure, each test sets; the gateway runs on a uvicorn
thread with a synthetic bundle. Checked here: the metrics the issue names exist and
move, ``/readyz`` semantics, ``participant_id`` validation (form or query), client
errors as logged 4xx ``{"error"}`` without traceback, the SDK's drop-in fields.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI, Request, Response
from wma_core import Thresholds, decide, fuse
from wma_fusion.app import create_app
from wma_fusion.client import FusionClient
from wma_local.samples import grey_frame, synthetic_bundle, write_synthetic_bundle
from wma_local.stack import GatewayThread, free_port

IDS = ("9rfa62j1", "1mjgo9w1")
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

        self.server = GatewayThread(app).start()

    def endpoint(self, model: str) -> str:
        return f"{self.server.url}/m/{model}"


@pytest.fixture(scope="module")
def members() -> Iterator[Members]:
    running = Members()
    yield running
    running.server.stop()


def write_config(path: Path, endpoints: dict[str, str], **top: Any) -> Path:
    bundle = path.parent / "bundle.json"
    if not bundle.exists():
        write_synthetic_bundle(bundle, IDS, thresholds=THRESHOLDS)
    doc = {
        "models": [
            {"id": mid, "endpoint": url, "protocol": "legacy"} for mid, url in endpoints.items()
        ],
        "calibrators": {"path": str(bundle)},
        "fanout": {"breaker": {"failure_threshold": 1000}},
        "reload": {"enabled": True, "interval_s": 0.1},
        **top,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(doc))
    tmp.replace(path)
    return path


@pytest.fixture
def gateway(members: Members, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    members.failing.clear()
    config = write_config(tmp_path / "gw.yaml", {m: members.endpoint(m) for m in IDS})
    server = GatewayThread(create_app(config)).start()
    yield server.url, config
    server.stop()


def post(url: str, query: str = "", **fields: str) -> httpx.Response:
    files = [("files", (f"f{i}.png", FRAME, "image/png")) for i in range(2)]
    return httpx.post(f"{url}/v1/analyze{query}", data=fields, files=files, timeout=30)


def scrape(url: str) -> dict[str, float]:
    samples = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def expected_decision(p: float) -> Any:
    bundle = synthetic_bundle(IDS, thresholds=THRESHOLDS)
    calibrated: dict[str, float | None] = {m: bundle.models[m].curve(p) for m in IDS}
    return decide(fuse(calibrated, bundle.output_ranges()), THRESHOLDS)


def test_the_issues_metrics_exist_and_move(members: Members, gateway: tuple[str, Path]) -> None:
    url, config = gateway
    before = scrape(url)
    members.probs = dict.fromkeys(IDS, 0.9)
    fake = post(url, participant_id="a").json()
    members.probs = dict.fromkeys(IDS, 0.1)
    real = post(url, participant_id="b").json()
    members.failing = {IDS[1]}
    degraded = post(url, participant_id="c").json()
    assert post(url, participant_id="bad id").status_code == 400
    assert (fake["verdict"], real["verdict"]) == ("FAKE", "REAL")
    assert fake["verdict"] == expected_decision(0.9).verdict.value
    assert degraded["degraded"] is True and degraded["models"][IDS[1]]["status"] == "error"

    after = scrape(url)

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
    wait_for(lambda: scrape(url).get('wma_gateway_config_reloads_total{result="ok"}', 0) == 1)
    config.write_text("models: []\n")  # refused; the old config keeps serving
    wait_for(lambda: scrape(url).get('wma_gateway_config_reloads_total{result="failed"}', 0) == 1)
    assert post(url, participant_id="d").status_code == 200


def wait_for(condition: Any, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.05)


def test_readyz_is_503_only_when_no_model_is_reachable(members: Members, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    half = write_config(tmp_path / "half.yaml", {IDS[0]: members.endpoint(IDS[0]), IDS[1]: dead})
    none = write_config(tmp_path / "none.yaml", dict.fromkeys(IDS, dead))
    first, second = GatewayThread(create_app(half)).start(), GatewayThread(create_app(none))
    second.start()
    try:
        ready = httpx.get(f"{first.url}/readyz")
        not_ready = httpx.get(f"{second.url}/readyz")
        alive = httpx.get(f"{second.url}/livez")
    finally:
        first.stop()
        second.stop()
    assert ready.status_code == 200 and ready.json()["ready"] is True
    models = ready.json()["models"]
    assert (models[IDS[0]]["reachable"], models[IDS[1]]["reachable"]) == (True, False)
    assert {m["circuit"] for m in models.values()} == {"closed"}
    assert not_ready.status_code == 503 and not_ready.json()["ready"] is False
    assert not any(m["reachable"] for m in not_ready.json()["models"].values())
    assert alive.status_code == 200


def test_readyz_counts_the_legacy_model_only_where_it_can_serve(
    members: Members, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    legacy = {"endpoint": members.server.url}
    codes = {}
    for mode in ("legacy", "ensemble"):
        rollout = {"mode": mode, "legacy": legacy, "records": {"log": False}}
        config = write_config(tmp_path / f"{mode}.yaml", dict.fromkeys(IDS, dead), rollout=rollout)
        server = GatewayThread(create_app(config, env={"WMA_RECORD_HASH_KEY": "k"})).start()
        try:
            response = httpx.get(f"{server.url}/readyz")
        finally:
            server.stop()
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
def test_participant_id_is_1_to_128_safe_characters_from_form_or_query(
    members: Members,
    gateway: tuple[str, Path],
    caplog: pytest.LogCaptureFixture,
    fields: dict[str, str],
    query: str,
    status: int,
) -> None:
    url, _ = gateway
    calls = members.calls
    with caplog.at_level(logging.INFO):
        response = post(url, query=query, **fields)
    assert response.status_code == status, response.text
    if status == 200:
        assert len(response.json()["participant_id"]) <= 128
        return
    assert "participant_id" in response.json()["error"]
    assert members.calls == calls  # refused before any fan-out
    (record,) = [r for r in caplog.records if "/v1/analyze -> 400" in r.getMessage()]
    assert record.levelno == logging.INFO and record.exc_info is None
    assert "Traceback" not in caplog.text


def test_unknown_routes_and_methods_are_json_errors(gateway: tuple[str, Path]) -> None:
    url, _ = gateway
    missing = httpx.get(f"{url}/v1/nothing")
    wrong = httpx.get(f"{url}/v1/analyze")
    assert (missing.status_code, wrong.status_code) == (404, 405)
    assert missing.json() == {"error": "Not Found"}
    assert wrong.json() == {"error": "Method Not Allowed"}


def test_fusion_client_gives_the_old_clients_fields(
    members: Members, gateway: tuple[str, Path]
) -> None:
    url, _ = gateway
    members.probs = {IDS[0]: 0.3, IDS[1]: 0.2}

    async def call() -> dict[str, Any]:
        async with FusionClient(url) as client:
            answer: dict[str, Any] = await client.process_frames([FRAME] * 3, "erin@m1", "Erin")
        return answer

    result = asyncio.run(call())
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
    gateway: tuple[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = gateway
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
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text
