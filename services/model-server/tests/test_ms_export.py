"""Spans leave a real ``wma model-server`` process: OTLP/HTTP to a receiver, console.

The receiver is a test-local OTLP/HTTP endpoint (stdlib ``http.server`` on a free
loopback port) that decodes ``POST /v1/traces`` bodies with the OTLP protobuf
schema. The batch processor's schedule delay is set far beyond the test's length,
so the spans can only arrive through the flush at shutdown (SIGTERM).
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_processes import WMA, free_port, reap, start_model_server
from otlp_receiver import OtlpReceiver, otel_env

pytestmark = pytest.mark.slow
MODEL_ID = "9rfa62j1"
TRACE_ID = "5b8efff798038103d269b633813fc60c"
PARENT_ID = "eee19b7ec3c1b174"
NEVER_MS = "600000"  # OTEL_BSP_SCHEDULE_DELAY: no export before shutdown
ARGS = ("--model-id", MODEL_ID, "--backend", "mock")


def _serve_one_traced_request(env: dict[str, str], log: Path, png: Any) -> int:
    """Start the process, send one traced request, SIGTERM it; its exit status."""
    proc, url = start_model_server(log, *ARGS, env=env)
    try:
        response = httpx.post(
            f"{url}/check_frame_batch",
            files=[("files", ("a.png", png(51), "image/png"))],
            headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=30)
    finally:
        reap(proc, 10)


def test_otlp_spans_are_flushed_on_sigterm(
    otlp_receiver: OtlpReceiver, tmp_path: Path, png: Any
) -> None:
    env = otel_env(
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_BSP_SCHEDULE_DELAY=NEVER_MS,
    )
    log = tmp_path / "ms.log"
    status = _serve_one_traced_request(env, log, png)
    assert status == -signal.SIGTERM, log.read_text()  # uvicorn re-raises the signal
    spans = [s for s in otlp_receiver.received() if s.trace_id == TRACE_ID]
    assert [s.name for s in spans] == ["POST /check_frame_batch"], otlp_receiver.received()
    (span,) = spans
    assert span.parent_id == PARENT_ID
    assert span.service == f"wma-model-server-{MODEL_ID}"
    assert span.attributes["http.response.status_code"] == 200
    # The readiness probes were traced too, in traces of their own.
    assert any(s.name == "GET /v2/health/ready" for s in otlp_receiver.received())


def test_console_exporter_prints_spans_to_stdout(tmp_path: Path, png: Any) -> None:
    log = tmp_path / "ms.log"
    env = otel_env(OTEL_TRACES_EXPORTER="console", OTEL_BSP_SCHEDULE_DELAY=NEVER_MS)
    _serve_one_traced_request(env, log, png)
    output = log.read_text()
    assert '"name": "POST /check_frame_batch"' in output, output[-3000:]
    assert f'"trace_id": "0x{TRACE_ID}"' in output
    assert f'"service.name": "wma-model-server-{MODEL_ID}"' in output


@pytest.mark.parametrize(
    ("otel", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin'"),
        ({"OTEL_TRACES_EXPORTER": "otlp,jaeger"}, "OTEL_TRACES_EXPORTER='jaeger'"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL='grpc'",
        ),
    ],
)
def test_unsupported_exporter_settings_are_refused_at_start(
    otel: dict[str, str], named: str
) -> None:
    command = [*WMA, "model-server", *ARGS, "--port", str(free_port())]
    done = subprocess.run(command, env=otel_env(**otel), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("wma model-server: ") and named in line and "not supported" in line
