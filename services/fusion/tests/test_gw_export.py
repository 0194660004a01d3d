"""Spans leave real processes: a gateway and four model servers export one trace.

A test-local OTLP/HTTP receiver (stdlib ``http.server`` on a free loopback port)
decodes ``POST /v1/traces`` bodies with the OTLP protobuf schema. The gateway and
the ``wma model-server`` processes are configured only by the standard ``OTEL_*``
variables, with a batch schedule delay far beyond the test's length: spans can
only arrive through the flush at shutdown (SIGTERM). The console exporter and the
refusal of exporter settings the gateway cannot honour are checked on real
``wma gateway`` processes too.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from gateway_harness import post_frames, write_gateway_config
from live_processes import WMA, GatewayProcess, free_port
from otlp_receiver import OtlpReceiver, otel_env
from wma_local.samples import grey_frame
from wma_local.stack import (
    DEFAULT_BUNDLE,
    DEFAULT_MODEL_IDS,
    ModelProcess,
    start_model_server,
    wait_ready,
)

pytestmark = pytest.mark.slow
GW_SERVICE = "wma-gateway-export-test"
SLO_MS = 4321.0
NEVER_MS = "600000"  # OTEL_BSP_SCHEDULE_DELAY: no export before shutdown


def export_config(path: Path, endpoints: dict[str, str], **sections: Any) -> Path:
    sections.setdefault("reload", {"enabled": False})
    return write_gateway_config(path, endpoints, DEFAULT_BUNDLE.resolve(), **sections)


def test_gateway_and_model_servers_export_one_trace_over_otlp(
    otlp_receiver: OtlpReceiver, tmp_path: Path
) -> None:
    otlp = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": NEVER_MS,
    }
    models: list[ModelProcess] = []
    gateway: GatewayProcess | None = None
    try:
        for mid in DEFAULT_MODEL_IDS:
            models.append(start_model_server(mid, tmp_path, env={**otlp, "OTEL_SERVICE_NAME": ""}))
        for model in models:
            wait_ready(model, 60)
        config = export_config(
            tmp_path / "gateway.yaml",
            {m.model_id: m.url for m in models},
            telemetry={"slo_ms": SLO_MS},
        )
        env = otel_env(**otlp, OTEL_SERVICE_NAME=GW_SERVICE)
        gateway = GatewayProcess(config, tmp_path / "gateway.log", env)
        response = post_frames(gateway.url, [grey_frame(60)], participant_id="p1", timeout=60)
        assert response.status_code == 200, response.text
        assert set(response.json()["models"]) == set(DEFAULT_MODEL_IDS), response.json()
        assert not [s for s in otlp_receiver.received() if s.service == GW_SERVICE]  # still queued
        assert gateway.stop() == 0, gateway.output()
        for model in models:
            model.stop()
    finally:
        if gateway is not None:
            gateway.kill()
        for model in models:
            model.stop()

    spans = otlp_receiver.received()
    gw_spans = [s for s in spans if s.service == GW_SERVICE]
    (request,) = [s for s in gw_spans if s.name == "POST /v1/analyze"]
    assert request.parent_id == ""  # no incoming traceparent: the gateway starts the trace
    assert request.attributes["wma.slo.target_ms"] == SLO_MS
    assert request.attributes["http.response.status_code"] == 200
    children = [s for s in gw_spans if s.parent_id == request.span_id]
    expected = sorted([f"model {mid}" for mid in DEFAULT_MODEL_IDS] + ["fusion"])
    assert sorted(s.name for s in children) == expected, gw_spans
    assert {s.trace_id for s in gw_spans} == {request.trace_id}
    for call in (s for s in children if s.name.startswith("model ")):
        mid = call.name.removeprefix("model ")
        assert call.attributes["wma.model.status"] == "ok"
        # the call's attempt at its replica: a child span naming it, the server's parent
        (attempt,) = [s for s in gw_spans if s.parent_id == call.span_id]
        assert attempt.name == f"replica {attempt.attributes['wma.replica']}"
        (served,) = [s for s in spans if s.parent_id == attempt.span_id]
        assert served.service == f"wma-model-server-{mid}"
        assert served.trace_id == request.trace_id
        assert served.name == "POST /v2/models/{model_id}/infer"
        assert served.attributes["http.response.status_code"] == 200


@pytest.mark.parametrize("where", ["env", "config"])
def test_console_exporter_prints_the_request_span(
    mock_member: str, where: str, tmp_path: Path
) -> None:
    telemetry = {"traces_exporter": "console", "service_name": "from-config"}
    env = otel_env(OTEL_BSP_SCHEDULE_DELAY=NEVER_MS, OTEL_SERVICE_NAME="from-env")
    if where == "env":
        telemetry = {}
        env["OTEL_TRACES_EXPORTER"] = "console"
    config = export_config(tmp_path / "g.yaml", {"9rfa62j1": mock_member}, telemetry=telemetry)
    gateway = GatewayProcess(config, tmp_path / "gateway.log", env)
    try:
        assert (
            post_frames(gateway.url, [grey_frame(60)], participant_id="p1", timeout=60).status_code
            == 200
        )
        assert gateway.stop() == 0
    finally:
        gateway.kill()
    output = gateway.output()
    assert '"name": "POST /v1/analyze"' in output, output[-3000:]
    assert '"name": "model 9rfa62j1"' in output and '"wma.slo.target_ms": 5000.0' in output
    # An explicit telemetry.service_name wins over OTEL_SERVICE_NAME; else the variable.
    service = "from-config" if where == "config" else "from-env"
    assert f'"service.name": "{service}"' in output


@pytest.mark.parametrize(
    ("otel", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER: 'zipkin' is not supported"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' is not supported",
        ),
    ],
)
def test_unsupported_exporter_settings_are_refused_at_start(
    otel: dict[str, str], named: str, tmp_path: Path
) -> None:
    config = export_config(tmp_path / "g.yaml", {"9rfa62j1": "http://127.0.0.1:9"})
    cmd = [*WMA, "gateway", "--config", str(config)]
    done = subprocess.run(
        [*cmd, "--port", str(free_port())],
        env=otel_env(**otel),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"wma gateway: invalid config: {named}")
