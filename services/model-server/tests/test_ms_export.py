"""Spans leave a real ``wma model-server`` process: OTLP/HTTP to a receiver, console.

The receiver is a test-local OTLP/HTTP endpoint (stdlib ``http.server`` on a free
loopback port) that decodes ``POST /v1/traces`` bodies with the OTLP protobuf
schema. The batch processor's schedule delay is set far beyond the test's length,
so the spans can only arrive through the flush at shutdown (SIGTERM).
"""

from __future__ import annotations

import gzip
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

pytestmark = pytest.mark.slow
MODEL_ID = "9rfa62j1"
TRACE_ID = "5b8efff798038103d269b633813fc60c"
PARENT_ID = "eee19b7ec3c1b174"
NEVER_MS = "600000"  # OTEL_BSP_SCHEDULE_DELAY: no export before shutdown


@dataclass(frozen=True)
class Exported:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]


class OtlpReceiver:
    """``POST /v1/traces`` (protobuf, optionally gzip) on a loopback port, in a thread."""

    def __init__(self) -> None:
        self.spans: list[Exported] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.add(ExportTraceServiceRequest.FromString(body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    exported = Exported(
                        service=str(resource.get("service.name")),
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        attributes=_attributes(span.attributes),
                    )
                    with self.lock:
                        self.spans.append(exported)

    def received(self) -> list[Exported]:
        with self.lock:
            return list(self.spans)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _attributes(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in pairs:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind) if kind else None
    return out


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    running = OtlpReceiver()
    yield running
    running.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _command(port: int) -> list[str]:
    args = ["model-server", "--model-id", MODEL_ID, "--backend", "mock", "--port", str(port)]
    return [sys.executable, "-m", "wma_cli.main", *args]


def _env(**otel: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return {**base, **otel}


def _serve_one_traced_request(env: dict[str, str], log: Path, png: Any) -> int:
    """Start the process, send one traced request, SIGTERM it; its exit status."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as sink:
        proc = subprocess.Popen(_command(port), stdout=sink, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "model server did not become ready"
            time.sleep(0.1)
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
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_otlp_spans_are_flushed_on_sigterm(
    receiver: OtlpReceiver, tmp_path: Path, png: Any
) -> None:
    env = _env(
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_BSP_SCHEDULE_DELAY=NEVER_MS,
    )
    log = tmp_path / "ms.log"
    status = _serve_one_traced_request(env, log, png)
    assert status == -signal.SIGTERM, log.read_text()  # uvicorn re-raises the signal
    spans = [s for s in receiver.received() if s.trace_id == TRACE_ID]
    assert [s.name for s in spans] == ["POST /check_frame_batch"], receiver.received()
    (span,) = spans
    assert span.parent_id == PARENT_ID
    assert span.service == f"wma-model-server-{MODEL_ID}"
    assert span.attributes["http.response.status_code"] == 200
    # The readiness probes were traced too, in traces of their own.
    assert any(s.name == "GET /v2/health/ready" for s in receiver.received())


def test_console_exporter_prints_spans_to_stdout(tmp_path: Path, png: Any) -> None:
    log = tmp_path / "ms.log"
    env = _env(OTEL_TRACES_EXPORTER="console", OTEL_BSP_SCHEDULE_DELAY=NEVER_MS)
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
    done = subprocess.run(
        _command(_free_port()), env=_env(**otel), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("wma model-server: ") and named in line and "not supported" in line
