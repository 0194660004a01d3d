"""Member failures are statuses, never scores: killed, slow, 500, malformed, breaker.

One real mock model-server process plus three tiny misbehaving servers on loopback;
the gateway answers 200 ``degraded`` with the interval rule while one member
answers, 503 when none does, and its circuit breaker opens and closes again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI, Response
from gateway_harness import post_frames, write_gateway_config
from wma_core import decide, fuse, parse_aggregator
from wma_core.bundle import load_bundle
from wma_fusion.app import create_app
from wma_local.samples import grey_frame
from wma_local.stack import (
    DEFAULT_BUNDLE,
    GatewayThread,
    ModelProcess,
    start_model_server,
    wait_ready,
)

pytestmark = pytest.mark.slow
REAL_ID, SLOW_ID, ERROR_ID, MALFORMED_ID = "9rfa62j1", "1mjgo9w1", "dfsesrgu", "4vtny88m"


def frames(levels: list[int]) -> list[bytes]:
    return [grey_frame(v) for v in levels]


def misbehaving_server(kind: str) -> FastAPI:
    app = FastAPI()

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/v2/models/{model}/infer")
    async def infer(model: str) -> Response:
        if kind == "slow":
            await asyncio.sleep(3.0)
            return Response(b'{"outputs": []}', media_type="application/json")
        if kind == "error":
            return Response(
                b'{"error": "CUDA out of memory"}', status_code=500, media_type="application/json"
            )
        return Response(
            b'{"model_name": "x", "outputs": [{"name": "pro', media_type="application/json"
        )

    return app


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ModelProcess]]:
    workdir = tmp_path_factory.mktemp("real")
    holder = [start_model_server(REAL_ID, workdir)]
    wait_ready(holder[0])
    yield holder  # a test may replace the process (restart on the same port)
    holder[0].stop()


@pytest.fixture(scope="module")
def bad_servers() -> Iterator[dict[str, str]]:
    servers = {
        mid: GatewayThread(misbehaving_server(kind)).start()
        for mid, kind in ((SLOW_ID, "slow"), (ERROR_ID, "error"), (MALFORMED_ID, "bad"))
    }
    yield {mid: s.url for mid, s in servers.items()}
    for s in servers.values():
        s.stop()


def faults_config(path: Path, endpoints: dict[str, str], **fanout: Any) -> Path:
    """The slow member gets 0.5 s, the request 2 s; no reload."""
    models = [
        {"id": mid, "endpoint": url, "timeout_s": 0.5 if mid == SLOW_ID else 4.0}
        for mid, url in endpoints.items()
    ]
    fanout = {"deadline_s": 2.0, **fanout}
    return write_gateway_config(
        path, models, DEFAULT_BUNDLE, fanout=fanout, reload={"enabled": False}
    )


def test_failing_members_degrade_the_answer_and_all_down_is_503(
    real: list[ModelProcess],
    bad_servers: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoints = {REAL_ID: real[0].url, **bad_servers}
    config = faults_config(tmp_path / "g.yaml", endpoints, breaker={"failure_threshold": 100})
    server = GatewayThread(create_app(config)).start()
    try:
        with caplog.at_level(logging.INFO):
            levels = [60, 80, 100]
            response = post_frames(server.url, frames(levels), participant_id="p")
            assert response.status_code == 200, response.text
            body = response.json()
            models = body["models"]
            assert models[REAL_ID]["status"] == "ok"
            assert models[SLOW_ID]["status"] == "timeout"
            assert models[ERROR_ID]["status"] == "error"
            assert "500" in models[ERROR_ID]["error"]
            assert "CUDA out of memory" in models[ERROR_ID]["error"]
            assert models[MALFORMED_ID]["status"] == "error"
            assert "malformed" in models[MALFORMED_ID]["error"]
            for mid in (SLOW_ID, ERROR_ID, MALFORMED_ID):
                assert models[mid]["aggregated"] is None and models[mid]["calibrated"] is None
            assert body["degraded"] is True and body["fusion_score"] is None

            # the interval rule: missing members span their calibrators' output ranges
            bundle = load_bundle(DEFAULT_BUNDLE)
            cal = bundle.models[REAL_ID]
            agg = parse_aggregator(cal.aggregator)([float(np.float32(v / 255)) for v in levels])
            assert agg is not None
            calibrated: dict[str, float | None] = dict.fromkeys(endpoints)
            calibrated[REAL_ID] = cal.curve(agg)
            fused = fuse(calibrated, bundle.output_ranges())
            assert body["fusion_interval"] == pytest.approx(list(fused.interval), abs=1e-12)
            assert body["verdict"] == decide(fused, bundle.thresholds).verdict.value == "UNCERTAIN"

            real[0].stop()  # killed: now no member answers
            response = post_frames(server.url, frames(levels), participant_id="p")
            assert response.status_code == 503
            down = response.json()
            assert "no ensemble member answered" in down["error"]
            assert down["models"][REAL_ID]["status"] == "error"
            assert "connect" in down["models"][REAL_ID]["error"]
            ready = httpx.get(f"{server.url}/readyz")
            assert ready.status_code == 200  # the misbehaving servers still answer health
            assert ready.json()["models"][REAL_ID]["reachable"] is False
            metrics = httpx.get(f"{server.url}/metrics").text
            assert 'wma_gateway_model_calls_total{model="1mjgo9w1",status="timeout"} 2.0' in metrics
            assert "wma_gateway_degraded_answers_total 1.0" in metrics
    finally:
        server.stop()
        real[0] = start_model_server(REAL_ID, real[0].log_path.parent, port=real[0].port)
    assert "Traceback" not in caplog.text


def test_circuit_opens_after_repeated_failures_and_closes_after_recovery(
    real: list[ModelProcess], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wait_ready(real[0])
    port = real[0].port
    config = faults_config(
        tmp_path / "g.yaml",
        {REAL_ID: real[0].url},
        breaker={"failure_threshold": 2, "reset_timeout_s": 0.3},
    )
    server = GatewayThread(create_app(config)).start()
    try:
        with caplog.at_level(logging.INFO):
            assert (
                post_frames(server.url, frames([50]), participant_id="p").json()["models"][REAL_ID][
                    "status"
                ]
                == "ok"
            )
            real[0].stop()
            statuses = [
                post_frames(server.url, frames([50]), participant_id="p").json()["models"][REAL_ID][
                    "status"
                ]
                for _ in range(3)
            ]
            assert statuses == ["error", "error", "circuit_open"]
            ready = httpx.get(f"{server.url}/readyz")
            assert ready.status_code == 503
            assert ready.json()["models"][REAL_ID]["circuit"] in ("open", "half_open")

            real[0] = start_model_server(REAL_ID, real[0].log_path.parent, port=port)
            wait_ready(real[0])
            time.sleep(0.35)  # past reset_timeout_s: the next call is the half-open probe
            response = post_frames(server.url, frames([50]), participant_id="p")
            assert response.status_code == 200
            assert response.json()["models"][REAL_ID]["status"] == "ok"
            assert (
                httpx.get(f"{server.url}/readyz").json()["models"][REAL_ID]["circuit"] == "closed"
            )
    finally:
        server.stop()
    assert "Traceback" not in caplog.text
